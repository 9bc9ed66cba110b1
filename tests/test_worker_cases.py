"""``lifeguard worker`` turns match events into review cases each round (its ``jobs``), and a failing
job never stops webhook delivery."""

from __future__ import annotations

import threading

from lifeguard.actions.worker import Worker, WorkerConfig
from lifeguard.banks import Banks
from lifeguard.review.roles import Actor, Role
from lifeguard.review.service import ReviewService
from lifeguard.settings import Settings
from lifeguard.store.db import Database
from test_review import match_event

PDQ = "f" * 16 + "0" * 48


def test_worker_round_ingests_match_events(db: Database, settings: Settings) -> None:
    banks = Banks(db)
    banks.create_bank("WORKER_BANK", kind="block")
    match_event(db, banks, "WORKER_BANK", "content-7", PDQ)
    svc = ReviewService(db, settings)
    senior = Actor("s", Role.SENIOR)
    assert svc.queue(senior, status="all") == []
    stats = Worker(db, WorkerConfig(poll_s=0.01), jobs=[svc.ingest_match_events]).run(drain=True)
    assert stats.claimed == 0  # no webhook rules: nothing to deliver, but the case is there
    cases = svc.queue(senior, status="all")
    assert len(cases) == 1 and cases[0].category == "csam"
    # idempotent: another round makes no second case
    Worker(db, WorkerConfig(poll_s=0.01), jobs=[svc.ingest_match_events]).run(drain=True)
    assert len(svc.queue(senior, status="all")) == 1


def test_failing_job_does_not_stop_the_worker(db: Database) -> None:
    calls = []

    def broken() -> int:
        calls.append(1)
        raise RuntimeError("boom")

    stop = threading.Event()
    w = Worker(db, WorkerConfig(poll_s=0.01), jobs=[broken])
    t = threading.Thread(target=w.run, args=(stop,))
    t.start()
    while len(calls) < 3:
        threading.Event().wait(0.01)
    stop.set()
    t.join(5)
    assert not t.is_alive() and len(calls) >= 3
