"""Retention of match events and finished webhook deliveries.

Match events hold hashes and ids (the platform's content ids among them), never media; they still
should not be kept for ever. :func:`purge` deletes, in batches, the events older than the cut-off
whose webhook deliveries are all finished (``delivered`` or ``dead``) together with those
deliveries; an event with a delivery still pending stays until it is done. Each purge that removed
something is one audit record (counts and cut-off, no ids). ``lifeguard events purge`` runs it once;
``lifeguard worker`` runs it at most hourly with ``LIFEGUARD_MATCH_EVENT_RETENTION_DAYS`` (default 365;
0 keeps everything).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, exists, func, select

from lifeguard.actions.models import MatchEvent, WebhookDelivery
from lifeguard.errors import LifeguardError
from lifeguard.reports import audit
from lifeguard.store.db import Database
from lifeguard.store.models import utcnow


@dataclass(frozen=True)
class PurgeResult:
    cutoff: dt.datetime
    events: int
    deliveries: int
    kept_pending: int


def purge(
    db: Database,
    older_than: dt.timedelta,
    *,
    now: dt.datetime | None = None,
    batch: int = 5_000,
    actor: str = "retention",
    dry_run: bool = False,
) -> PurgeResult:
    """Delete match events older than ``older_than`` (and their finished deliveries)."""
    if older_than <= dt.timedelta(0):
        raise LifeguardError(f"retention must be positive, got {older_than}", code="invalid_field")
    if not 1 <= batch <= 100_000:
        raise LifeguardError(f"batch: expected 1..100000, got {batch}", code="invalid_field")
    cutoff = (now or utcnow()) - older_than
    unfinished = exists().where(
        WebhookDelivery.event_id == MatchEvent.id,
        WebhookDelivery.status.not_in(("delivered", "dead")),
    )
    old = MatchEvent.created_at < cutoff
    events = deliveries = 0
    purgeable = select(MatchEvent.id).where(old, ~unfinished)
    with db.read_session() as s:
        kept = s.execute(
            select(func.count()).select_from(MatchEvent).where(old, unfinished)
        ).scalar_one()
        if dry_run:
            n_ev = s.execute(select(func.count()).select_from(purgeable.subquery())).scalar_one()
            n_dl = s.execute(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.event_id.in_(purgeable))
            ).scalar_one()
            return PurgeResult(cutoff, n_ev, n_dl, kept)
    while True:
        with db.session() as s:
            ids = [
                int(i) for i in s.execute(purgeable.order_by(MatchEvent.id).limit(batch)).scalars()
            ]
            if not ids:
                break
            res = s.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
            deliveries += int(res.rowcount)  # type: ignore[attr-defined]
            res = s.execute(delete(MatchEvent).where(MatchEvent.id.in_(ids)))
            events += int(res.rowcount)  # type: ignore[attr-defined]
        if len(ids) < batch:
            break
    if events:
        with db.session() as s:
            audit.record(
                s,
                actor=actor,
                action="match_events.purge",
                subject_type="match_event",
                details={
                    "cutoff": audit.format_time(cutoff),
                    "events": events,
                    "deliveries": deliveries,
                    "kept_pending": kept,
                },
            )
    return PurgeResult(cutoff, events, deliveries, kept)
