"""The webhook outbox: claiming due deliveries under a lease, recording outcomes, dead letters, replay.

A delivery is *due* when ``status = 'pending'``, ``next_attempt_at <= now``, no live lease
(``lease_until`` is NULL or past) and its rule is enabled (disabling a rule pauses its queue).
Claiming sets ``lease_until = now + lease``, a fresh ``lease_token`` and ``attempts += 1`` in one
statement:

* PostgreSQL: ``UPDATE ... WHERE id IN (SELECT id ... FOR UPDATE SKIP LOCKED LIMIT n) RETURNING``,
  so concurrent workers never wait for or double-claim each other's rows;
* SQLite: the same ``UPDATE ... RETURNING`` without row locks; lifeguard opens every SQLite
  transaction with ``BEGIN IMMEDIATE``, which serialises writers, so two claims cannot interleave.

Outcomes are written only while the claimer still holds the lease token, so a worker whose lease ran
out (and whose row another worker took over) cannot overwrite the newer attempt. A worker that dies
leaves its lease to expire; the row is then claimed again (the dead attempt counted).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from lifeguard.actions.events import EventInfo, event_info
from lifeguard.actions.models import ActionRule, MatchEvent, WebhookDelivery
from lifeguard.actions.secretbox import SecretBox, SecretKeyError, open_secret
from lifeguard.banks.service import InvalidField, aware
from lifeguard.errors import Conflict, NotFound
from lifeguard.store.db import Database
from lifeguard.store.models import utcnow

DeliveryStatus = Literal["pending", "delivered", "dead"]
DELIVERY_STATUSES: tuple[str, ...] = ("pending", "delivered", "dead")
MAX_ERROR = 2000

WD = WebhookDelivery


@dataclass(frozen=True)
class DeliveryInfo:
    id: int
    event_id: int
    rule_id: int | None
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    lease_until: dt.datetime | None
    lease_owner: str
    url: str
    last_status: int | None
    last_error: str
    created_at: dt.datetime
    updated_at: dt.datetime
    last_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    replays: int

    def to_json(self) -> dict[str, Any]:
        def t(v: dt.datetime | None) -> str | None:
            return v.isoformat() if v is not None else None

        return {
            "id": self.id,
            "event_id": self.event_id,
            "rule_id": self.rule_id,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": t(self.next_attempt_at),
            "lease_until": t(self.lease_until),
            "lease_owner": self.lease_owner,
            "url": self.url,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": t(self.created_at),
            "updated_at": t(self.updated_at),
            "last_attempt_at": t(self.last_attempt_at),
            "delivered_at": t(self.delivered_at),
            "replays": self.replays,
        }


def _opt(v: dt.datetime | None) -> dt.datetime | None:
    return aware(v) if v is not None else None


def delivery_info(d: WebhookDelivery) -> DeliveryInfo:
    return DeliveryInfo(
        id=d.id,
        event_id=d.event_id,
        rule_id=d.rule_id,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=aware(d.next_attempt_at),
        lease_until=_opt(d.lease_until),
        lease_owner=d.lease_owner,
        url=d.url,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=aware(d.created_at),
        updated_at=aware(d.updated_at),
        last_attempt_at=_opt(d.last_attempt_at),
        delivered_at=_opt(d.delivered_at),
        replays=d.replays,
    )


@dataclass(frozen=True)
class Claimed:
    """A leased delivery with what the worker needs to send it (no ORM objects)."""

    id: int
    token: str
    attempts: int
    event: EventInfo
    rule_id: int | None
    url: str | None  # the rule's current URL; None when the rule is gone
    secret: str | None
    #: why the (sealed) secret could not be opened here; the delivery is retried later
    secret_error: str | None = None


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("clock must return timezone-aware datetimes")
    return now.astimezone(dt.UTC)


def claim(
    db: Database,
    *,
    now: dt.datetime,
    limit: int,
    lease_s: float,
    owner: str,
    max_attempts: int,
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries (oldest due first). Rows whose lease expired after
    their last allowed attempt become dead letters here."""
    now = _utc(now)
    token = str(uuid.uuid4())
    lease_until = now + dt.timedelta(seconds=lease_s)
    with db.session() as s:
        _expire_exhausted(s, now, max_attempts, db.dialect)
        enabled_rules = select(ActionRule.id).where(ActionRule.enabled.is_(True))
        due = (
            select(WD.id)
            .where(
                WD.status == "pending",
                WD.next_attempt_at <= now,
                or_(WD.lease_until.is_(None), WD.lease_until <= now),
                WD.attempts < max_attempts,
                or_(WD.rule_id.is_(None), WD.rule_id.in_(enabled_rules)),
            )
            .order_by(WD.next_attempt_at, WD.id)
            .limit(limit)
        )
        if db.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(WD)
            .where(WD.id.in_(due.scalar_subquery()))
            .values(
                lease_until=lease_until,
                lease_token=token,
                lease_owner=owner[:128],
                attempts=WD.attempts + 1,
                updated_at=now,
            )
            .returning(WD.id, WD.attempts)
            .execution_options(synchronize_session=False)
        )
        got = {int(i): int(a) for i, a in s.execute(stmt).all()}
        if not got:
            return []
        rows = s.execute(
            select(WD.id, WD.rule_id, MatchEvent, ActionRule.url, ActionRule.secret)
            .join(MatchEvent, MatchEvent.id == WD.event_id)
            .outerjoin(ActionRule, ActionRule.id == WD.rule_id)
            .where(WD.id.in_(list(got)))
        ).all()
        box = SecretBox.from_env()
        out: list[Claimed] = []
        for did, rid, ev, url, stored in rows:
            secret: str | None = stored
            problem: str | None = None
            if stored is not None:
                try:
                    secret = open_secret(stored, box)
                except SecretKeyError as e:
                    secret, problem = None, e.message
            out.append(
                Claimed(
                    id=int(did),
                    token=token,
                    attempts=got[int(did)],
                    event=event_info(ev),
                    rule_id=rid,
                    url=url,
                    secret=secret,
                    secret_error=problem,
                )
            )
        return sorted(out, key=lambda c: c.id)


def _expire_exhausted(s: Session, now: dt.datetime, max_attempts: int, dialect: str) -> None:
    exhausted = select(WD.id).where(
        WD.status == "pending",
        WD.attempts >= max_attempts,
        or_(WD.lease_until.is_(None), WD.lease_until <= now),
    )
    if dialect == "postgresql":
        exhausted = exhausted.with_for_update(skip_locked=True)
    s.execute(
        update(WD)
        .where(WD.id.in_(exhausted.scalar_subquery()))
        .values(
            status="dead",
            lease_until=None,
            lease_token="",
            updated_at=now,
            last_error=func.substr(
                f"no attempts left (max {int(max_attempts)}): the last attempt's lease expired "
                + "(worker stopped mid-delivery?) or the limit was lowered; previous error: "
                + WD.last_error,
                1,
                MAX_ERROR,
            ),
        )
        .execution_options(synchronize_session=False)
    )


def finish(
    db: Database,
    claimed: Claimed,
    *,
    now: dt.datetime,
    attempted_at: dt.datetime,
    status: DeliveryStatus,
    http_status: int | None,
    error: str,
    next_attempt_at: dt.datetime | None = None,
) -> bool:
    """Record an attempt's outcome; False when the lease was lost (the row was not changed)."""
    now = _utc(now)
    values: dict[str, Any] = {
        "status": status,
        "lease_until": None,
        "lease_token": "",
        "updated_at": now,
        "last_attempt_at": _utc(attempted_at),
        "last_status": http_status,
        "last_error": error[:MAX_ERROR],
    }
    if claimed.url is not None:
        values["url"] = claimed.url
    if status == "delivered":
        values["delivered_at"] = now
    elif status == "pending":
        if next_attempt_at is None:
            raise ValueError("a retried delivery needs next_attempt_at")
        values["next_attempt_at"] = _utc(next_attempt_at)
    with db.session() as s:
        res = s.execute(
            update(WD)
            .where(WD.id == claimed.id, WD.lease_token == claimed.token)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(res.rowcount)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ listing, replay


def get_delivery(db: Database, delivery_id: int) -> DeliveryInfo:
    with db.session() as s:
        d = s.get(WD, delivery_id)
        if d is None:
            raise NotFound(f"delivery {delivery_id} not found")
        return delivery_info(d)


def list_deliveries(
    db: Database,
    *,
    status: str | None = None,
    rule_id: int | None = None,
    event_id: int | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[DeliveryInfo]:
    """Deliveries in id order, optionally only one status / rule / event; ``after_id`` pages."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidField(f"status: {status!r} is not one of {', '.join(DELIVERY_STATUSES)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidField(f"limit: expected an integer 1..10000, got {limit!r}")
    q = select(WD)
    if status is not None:
        q = q.where(WD.status == status)
    if rule_id is not None:
        q = q.where(WD.rule_id == rule_id)
    if event_id is not None:
        q = q.where(WD.event_id == event_id)
    if after_id is not None:
        q = q.where(WD.id > after_id)
    with db.session() as s:
        return [delivery_info(d) for d in s.execute(q.order_by(WD.id).limit(limit)).scalars()]


def count_deliveries(db: Database) -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(select(WD.status, func.count()).group_by(WD.status)).all()
    out = dict.fromkeys(DELIVERY_STATUSES, 0)
    out.update({str(k): int(v) for k, v in rows})
    return out


def _requeue_values(now: dt.datetime) -> dict[str, Any]:
    return {
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": None,
        "lease_token": "",
        "lease_owner": "",
        "updated_at": now,
        "replays": WD.replays + 1,
    }


def replay_delivery(
    db: Database, delivery_id: int, *, now: dt.datetime | None = None
) -> DeliveryInfo:
    """Queue one dead (or already delivered: a resend) delivery again, with a fresh attempt count.
    Same delivery id, so the receiver sees the same ``Idempotency-Key`` and body."""
    t = _utc(now or utcnow())
    with db.session() as s:
        d = s.get(WD, delivery_id, with_for_update=True)
        if d is None:
            raise NotFound(f"delivery {delivery_id} not found")
        if d.status == "pending":
            raise Conflict(f"delivery {delivery_id} is still queued (attempt {d.attempts})")
        if d.rule_id is None:
            raise Conflict(f"delivery {delivery_id}: its rule was removed; nothing to send it to")
        s.execute(
            update(WD)
            .where(WD.id == delivery_id)
            .values(**_requeue_values(t))
            .execution_options(synchronize_session=False)
        )
    return get_delivery(db, delivery_id)


def replay_dead(db: Database, *, rule_id: int | None = None, now: dt.datetime | None = None) -> int:
    """Queue every dead letter again (of one rule, if given); returns how many. Dead letters whose
    rule was removed stay dead."""
    t = _utc(now or utcnow())
    q = update(WD).where(WD.status == "dead", WD.rule_id.is_not(None))
    if rule_id is not None:
        q = q.where(WD.rule_id == rule_id)
    with db.session() as s:
        res = s.execute(q.values(**_requeue_values(t)).execution_options(synchronize_session=False))
        return int(res.rowcount)  # type: ignore[attr-defined]
