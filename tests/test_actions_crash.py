"""A worker killed (SIGKILL) mid-delivery loses nothing: after a restart every event is delivered at
least once, and the re-sent deliveries carry the same Idempotency-Key and body. Real subprocesses
(``python -m lifeguard.actions.worker``), a real receiver, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lifeguard.actions import create_rule, get_delivery, list_deliveries, record_match
from lifeguard.banks import Banks
from lifeguard.settings import Settings
from lifeguard.store.db import Database
from test_actions_support import SECRET, Receiver, make_bank, result

N_EVENTS = 10
CONCURRENCY = 4


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        LIFEGUARD_DATA_DIR=str(settings.data_dir),
        LIFEGUARD_DATABASE_URL=settings.resolved_database_url,
    )
    cmd = [
        sys.executable, "-m", "lifeguard.actions.worker",
        "--timeout-s", "2", "--lease-s", "4", "--poll-s", "0.1",
        "--concurrency", str(CONCURRENCY), "--max-attempts", "5",
        "--backoff-base-s", "0.2", "--backoff-max-s", "1",
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _wait(pred: object, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_sigkill_mid_delivery_loses_nothing(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    recv = Receiver()
    recv.hold.set()  # every request is held open until released
    log = tmp_path / "worker.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        banks = Banks(db)
        matches = make_bank(banks, "ALPHA", N_EVENTS)
        create_rule(db, "ALPHA", recv.url, secret=SECRET)
        event_ids = [
            record_match(db, result(m), f"post-{i}", None)[0] for i, m in enumerate(matches)
        ]
        deliveries = {d.event_id: d.id for d in list_deliveries(db)}
        assert sorted(deliveries) == sorted(event_ids)

        first = _worker(settings, log)
        procs.append(first)
        # The worker claims a batch and POSTs it; the receiver holds every request open.
        assert recv.wait_for(CONCURRENCY, timeout=30), log.read_text()
        in_flight = set(recv.keys())
        assert len(in_flight) == CONCURRENCY
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        for key in in_flight:  # killed mid-request: still leased, not delivered
            d = get_delivery(db, int(key or 0))
            assert d.status == "pending" and d.lease_until is not None and d.attempts == 1
        recv.hold.clear()
        recv.released.set()  # the held handlers now answer into closed sockets

        second = _worker(settings, log)
        procs.append(second)

        def all_delivered() -> bool:
            return all(d.status == "delivered" for d in list_deliveries(db))

        assert _wait(all_delivered, timeout=40), log.read_text()
        second.send_signal(signal.SIGTERM)  # graceful stop
        assert second.wait(15) == 0, log.read_text()

        counts = Counter(recv.keys())
        assert set(counts) == {str(d) for d in deliveries.values()}  # every event at least once
        assert all(r.signature_error == "" for r in recv.received)
        dup = {k for k, n in counts.items() if n > 1}
        assert dup == in_flight  # exactly the requests cut off by the kill were sent again
        for key in dup:
            bodies = {r.body for r in recv.received if r.key == key}
            assert len(bodies) == 1  # same key, same body bytes
            assert get_delivery(db, int(key or 0)).attempts == 2
        for key in set(counts) - dup:
            assert get_delivery(db, int(key or 0)).attempts == 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        recv.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_worker_stops_cleanly_on_signals(
    sqlite_settings: Settings, tmp_path: Path, sig: int
) -> None:
    log = tmp_path / "worker.log"
    p = _worker(sqlite_settings, log)
    try:
        assert _wait(lambda: "started" in log.read_text(), timeout=20), log.read_text()
        p.send_signal(sig)
        assert p.wait(10) == 0, log.read_text()
        assert "stopped" in log.read_text()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
