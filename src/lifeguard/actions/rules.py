"""Per-bank action rules: "on a match in bank X (passing these filters), POST a signed webhook to URL".

Webhook URLs are set by administrators. They must be ``http`` or ``https`` with a host and no
credentials; redirects are never followed (see :mod:`lifeguard.actions.webhooks`). A URL can still
point at an internal service (server-side request forgery): only trusted people should manage rules,
and ``lifeguard worker --block-private`` refuses loopback, private and link-local addresses.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final, get_args
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lifeguard.actions.models import ActionRule, WebhookDelivery
from lifeguard.actions.secretbox import (
    KEY_ENV,
    KEY_FILE_ENV,
    SecretBox,
    SecretKeyError,
    is_sealed,
    open_secret,
    seal_secret,
)
from lifeguard.banks.service import InvalidField, aware, validate_labels, validate_text
from lifeguard.errors import Conflict, NotFound
from lifeguard.matching.results import Match, VariantKind
from lifeguard.store.db import Database
from lifeguard.store.models import Bank, utcnow

VARIANT_KINDS: Final[tuple[str, ...]] = get_args(VariantKind)
MAX_URL = 2048
MIN_SECRET = 16
MAX_SECRET = 256
MAX_DISTANCE = 256
_SECRET_CHARS = frozenset(string.ascii_letters + string.digits + string.punctuation)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass(frozen=True)
class RuleInfo:
    id: int
    bank_id: int
    bank_name: str
    name: str
    url: str
    enabled: bool
    max_distance: int | None
    variants: tuple[str, ...]
    categories: tuple[str, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str
    #: The HMAC key, in clear when it was just set (create / update) or could be opened; ""
    #: when it is sealed under a key this process lacks. Kept out of ``repr``; the CLI shows it
    #: once, when it is created.
    secret: str = field(repr=False, default="")

    def to_json(self, *, with_secret: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "bank_id": self.bank_id,
            "bank": self.bank_name,
            "name": self.name,
            "url": self.url,
            "enabled": self.enabled,
            "max_distance": self.max_distance,
            "variants": list(self.variants),
            "categories": list(self.categories),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "created_by": self.created_by,
        }
        if with_secret:
            d["secret"] = self.secret
        return d

    def accepts(self, match: Match) -> bool:
        """Whether a (standing) match passes this rule's filters. Ignores ``enabled``/bank."""
        if self.max_distance is not None and match.distance > self.max_distance:
            return False
        if self.variants and match.variant not in self.variants:
            return False
        return not (self.categories and not set(self.categories) & set(match.categories))


# ------------------------------------------------------------------------------ validation


def validate_url(url: object) -> str:
    """An absolute ``http``/``https`` URL with a host, no credentials and no fragment."""
    if not isinstance(url, str):
        raise InvalidField(f"url: expected a string, got {type(url).__name__}")
    u = url.strip()
    if not u:
        raise InvalidField("url: empty")
    if len(u) > MAX_URL:
        raise InvalidField(f"url: {len(u)} characters, at most {MAX_URL} allowed")
    bad = next((c for c in u if c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise InvalidField(f"url: contains the character {bad!r}")
    parts = urlsplit(u)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{parts.scheme!r}" if parts.scheme else "none"
        raise InvalidField(f"url {u!r}: scheme {shown} not allowed (only http and https)")
    if parts.username is not None or parts.password is not None:
        raise InvalidField(
            f"url: credentials in the URL are not allowed ({scheme}://user:pass@...); "
            "receivers authenticate the Lifeguard-Signature header instead"
        )
    if not parts.hostname:
        raise InvalidField(f"url {u!r}: no host")
    try:
        parts.port  # noqa: B018  (validates the port)
    except ValueError as e:
        raise InvalidField(f"url {u!r}: bad port ({e})") from None
    if parts.fragment:
        raise InvalidField(f"url {u!r}: fragments (#...) are not sent; remove it")
    return parts._replace(scheme=scheme).geturl()


def validate_secret(secret: object) -> str:
    if not isinstance(secret, str):
        raise InvalidField(f"secret: expected a string, got {type(secret).__name__}")
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise InvalidField(f"secret: {len(secret)} characters, expected {MIN_SECRET}..{MAX_SECRET}")
    bad = next((c for c in secret if c not in _SECRET_CHARS), None)
    if bad is not None:
        raise InvalidField(f"secret: character {bad!r} not allowed (printable ASCII, no spaces)")
    return secret


def new_secret() -> str:
    """A fresh random signing secret (256 bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def validate_max_distance(d: object) -> int | None:
    if d is None:
        return None
    if isinstance(d, bool) or not isinstance(d, int):
        raise InvalidField(f"max_distance: expected an integer 0..{MAX_DISTANCE}, got {d!r}")
    if not 0 <= d <= MAX_DISTANCE:
        raise InvalidField(f"max_distance: {d} outside 0..{MAX_DISTANCE}")
    return d


def validate_variant_kinds(kinds: object) -> list[str]:
    if kinds is None:
        return []
    if isinstance(kinds, str) or not isinstance(kinds, Iterable):
        raise InvalidField(
            f"variants: expected a list of variant kinds, got {type(kinds).__name__}"
        )
    out: list[str] = []
    for k in kinds:
        if k not in VARIANT_KINDS:
            raise InvalidField(f"variants: {k!r} is not one of {', '.join(VARIANT_KINDS)}")
        if k not in out:
            out.append(str(k))
    return out


def _bool(v: object, what: str) -> bool:
    if not isinstance(v, bool):
        raise InvalidField(f"{what}: expected true or false, got {v!r}")
    return v


# ------------------------------------------------------------------------------------ CRUD


def _bank_row(s: Session, bank: int | str) -> Bank:
    if isinstance(bank, bool) or not isinstance(bank, (int, str)):
        raise InvalidField(f"bank: expected an id or a name, got {type(bank).__name__}")
    if isinstance(bank, int):
        row = s.get(Bank, bank)
        what = f"bank id {bank}"
    else:
        name = bank.strip().upper()
        row = s.execute(select(Bank).where(Bank.name == name)).scalar_one_or_none()
        what = f"bank {name!r}"
    if row is None:
        raise NotFound(f"{what} not found")
    if row.deleted:
        raise NotFound(f"{what} was deleted")
    return row


def rule_info(r: ActionRule, bank_name: str) -> RuleInfo:
    return RuleInfo(
        id=r.id,
        bank_id=r.bank_id,
        bank_name=bank_name,
        name=r.name,
        url=r.url,
        enabled=r.enabled,
        max_distance=r.max_distance,
        variants=tuple(r.variants or ()),
        categories=tuple(r.categories or ()),
        created_at=aware(r.created_at),
        updated_at=aware(r.updated_at),
        created_by=r.created_by,
        secret=_readable_secret(r.secret),
    )


def _readable_secret(stored: str) -> str:
    if not is_sealed(stored):
        return stored  # no key lookup for clear secrets
    try:
        return open_secret(stored, SecretBox.from_env())
    except SecretKeyError:
        return ""


def _check_unique(s: Session, bank_id: int, url: str, rule_id: int | None) -> None:
    q = select(ActionRule.id).where(ActionRule.bank_id == bank_id, ActionRule.url == url)
    other = s.execute(q).scalar_one_or_none()
    if other is not None and other != rule_id:
        raise Conflict(f"rule {other} already calls {url} for this bank")


def create_rule(
    db: Database,
    bank: int | str,
    url: str,
    *,
    secret: str | None = None,
    name: str = "",
    enabled: bool = True,
    max_distance: int | None = None,
    variants: Iterable[str] = (),
    categories: Iterable[str] = (),
    created_by: str = "",
) -> RuleInfo:
    """Add a rule; ``secret`` defaults to a fresh random one (returned in ``RuleInfo.secret``)."""
    u = validate_url(url)
    clear = validate_secret(secret) if secret is not None else new_secret()
    row = ActionRule(
        url=u,
        secret=seal_secret(clear, SecretBox.from_env()),
        name=validate_text(name, "name", 128),
        enabled=_bool(enabled, "enabled"),
        max_distance=validate_max_distance(max_distance),
        variants=validate_variant_kinds(variants),
        categories=validate_labels(categories),
        created_by=validate_text(created_by, "created_by"),
    )
    with db.session() as s:
        b = _bank_row(s, bank)
        _check_unique(s, b.id, u, None)
        row.bank_id = b.id
        s.add(row)
        s.flush()
        return replace(rule_info(row, b.name), secret=clear)


def get_rule(db: Database, rule_id: int) -> RuleInfo:
    with db.session() as s:
        r = s.get(ActionRule, rule_id)
        if r is None:
            raise NotFound(f"rule {rule_id} not found")
        return rule_info(r, s.get_one(Bank, r.bank_id).name)


def list_rules(db: Database, bank: int | str | None = None) -> list[RuleInfo]:
    with db.session() as s:
        q = select(ActionRule, Bank.name).join(Bank, Bank.id == ActionRule.bank_id)
        if bank is not None:
            q = q.where(ActionRule.bank_id == _bank_row(s, bank).id)
        return [rule_info(r, n) for r, n in s.execute(q.order_by(ActionRule.id)).all()]


def update_rule(
    db: Database,
    rule_id: int,
    *,
    url: str | _Unset = UNSET,
    secret: str | _Unset = UNSET,
    name: str | _Unset = UNSET,
    enabled: bool | _Unset = UNSET,
    max_distance: int | _Unset | None = UNSET,
    variants: Iterable[str] | _Unset = UNSET,
    categories: Iterable[str] | _Unset = UNSET,
) -> RuleInfo:
    """Change some fields. A new URL or secret applies to queued and retried deliveries too."""
    changes: dict[str, Any] = {}
    if not isinstance(url, _Unset):
        changes["url"] = validate_url(url)
    clear: str | None = None
    if not isinstance(secret, _Unset):
        clear = validate_secret(secret)
        changes["secret"] = seal_secret(clear, SecretBox.from_env())
    if not isinstance(name, _Unset):
        changes["name"] = validate_text(name, "name", 128)
    if not isinstance(enabled, _Unset):
        changes["enabled"] = _bool(enabled, "enabled")
    if not isinstance(max_distance, _Unset):
        changes["max_distance"] = validate_max_distance(max_distance)
    if not isinstance(variants, _Unset):
        changes["variants"] = validate_variant_kinds(variants)
    if not isinstance(categories, _Unset):
        changes["categories"] = validate_labels(categories)
    with db.session() as s:
        r = s.get(ActionRule, rule_id, with_for_update=True)
        if r is None:
            raise NotFound(f"rule {rule_id} not found")
        if "url" in changes:
            _check_unique(s, r.bank_id, changes["url"], r.id)
        for k, v in changes.items():
            setattr(r, k, v)
        s.flush()
        info = rule_info(r, s.get_one(Bank, r.bank_id).name)
        return info if clear is None else replace(info, secret=clear)


def seal_secrets(db: Database) -> dict[str, int]:
    """Seal every secret stored in clear, and re-seal those under an older key, with the current
    ``LIFEGUARD_SECRETS_KEY`` (one transaction). Counts: sealed, resealed, unchanged."""
    box = SecretBox.from_env()
    if box is None:
        raise SecretKeyError(f"set {KEY_ENV} or {KEY_FILE_ENV} first")
    counts = {"sealed": 0, "resealed": 0, "unchanged": 0}
    with db.session() as s:
        for r in s.scalars(select(ActionRule).with_for_update()):
            if not box.needs_sealing(r.secret):
                counts["unchanged"] += 1
                continue
            counts["resealed" if is_sealed(r.secret) else "sealed"] += 1
            r.secret = box.seal(box.open(r.secret))
    return counts


def delete_rule(db: Database, rule_id: int) -> RuleInfo:
    """Remove a rule. Its queued deliveries become dead letters ("rule removed"); delivered and dead
    ones stay as history (their ``rule_id`` becomes NULL)."""
    with db.session() as s:
        r = s.get(ActionRule, rule_id, with_for_update=True)
        if r is None:
            raise NotFound(f"rule {rule_id} not found")
        info = rule_info(r, s.get_one(Bank, r.bank_id).name)
        now = utcnow()
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.rule_id == rule_id, WebhookDelivery.status == "pending")
            .values(
                status="dead",
                last_error=f"rule {rule_id} removed before delivery",
                lease_until=None,
                lease_token="",
                updated_at=now,
            )
        )
        s.delete(r)
        return info
