"""Retention of match events: old events with finished deliveries go (with those deliveries), events
with a pending delivery stay, new events stay, every purge is audited; also from the CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from lifeguard.actions.models import MatchEvent, WebhookDelivery
from lifeguard.actions.retention import purge
from lifeguard.actions.rules import create_rule
from lifeguard.banks import Banks
from lifeguard.errors import LifeguardError
from lifeguard.reports.models import AuditRecord
from lifeguard.settings import Settings, get_settings
from lifeguard.store.db import Database
from test_review import match_event

PDQS = [f"{i:02x}" * 32 for i in (1, 2, 3, 4)]


def _count(db: Database, model: type) -> int:
    with db.read_session() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _age(db: Database, event_ids: list[int], days: int) -> None:
    with db.session() as s:
        s.execute(
            update(MatchEvent)
            .where(MatchEvent.id.in_(event_ids))
            .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days))
        )


def _set_status(db: Database, event_ids: list[int], status: str) -> None:
    with db.session() as s:
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.event_id.in_(event_ids))
            .values(status=status)
        )


def test_purge_keeps_pending_and_recent(db: Database) -> None:
    banks = Banks(db)
    banks.create_bank("RET", kind="block")
    create_rule(db, "RET", "https://hooks.example.org/r")
    delivered = match_event(db, banks, "RET", "c-1", PDQS[0])
    dead = match_event(db, banks, "RET", "c-2", PDQS[1])
    pending = match_event(db, banks, "RET", "c-3", PDQS[2])
    recent = match_event(db, banks, "RET", "c-4", PDQS[3])
    assert _count(db, WebhookDelivery) == 4
    _age(db, delivered + dead + pending, 400)
    _set_status(db, delivered + recent, "delivered")
    _set_status(db, dead, "dead")

    dry = purge(db, dt.timedelta(days=365), dry_run=True)
    assert (dry.events, dry.deliveries, dry.kept_pending) == (2, 2, 1)
    assert _count(db, MatchEvent) == 4  # a dry run deletes nothing

    r = purge(db, dt.timedelta(days=365), batch=1)  # batches of one: the loop runs
    assert (r.events, r.deliveries, r.kept_pending) == (2, 2, 1)
    with db.read_session() as s:
        left = set(s.execute(select(MatchEvent.id)).scalars())
        recs = list(
            s.execute(
                select(AuditRecord).where(AuditRecord.action == "match_events.purge")
            ).scalars()
        )
    assert left == set(pending + recent)
    assert _count(db, WebhookDelivery) == 2
    assert len(recs) == 1
    assert json.loads(recs[0].details_json) == {
        "cutoff": json.loads(recs[0].details_json)["cutoff"],
        "events": 2,
        "deliveries": 2,
        "kept_pending": 1,
    }

    # the pending one goes once its delivery is finished; nothing to do -> no audit record
    _set_status(db, pending, "delivered")
    assert purge(db, dt.timedelta(days=365)).events == 1
    assert purge(db, dt.timedelta(days=365)).events == 0
    with db.read_session() as s:
        n = s.execute(
            select(func.count()).where(AuditRecord.action == "match_events.purge")
        ).scalar_one()
    assert n == 2


def test_purge_rejects_bad_arguments(db: Database) -> None:
    with pytest.raises(LifeguardError):
        purge(db, dt.timedelta(0))
    with pytest.raises(LifeguardError):
        purge(db, dt.timedelta(days=1), batch=0)


def test_events_purge_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from lifeguard.cli import app

    db = Database.open(settings)
    try:
        banks = Banks(db)
        banks.create_bank("RETCLI", kind="block")
        old = match_event(db, banks, "RETCLI", "c-9", PDQS[0])
        _age(db, old, 30)
    finally:
        db.dispose()
    monkeypatch.setenv("LIFEGUARD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LIFEGUARD_DATABASE_URL", settings.resolved_database_url)
    get_settings.cache_clear()  # the CLI reads the environment through a cached Settings
    try:
        runner = CliRunner()
        r = runner.invoke(app, ["events", "purge", "--older-than-days", "60"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output.strip().splitlines()[-1])["events"] == 0
        r = runner.invoke(app, ["events", "purge", "--older-than-days", "7"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output.strip().splitlines()[-1])["events"] == 1, r.output
        r = runner.invoke(app, ["events", "purge", "--older-than-days", "0"])
        assert r.exit_code != 0
    finally:
        get_settings.cache_clear()
