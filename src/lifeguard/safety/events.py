"""Content-free events that feed the contact-rules engine (:mod:`lifeguard.safety.rules`).

No message text, media or profile data: only who did what to whom, when, and an account's age band.

=================  =====================================  ==========================================
``type``           fields                                 meaning
=================  =====================================  ==========================================
``account``        ``account``, ``age_band``              account created (or its age band changed)
``contact_request````actor``, ``target``                  actor asked to connect with target
``connect``        ``actor``, ``target``                  the two are now connected (mutual)
``disconnect``     ``actor``, ``target``                  the connection ended
``message``        ``actor``, ``target``                  actor sent target a direct message
``block``          ``actor``, ``target``                  actor blocked target (ends a connection)
``unblock``        ``actor``, ``target``                  actor lifted the block
``report``         ``actor``, ``target``                  actor reported target
=================  =====================================  ==========================================

Every event has ``ts``: seconds since the epoch (a number) or an ISO 8601 time with a zone.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from lifeguard.errors import LifeguardError

#: Age bands, youngest first. ``unknown`` is an account whose age is not assured.
AGE_BANDS: Final = ("u13", "13-15", "16-17", "adult", "unknown")
#: Names a rule may use for a set of bands.
BAND_GROUPS: Final[dict[str, frozenset[str]]] = {
    "child": frozenset({"u13", "13-15", "16-17"}),
    "any": frozenset(AGE_BANDS),
    **{b: frozenset({b}) for b in AGE_BANDS},
}
PAIR_TYPES: Final = (
    "contact_request",
    "connect",
    "disconnect",
    "message",
    "block",
    "unblock",
    "report",
)
EVENT_TYPES: Final = ("account", *PAIR_TYPES)
#: Events a sender initiates towards a recipient (what ``deny_contact`` and ``rate`` rules govern).
CONTACT_TYPES: Final = ("contact_request", "message")
MAX_ID = 256
#: Events may be at most this far ahead of this machine's clock.
MAX_FUTURE_S: Final = 86400.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PAIR_FIELDS: Final = frozenset({"type", "ts", "actor", "target"})
_ACCOUNT_FIELDS: Final = frozenset({"type", "ts", "account", "age_band"})
_TYPES: Final = frozenset(EVENT_TYPES)


class InvalidEvent(LifeguardError):
    """An event is malformed (``index`` is its position in a batch, when known)."""

    code = "invalid_event"

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message if index is None else f"events[{index}]: {message}")
        self.index = index


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    ts: float
    #: ``account`` events: the account; pair events: the actor (sender, blocker, reporter).
    actor: str
    #: Pair events: the other party; ``account`` events: "".
    target: str = ""
    #: ``account`` events only.
    age_band: str = ""

    def to_json(self) -> dict[str, Any]:
        if self.type == "account":
            return {
                "type": "account",
                "ts": self.ts,
                "account": self.actor,
                "age_band": self.age_band,
            }
        return {"type": self.type, "ts": self.ts, "actor": self.actor, "target": self.target}


def parse_ts(value: Any, field: str = "ts") -> float:
    """Seconds since the epoch from a number or an ISO 8601 string with a time zone."""
    if type(value) is float and 0 <= value < math.inf:
        return value
    if isinstance(value, bool):
        raise InvalidEvent(f"{field}: expected seconds since the epoch or ISO 8601, got {value!r}")
    if isinstance(value, (int, float)):
        f = float(value)
        if not math.isfinite(f) or f < 0:
            raise InvalidEvent(f"{field}: {value!r} is not a time (finite seconds >= 0)")
        return f
    if isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidEvent(f"{field}: {value!r} is not an ISO 8601 time") from None
        if t.tzinfo is None:
            raise InvalidEvent(f"{field}: {value!r} has no time zone (add Z or +00:00)")
        return t.timestamp()
    raise InvalidEvent(f"{field}: expected seconds since the epoch or ISO 8601, got {value!r}")


def check_id(value: Any, field: str) -> str:
    """An account id: 1..256 characters, no control characters."""
    if not isinstance(value, str) or value == "":
        raise InvalidEvent(f"{field}: expected a non-empty string, got {value!r}")
    if len(value) > MAX_ID:
        raise InvalidEvent(f"{field}: {len(value)} characters, at most {MAX_ID}")
    if _CONTROL.search(value):
        raise InvalidEvent(f"{field}: contains a control character")
    return value


def check_band(value: Any, field: str = "age_band") -> str:
    if value not in AGE_BANDS:
        raise InvalidEvent(f"{field}: {value!r} is not an age band ({', '.join(AGE_BANDS)})")
    return str(value)


def parse_event(d: Mapping[str, Any], index: int | None = None) -> Event:
    """An :class:`Event` from its JSON form, or :class:`InvalidEvent` naming the field."""
    try:
        if type(d) is not dict and not isinstance(d, Mapping):
            raise InvalidEvent(f"expected an object, got {type(d).__name__}")
        kind = d.get("type")
        if kind not in _TYPES:
            raise InvalidEvent(f"type: {kind!r} is not one of {', '.join(EVENT_TYPES)}")
        ts = parse_ts(d.get("ts"))
        if ts > time.time() + MAX_FUTURE_S:
            # A far-future time would expire every window it touches.
            raise InvalidEvent(f"ts: {d.get('ts')!r} is more than a day in the future")
        if kind == "account":
            extra = d.keys() - _ACCOUNT_FIELDS
            if extra:
                raise InvalidEvent(f"unknown field(s) for account: {', '.join(sorted(extra))}")
            return Event(
                "account",
                ts,
                check_id(d.get("account"), "account"),
                "",
                check_band(d.get("age_band")),
            )
        extra = d.keys() - _PAIR_FIELDS
        if extra:
            raise InvalidEvent(f"unknown field(s) for {kind}: {', '.join(sorted(extra))}")
        actor = check_id(d.get("actor"), "actor")
        target = check_id(d.get("target"), "target")
        if actor == target:
            raise InvalidEvent(f"actor and target are the same account ({actor!r})")
        return Event(str(kind), ts, actor, target)
    except InvalidEvent as e:
        if index is None:
            raise
        raise InvalidEvent(e.message, index=index) from None
