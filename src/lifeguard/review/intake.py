"""What review takes in: the report taxonomy, surfaces, a user report (:class:`UserReportIn`), and the
triage rule that gives every item a priority (docs/review.md)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from lifeguard.errors import LifeguardError

#: Report reasons (the taxonomy). ``take_it_down``: "an image of me when I was under 18".
REASONS: Final = ("csam", "grooming", "sextortion", "take_it_down", "other_child_safety")
#: Where the reported content was seen. ``e2ee_verified``: an end-to-end encrypted message the
#: recipient reported with a verifiable franking tag (the platform could not see it otherwise).
SURFACES: Final = ("public", "private_message", "e2ee_verified")
#: Case items also come from hash matches and signals, whose surface may not be known.
ITEM_SURFACES: Final = (*SURFACES, "unknown")
SOURCES: Final = ("match", "report", "signal")
DECISIONS: Final = ("confirm", "false_positive", "escalate", "no_violation")
#: Final outcomes (``escalate`` is not one: it hands the case to a senior reviewer).
OUTCOMES: Final = ("confirm", "false_positive", "no_violation")
STATUSES: Final = ("open", "assigned", "escalated", "decided", "appealed", "closed")
#: Cases still awaiting a first decision: new items for the same content/account merge into them.
ACTIVE: Final = ("open", "assigned", "escalated")

MAX_TEXT: Final = 10_000
#: Ids are 64-bit: anything outside is refused before it reaches the database.
MAX_ID: Final = 2**63 - 1
MAX_REF: Final = 256
MAX_CONTENT: Final = 100
MAX_MEDIA: Final = 10
_HEX = re.compile(r"^[0-9a-f]+$")
_HASH_LEN: Final = {"md5": 32, "sha256": 64, "pdq": 64}


class ReviewError(LifeguardError):
    """Bad input to review (an unknown reason or decision, a malformed hash, ...). 422 over HTTP."""

    code = "review_invalid"


def item_priority(reason: str, child_at_risk_now: bool) -> int:
    """1: a child at risk now (the flag, or sextortion); 2: CSAM (``csam``, ``take_it_down`` and
    every hash match); 3: everything else (grooming without the flag, other_child_safety)."""
    if child_at_risk_now or reason == "sextortion":
        return 1
    if reason in ("csam", "take_it_down"):
        return 2
    return 3


def check_ref(value: object, what: str, *, required: bool = True) -> str | None:
    """An id-like string: 1..256 characters, no control characters (or None if not required)."""
    if value is None or value == "":
        if required:
            raise ReviewError(f"{what} is required")
        return None
    if not isinstance(value, str):
        raise ReviewError(f"{what}: expected a string, got {type(value).__name__}")
    v = value.strip()
    if not v:
        raise ReviewError(f"{what} is required" if required else f"{what}: blank")
    if len(v) > MAX_REF:
        raise ReviewError(f"{what}: {len(v)} characters, at most {MAX_REF} allowed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in v):
        raise ReviewError(f"{what}: contains a control character")
    return v


def check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ReviewError(f"{what}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise ReviewError(f"{what}: {len(value)} characters, at most {MAX_TEXT} allowed")
    if "\x00" in value:
        raise ReviewError(f"{what}: contains a NUL character")
    return value


def check_hash(kind: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    v = value.strip().lower()
    if len(v) != _HASH_LEN[kind] or not _HEX.match(v):
        raise ReviewError(f"{kind}: expected {_HASH_LEN[kind]} hex digits, got {value!r}")
    return v


@dataclass(frozen=True)
class ContentRef:
    """One piece of reported content: the platform's id for it, and its hashes if known."""

    content_id: str
    md5: str | None = None
    sha256: str | None = None
    pdq: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "content_id", check_ref(self.content_id, "content_id"))
        for k in ("md5", "sha256", "pdq"):
            object.__setattr__(self, k, check_hash(k, getattr(self, k)))

    def hashes(self) -> dict[str, str]:
        return {k: v for k in ("md5", "sha256", "pdq") if (v := getattr(self, k))}


@dataclass(frozen=True)
class UserReportIn:
    """A user report. ``reporter`` and ``reported_account`` are platform account ids."""

    reporter: str
    reason: str
    surface: str
    reported_account: str | None = None
    content: Sequence[ContentRef] = field(default_factory=tuple)
    child_at_risk_now: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reporter", check_ref(self.reporter, "reporter"))
        object.__setattr__(
            self,
            "reported_account",
            check_ref(self.reported_account, "reported_account", required=False),
        )
        if self.reason not in REASONS:
            raise ReviewError(f"reason {self.reason!r} is not one of {', '.join(REASONS)}")
        if self.surface not in SURFACES:
            raise ReviewError(f"surface {self.surface!r} is not one of {', '.join(SURFACES)}")
        if not isinstance(self.child_at_risk_now, bool):
            raise ReviewError("child_at_risk_now must be true or false")
        check_text(self.description, "description")
        content = tuple(self.content)
        if len(content) > MAX_CONTENT:
            raise ReviewError(f"content: {len(content)} references, at most {MAX_CONTENT}")
        for c in content:
            if not isinstance(c, ContentRef):
                raise ReviewError("content: expected ContentRef items")
        object.__setattr__(self, "content", content)

    @property
    def priority(self) -> int:
        return item_priority(self.reason, self.child_at_risk_now)
