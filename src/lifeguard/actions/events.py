"""Match events and the transactional outbox write: :func:`record_match`.

An event is one match of one query against one listed entry: ids, bank, distance, variant, the
platform's content id and the query's hashes — never media, file names or paths. Recording the events
and enqueueing their webhook deliveries happen in one database transaction, so a match is never
recorded without its webhooks, nor a webhook queued for an event that was rolled back.

Allow-list-suppressed matches are recorded too (``type="suppressed"``, with the allow-list entry
ids), for audit of reviewed false positives, but fire no webhooks. A result with neither standing nor
suppressed matches returns ``[]`` without touching the database.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select

from lifeguard.actions.models import ActionRule, MatchEvent, WebhookDelivery
from lifeguard.actions.rules import RuleInfo, rule_info
from lifeguard.banks.service import InvalidField, aware
from lifeguard.matching.results import Match, MatchResult
from lifeguard.signals.hasher import MediaHashes
from lifeguard.store.db import Database
from lifeguard.store.models import Bank, utcnow

EventType = Literal["match", "suppressed"]
MAX_CONTENT_ID = 256


@dataclass(frozen=True)
class EventInfo:
    id: int
    created_at: dt.datetime
    query_id: str
    type: str
    bank_id: int
    bank_name: str
    entry_id: int
    external_id: str
    signal_type: str
    listed_value: str
    distance: int
    variant: str
    query_variant: str
    listed_variant: str
    categories: tuple[str, ...]
    suppressed_by: tuple[int, ...]
    content_id: str | None
    media_kind: str | None
    query_md5: str | None
    query_sha256: str | None
    query_pdq: str | None
    query_hash: str | None
    index_revision: int

    def to_json(self) -> dict[str, Any]:
        """The event as webhook receivers and ``--format jsonl`` see it (stable field names)."""
        return {
            "event_id": self.id,
            "type": self.type,
            "created_at": self.created_at.isoformat(),
            "query_id": self.query_id,
            "bank": {"id": self.bank_id, "name": self.bank_name},
            "entry": {
                "id": self.entry_id,
                "external_id": self.external_id,
                "signal_type": self.signal_type,
                "value": self.listed_value,
                "categories": list(self.categories),
            },
            "match": {
                "distance": self.distance,
                "variant": self.variant,
                "query_variant": self.query_variant,
                "listed_variant": self.listed_variant,
                "suppressed_by": list(self.suppressed_by),
            },
            "content_id": self.content_id,
            "query": {
                "kind": self.media_kind,
                "md5": self.query_md5,
                "sha256": self.query_sha256,
                "pdq": self.query_pdq,
                "matched_hash": self.query_hash,
            },
            "index_revision": self.index_revision,
        }


def event_info(e: MatchEvent) -> EventInfo:
    return EventInfo(
        id=e.id,
        created_at=aware(e.created_at),
        query_id=e.query_id,
        type=e.type,
        bank_id=e.bank_id,
        bank_name=e.bank_name,
        entry_id=e.entry_id,
        external_id=e.external_id,
        signal_type=e.signal_type,
        listed_value=e.listed_value,
        distance=e.distance,
        variant=e.variant,
        query_variant=e.query_variant,
        listed_variant=e.listed_variant,
        categories=tuple(e.categories or ()),
        suppressed_by=tuple(int(x) for x in (e.suppressed_by or ())),
        content_id=e.content_id,
        media_kind=e.media_kind,
        query_md5=e.query_md5,
        query_sha256=e.query_sha256,
        query_pdq=e.query_pdq,
        query_hash=e.query_hash,
        index_revision=e.index_revision,
    )


def validate_content_id(content_id: object) -> str | None:
    """The platform's id for the queried content: None, or 1..256 characters without controls."""
    if content_id is None:
        return None
    if not isinstance(content_id, str):
        raise InvalidField(f"content_id: expected a string, got {type(content_id).__name__}")
    if not content_id:
        raise InvalidField("content_id: empty (pass None when there is no content id)")
    if len(content_id) > MAX_CONTENT_ID:
        raise InvalidField(
            f"content_id: {len(content_id)} characters, at most {MAX_CONTENT_ID} allowed"
        )
    bad = next((c for c in content_id if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise InvalidField(f"content_id: contains the control character {bad!r}")
    return content_id


def _query_hash(m: Match, media: MediaHashes | None) -> str | None:
    """The query-side hash behind a match, when it is known (never frames or media)."""
    if m.variant == "exact":
        return m.value  # exact matches: the query digest equals the listed one
    if media is None or m.signal_type != "pdq":
        return None
    if m.query_variant in ("original", "plain"):
        return media.pdq
    for v in media.query_variants:
        if v.name == m.query_variant:
            return v.pdq
    return None


def _event_row(
    m: Match,
    etype: EventType,
    *,
    query_id: str,
    now: dt.datetime,
    content_id: str | None,
    media: MediaHashes | None,
    revision: int,
) -> MatchEvent:
    return MatchEvent(
        created_at=now,
        query_id=query_id,
        type=etype,
        bank_id=m.bank_id,
        bank_name=m.bank,
        entry_id=m.entry_id,
        external_id=m.external_id,
        signal_type=m.signal_type,
        listed_value=m.value,
        distance=int(m.distance),
        variant=m.variant,
        query_variant=m.query_variant,
        listed_variant=m.listed_variant,
        categories=list(m.categories),
        suppressed_by=list(m.suppressed_by),
        content_id=content_id,
        media_kind=media.kind if media is not None else None,
        query_md5=media.md5 if media is not None else None,
        query_sha256=media.sha256 if media is not None else None,
        query_pdq=media.pdq if media is not None else None,
        query_hash=_query_hash(m, media),
        index_revision=int(revision),
    )


def record_match(
    db: Database,
    result: MatchResult,
    content_id: str | None,
    media: MediaHashes | None,
) -> list[int]:
    """Record one query's matches and enqueue their webhooks, atomically; returns the event ids.

    One event per standing match (``type="match"``), then one per allow-list-suppressed match
    (``type="suppressed"``, no webhooks). Each standing match gets one delivery per enabled rule of
    its bank whose filters accept it. Cheap when nothing matched: no database access at all.
    Raises :class:`~lifeguard.banks.service.InvalidField` for a bad ``content_id`` (before writing).
    """
    if not result.matches and not result.suppressed:
        return []
    cid = validate_content_id(content_id)
    query_id = str(uuid.uuid4())
    now = utcnow()
    rows: list[tuple[MatchEvent, Match | None]] = []
    for m in result.matches:
        ev = _event_row(
            m,
            "match",
            query_id=query_id,
            now=now,
            content_id=cid,
            media=media,
            revision=result.revision,
        )
        rows.append((ev, m))
    for m in result.suppressed:
        ev = _event_row(
            m,
            "suppressed",
            query_id=query_id,
            now=now,
            content_id=cid,
            media=media,
            revision=result.revision,
        )
        rows.append((ev, None))
    with db.session() as s:
        rules: dict[int, list[RuleInfo]] = defaultdict(list)
        bank_ids = sorted({m.bank_id for m in result.matches})
        if bank_ids:
            q = (
                select(ActionRule, Bank.name)
                .join(Bank, Bank.id == ActionRule.bank_id)
                .where(ActionRule.bank_id.in_(bank_ids), ActionRule.enabled.is_(True))
                .order_by(ActionRule.id)
            )
            for r, bank_name in s.execute(q).all():
                rules[r.bank_id].append(rule_info(r, bank_name))
        s.add_all([ev for ev, _ in rows])
        s.flush()
        deliveries = [
            WebhookDelivery(
                event_id=ev.id,
                rule_id=rule.id,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                url=rule.url,
                created_at=now,
                updated_at=now,
            )
            for ev, m in rows
            if m is not None
            for rule in rules.get(m.bank_id, ())
            if rule.accepts(m)
        ]
        if deliveries:
            s.add_all(deliveries)
        return [ev.id for ev, _ in rows]


def get_event(db: Database, event_id: int) -> EventInfo:
    from lifeguard.errors import NotFound

    with db.session() as s:
        e = s.get(MatchEvent, event_id)
        if e is None:
            raise NotFound(f"event {event_id} not found")
        return event_info(e)


def list_events(
    db: Database,
    *,
    bank_id: int | None = None,
    content_id: str | None = None,
    type: EventType | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[EventInfo]:
    """Events in id order (oldest first), ``after_id`` for paging."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidField(f"limit: expected an integer 1..10000, got {limit!r}")
    q = select(MatchEvent)
    if bank_id is not None:
        q = q.where(MatchEvent.bank_id == bank_id)
    if content_id is not None:
        q = q.where(MatchEvent.content_id == content_id)
    if type is not None:
        q = q.where(MatchEvent.type == type)
    if after_id is not None:
        q = q.where(MatchEvent.id > after_id)
    with db.session() as s:
        return [event_info(e) for e in s.execute(q.order_by(MatchEvent.id).limit(limit)).scalars()]
