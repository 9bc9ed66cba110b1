"""The webhook worker against a real HTTP receiver on 127.0.0.1: signed delivery, back-off with an
injected clock, dead letters, Retry-After, redirects, timeouts, leases, replay, paused and removed
rules, the private-address guard, concurrent workers, and the CLI commands."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from lifeguard.actions import (
    IDEMPOTENCY_HEADER,
    create_rule,
    delete_rule,
    get_delivery,
    list_deliveries,
    record_match,
    replay_dead,
    replay_delivery,
    update_rule,
    verify_signature,
)
from lifeguard.actions.cli_commands import app as actions_app
from lifeguard.actions.outbox import claim, finish
from lifeguard.actions.webhooks import SendResult, post
from lifeguard.actions.worker import Worker, WorkerConfig, backoff_delay
from lifeguard.banks import Banks, InvalidField
from lifeguard.errors import Conflict, NotFound
from lifeguard.settings import Settings, get_settings
from lifeguard.store.db import Database
from test_actions_support import SECRET, FakeClock, Received, Receiver, make_bank, result

FAST = WorkerConfig(
    timeout_s=2.0, lease_s=30.0, concurrency=4, poll_s=0.05, max_attempts=4,
    backoff_base_s=10.0, backoff_max_s=25.0,
)  # fmt: skip


@pytest.fixture
def banks(db: Database) -> Banks:
    return Banks(db)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _setup(db: Database, banks: Banks, url: str, n: int = 1, **rule: Any) -> list[int]:
    """A bank with ``n`` entries, one rule to ``url``, one recorded match per entry; delivery ids."""
    matches = make_bank(banks, "ALPHA", n)
    create_rule(db, "ALPHA", url, secret=SECRET, **rule)
    for m in matches:
        record_match(db, result(m), f"post-{m.entry_id}", None)
    return [d.id for d in list_deliveries(db)]


def _status(r: Received, n: int, status: int, headers: dict[str, str] | None = None) -> Any:
    return status, headers or {}, b"nope"


# ------------------------------------------------------------------------------ delivery


def test_delivers_signed_webhook(db: Database, banks: Banks, receiver: Receiver) -> None:
    (did,) = _setup(db, banks, receiver.url)
    w = Worker(db, FAST)
    assert w.run_once() == 1
    (r,) = receiver.received
    assert r.signature_error == "" and r.path == "/hook"
    assert r.key == str(did) and r.headers["Content-Type"] == "application/json"
    body = json.loads(r.body)
    assert body["delivery_id"] == did and body["type"] == "match"
    assert body["bank"]["name"] == "ALPHA" and body["entry"]["external_id"] == "alpha-0"
    assert body["match"]["distance"] == 0 and body["match"]["variant"] == "exact"
    assert body["content_id"].startswith("post-") and body["event_id"] == int(
        r.headers["Lifeguard-Event-Id"]
    )
    d = get_delivery(db, did)
    assert (d.status, d.attempts, d.last_status, d.last_error) == ("delivered", 1, 200, "")
    assert d.delivered_at is not None and d.lease_until is None
    assert w.run_once() == 0  # nothing left
    assert len(receiver.received) == 1


def test_backoff_schedule_with_injected_clock(db: Database, banks: Banks) -> None:
    recv = Receiver(behaviour=lambda r, n: (500, {}, b"receiver broke"))
    try:
        (did,) = _setup(db, banks, recv.url)
        clock = FakeClock()
        w = Worker(db, FAST, clock=clock, rng=random.Random(42))
        expected = random.Random(42)
        for attempt in range(1, FAST.max_attempts):
            assert w.run_once() == 1
            d = get_delivery(db, did)
            assert (d.status, d.attempts, d.last_status) == ("pending", attempt, 500)
            assert "HTTP 500" in d.last_error and "receiver broke" in d.last_error
            delay = (d.next_attempt_at - clock()).total_seconds()
            assert delay == pytest.approx(backoff_delay(attempt, FAST, expected), abs=1e-3)
            nominal = min(25.0, 10.0 * 2 ** (attempt - 1))
            assert nominal / 2 <= delay <= nominal
            assert w.run_once() == 0  # not due yet
            clock.advance(delay - 0.5)
            assert w.run_once() == 0
            clock.advance(1.0)
        assert w.run_once() == 1  # the last allowed attempt
        d = get_delivery(db, did)
        assert d.status == "dead" and d.attempts == FAST.max_attempts
        assert d.last_error.startswith(f"gave up after {FAST.max_attempts} attempts: HTTP 500")
        clock.advance(10_000)
        assert w.run_once() == 0
        # Every attempt carried the same key and the same body bytes, each correctly signed.
        assert len(recv.received) == FAST.max_attempts
        assert {r.key for r in recv.received} == {str(did)}
        assert len({r.body for r in recv.received}) == 1
        assert all(r.signature_error == "" for r in recv.received)
        assert [r.headers["Lifeguard-Attempt"] for r in recv.received] == ["1", "2", "3", "4"]
    finally:
        recv.close()


def _by_delivery(statuses: dict[str, list[int]]) -> Any:
    """Receiver behaviour: delivery key -> status of the 1st, 2nd, ... arrival (then 200)."""

    def behave(r: Received, n: int) -> Any:
        seq = statuses.get(r.key or "", [])
        return (seq[n - 1] if n <= len(seq) else 200), {}, b"said so"

    return behave


def test_client_errors_are_dead_letters_at_once(db: Database, banks: Banks) -> None:
    plan: dict[str, list[int]] = {}
    recv = Receiver(behaviour=_by_delivery(plan))
    try:
        ids = _setup(db, banks, recv.url, n=5)
        codes = [400, 401, 404, 410, 422]
        plan.update({str(i): [c] for i, c in zip(ids, codes, strict=True)})
        assert Worker(db, replace(FAST, concurrency=5)).run_once() == 5
        for i, c in zip(ids, codes, strict=True):
            d = get_delivery(db, i)
            assert (d.status, d.attempts, d.last_status) == ("dead", 1, c)
            assert f"HTTP {c}" in d.last_error and "said so" in d.last_error
    finally:
        recv.close()


def test_retryable_statuses(db: Database, banks: Banks) -> None:
    plan: dict[str, list[int]] = {}
    recv = Receiver(behaviour=_by_delivery(plan))
    try:
        ids = _setup(db, banks, recv.url, n=5)
        codes = [408, 425, 429, 500, 503]
        plan.update({str(i): [c, 204] for i, c in zip(ids, codes, strict=True)})
        clock = FakeClock()
        w = Worker(db, replace(FAST, concurrency=5), clock=clock)
        assert w.run_once() == 5
        assert [get_delivery(db, i).last_status for i in ids] == codes
        assert {get_delivery(db, i).status for i in ids} == {"pending"}
        clock.advance(11)
        assert w.run_once() == 5
        for i in ids:
            d = get_delivery(db, i)
            assert (d.status, d.attempts, d.last_status) == ("delivered", 2, 204)
    finally:
        recv.close()


def test_retry_after_is_honoured(db: Database, banks: Banks) -> None:
    recv = Receiver(behaviour=lambda r, n: (429, {"Retry-After": "20"}, b"slow down"))
    try:
        (did,) = _setup(db, banks, recv.url)
        clock = FakeClock()
        cfg = WorkerConfig(
            timeout_s=2, lease_s=30, max_attempts=5, backoff_base_s=1, backoff_max_s=60
        )
        Worker(db, cfg, clock=clock).run_once()
        d = get_delivery(db, did)
        assert d.status == "pending"
        assert (d.next_attempt_at - clock()).total_seconds() == pytest.approx(20, abs=1e-3)
    finally:
        recv.close()


def test_redirects_are_not_followed(db: Database, banks: Banks) -> None:
    recv = Receiver(behaviour=lambda r, n: (307, {"Location": "/elsewhere"}, b""))
    try:
        (did,) = _setup(db, banks, recv.url)
        Worker(db, FAST).run_once()
        d = get_delivery(db, did)
        assert (
            d.status == "dead" and "not followed" in d.last_error and "/elsewhere" in d.last_error
        )
        assert [r.path for r in recv.received] == ["/hook"]
    finally:
        recv.close()


def test_timeout_is_retried(db: Database, banks: Banks) -> None:
    def slow(r: Received, n: int) -> Any:
        time.sleep(1.5)
        return 200, {}, b"too late"

    recv = Receiver(behaviour=slow)
    try:
        (did,) = _setup(db, banks, recv.url)
        cfg = WorkerConfig(timeout_s=0.3, lease_s=30, max_attempts=3)
        Worker(db, cfg).run_once()
        d = get_delivery(db, did)
        assert d.status == "pending" and d.attempts == 1 and "timeout" in d.last_error.lower()
    finally:
        recv.close()


def test_connection_refused_is_retried_and_sender_bugs_do_not_lose_rows(
    db: Database, banks: Banks
) -> None:
    ids = _setup(db, banks, "http://127.0.0.1:9/hook", n=2)  # discard port: nothing listens
    Worker(db, FAST).run_once()
    for did in ids:
        d = get_delivery(db, did)
        assert d.status == "pending" and "Connection" in d.last_error

    def broken(url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        raise RuntimeError("bug in sender")

    clock = FakeClock()
    clock.advance(3600)
    Worker(db, FAST, clock=clock, sender=broken).run_once()
    for did in ids:
        d = get_delivery(db, did)
        assert d.status == "pending" and d.attempts == 2 and "bug in sender" in d.last_error


def test_block_private_refuses_loopback(db: Database, banks: Banks, receiver: Receiver) -> None:
    (did,) = _setup(db, banks, receiver.url)
    cfg = WorkerConfig(timeout_s=2, lease_s=30, block_private=True)
    Worker(db, cfg).run_once()
    d = get_delivery(db, did)
    assert d.status == "dead" and "non-public address 127.0.0.1" in d.last_error
    assert receiver.received == []
    assert post("file:///etc/passwd", b"{}", {}, timeout_s=1).outcome == "dead"


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_verifies_certificates(db: Database, banks: Banks, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    recv = Receiver()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    recv.server.socket = ctx.wrap_socket(recv.server.socket, server_side=True)
    try:
        (did,) = _setup(db, banks, recv.url.replace("http://", "https://"))
        clock = FakeClock()
        Worker(db, FAST, clock=clock).run_once()  # system trust store: the self-signed cert fails
        d = get_delivery(db, did)
        assert d.status == "pending" and "certificate verify failed" in d.last_error
        assert recv.received == []
        clock.advance(60)
        Worker(db, replace(FAST, ca_file=str(cert)), clock=clock).run_once()
        d = get_delivery(db, did)
        assert d.status == "delivered", d.last_error
        assert recv.keys() == [str(did)] and recv.received[0].signature_error == ""
    finally:
        recv.close()


def test_worker_config_is_validated() -> None:
    with pytest.raises(InvalidField, match="twice timeout_s"):
        WorkerConfig(timeout_s=10, lease_s=15)
    with pytest.raises(InvalidField, match="concurrency"):
        WorkerConfig(concurrency=0)
    with pytest.raises(InvalidField, match="max_attempts"):
        WorkerConfig(max_attempts=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidField, match="backoff_max_s"):
        WorkerConfig(backoff_base_s=100, backoff_max_s=10)
    with pytest.raises(InvalidField, match="ca_file"):
        WorkerConfig(ca_file="/nonexistent/ca.pem")


# ------------------------------------------------------------------------------ leases


def test_expired_lease_is_claimed_again_and_the_late_worker_is_fenced(
    db: Database, banks: Banks, receiver: Receiver
) -> None:
    (did,) = _setup(db, banks, receiver.url)
    clock = FakeClock()
    a = Worker(db, FAST, clock=clock, worker_id="a")
    b = Worker(db, FAST, clock=clock, worker_id="b")
    (ca,) = a.claim()  # a "crashes" holding the lease
    assert get_delivery(db, did).lease_owner == "a"
    assert b.claim() == []  # leased: nobody else takes it
    clock.advance(FAST.lease_s + 1)
    (cb,) = b.claim()
    assert (cb.id, cb.attempts) == (did, 2) and cb.token != ca.token
    # a wakes up late: its outcome must not overwrite b's lease.
    assert not finish(
        db, ca, now=clock(), attempted_at=clock(), status="dead", http_status=None, error="late"
    )
    assert get_delivery(db, did).status == "pending"
    assert b.deliver(cb) == "delivered"
    assert receiver.keys() == [str(did)]


def test_lease_expiry_on_the_last_attempt_makes_a_dead_letter(db: Database, banks: Banks) -> None:
    (did,) = _setup(db, banks, "http://127.0.0.1:9/hook")
    clock = FakeClock()
    cfg = WorkerConfig(timeout_s=1, lease_s=5, max_attempts=1)
    w = Worker(db, cfg, clock=clock)
    assert len(w.claim()) == 1  # and then the worker dies
    clock.advance(6)
    assert w.claim() == []
    d = get_delivery(db, did)
    assert d.status == "dead" and "lease expired" in d.last_error


def test_disabled_rule_pauses_and_new_url_applies(
    db: Database, banks: Banks, receiver: Receiver
) -> None:
    (did,) = _setup(db, banks, "https://old.invalid/hook")
    rule = list_deliveries(db)[0].rule_id
    assert rule is not None
    update_rule(db, rule, enabled=False)
    w = Worker(db, FAST)
    assert w.run_once() == 0
    update_rule(db, rule, enabled=True, url=receiver.url)
    assert w.run_once() == 1
    assert receiver.keys() == [str(did)]
    assert get_delivery(db, did).url == receiver.url


def test_replay_dead_letters(db: Database, banks: Banks) -> None:
    recv = Receiver(behaviour=lambda r, n: (410, {}, b"gone") if n == 1 else (200, {}, b""))
    try:
        ids = _setup(db, banks, recv.url, n=3)
        w = Worker(db, FAST)
        w.run_once()
        assert [get_delivery(db, i).status for i in ids] == ["dead"] * 3
        with pytest.raises(NotFound):
            replay_delivery(db, 10_000)
        d = replay_delivery(db, ids[0])
        assert (d.status, d.attempts, d.replays) == ("pending", 0, 1)
        with pytest.raises(Conflict, match="still queued"):
            replay_delivery(db, ids[0])
        w.run_once()
        assert get_delivery(db, ids[0]).status == "delivered"
        assert replay_dead(db) == 2
        w.run_once()
        assert [get_delivery(db, i).status for i in ids] == ["delivered"] * 3
        counts = Counter(recv.keys())
        assert counts == {str(i): 2 for i in ids}
        for i in ids:  # the replay carried the same body as the first try
            assert len({r.body for r in recv.received if r.key == str(i)}) == 1
        # A delivered one can be re-sent on purpose; a removed rule's dead letter cannot.
        assert replay_delivery(db, ids[1]).status == "pending"
        rule = get_delivery(db, ids[1]).rule_id
        assert rule is not None
        delete_rule(db, rule)
        assert get_delivery(db, ids[1]).status == "dead"
        with pytest.raises(Conflict, match="removed"):
            replay_delivery(db, ids[1])
        assert replay_dead(db) == 0
    finally:
        recv.close()


# ------------------------------------------------------------------------------ concurrency


def test_two_workers_never_double_claim(settings: Settings, db: Database, banks: Banks) -> None:
    def slowish(r: Received, n: int) -> Any:
        time.sleep(0.005)
        return 200, {}, b""

    recv = Receiver(behaviour=slowish)
    try:
        ids = _setup(db, banks, recv.url, n=60)
        cfg = WorkerConfig(timeout_s=5, lease_s=60, concurrency=3, poll_s=0.05)
        dbs = [Database.open(settings), Database.open(settings)]
        workers = [Worker(d, cfg, worker_id=f"w{i}") for i, d in enumerate(dbs)]
        threads = [threading.Thread(target=w.run, kwargs={"drain": True}) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for d in dbs:
            d.dispose()
        assert not any(t.is_alive() for t in threads)
        counts = Counter(recv.keys())
        assert counts == {str(i): 1 for i in ids}  # each delivery POSTed exactly once
        assert sum(w.stats.claimed for w in workers) == len(ids)
        assert all(get_delivery(db, i).status == "delivered" for i in ids)
    finally:
        recv.close()


def test_skip_locked_on_postgresql(db: Database, banks: Banks) -> None:
    """Rows another transaction holds locked are skipped, not waited for (PostgreSQL)."""
    if db.dialect != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers instead")
    ids = _setup(db, banks, "http://127.0.0.1:9/hook", n=4)
    other = create_engine(db.engine.url.render_as_string(hide_password=False))
    try:
        with other.connect() as c:
            c.execute(
                text("SELECT id FROM webhook_delivery WHERE id IN (:a, :b) FOR UPDATE"),
                {"a": ids[0], "b": ids[1]},
            )
            got: list[int] = []
            t = threading.Thread(
                target=lambda: got.extend(
                    x.id for x in claim(
                        db, now=dt.datetime.now(dt.UTC), limit=10, lease_s=30, owner="x",
                        max_attempts=5,
                    )
                )
            )  # fmt: skip
            t.start()
            t.join(20)
            assert not t.is_alive(), "claim waited for a locked row"
            assert sorted(got) == ids[2:]
            c.rollback()
    finally:
        other.dispose()


# ------------------------------------------------------------------------------ CLI


runner = CliRunner()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LIFEGUARD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LIFEGUARD_DATABASE_URL", settings.resolved_database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _cli(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(actions_app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_cli_rules_worker_deliveries(
    cli_env: None, db: Database, banks: Banks, tmp_path: Path
) -> None:
    recv = Receiver(behaviour=lambda r, n: (404, {}, b"") if n == 1 else (200, {}, b""))
    try:
        matches = make_bank(banks, "ALPHA", 2)
        code, out, _ = _cli(
            "action", "add", "ALPHA", recv.url, "--name", "t&s", "--variant", "exact"
        )
        assert code == 0, out
        rule = json.loads(out)
        assert rule["secret"].startswith("whsec_") and rule["variants"] == ["exact"]
        recv.secrets = (rule["secret"],)
        code, out, err = _cli("action", "add", "ALPHA", "ftp://x.example.org/")
        assert code == 2 and "scheme 'ftp' not allowed" in err
        code, out, _ = _cli("action", "list", "--format", "jsonl")
        assert [json.loads(x)["id"] for x in out.splitlines()] == [rule["id"]]
        assert "whsec_" not in out
        for m in matches:
            record_match(db, result(m), "post-1", None)
        code, out, err = _cli("worker", "--drain", "--poll-s", "0.05", "--log-level", "WARNING")
        assert code == 0, err
        assert "dead 2" in err
        code, out, _ = _cli("deliveries", "list", "--status", "dead", "--format", "jsonl")
        dead = [json.loads(x) for x in out.splitlines()]
        assert len(dead) == 2 and all(d["last_status"] == 404 for d in dead)
        code, out, err = _cli("deliveries", "replay")
        assert code == 2 and "either" in err
        code, out, _ = _cli("deliveries", "replay", str(dead[0]["id"]))
        assert code == 0 and json.loads(out)["status"] == "pending"
        code, out, _ = _cli("deliveries", "replay", "--all")
        assert code == 0 and json.loads(out) == {"requeued": 1}
        code, _, err = _cli("worker", "--drain", "--poll-s", "0.05", "--log-level", "WARNING")
        assert code == 0 and "delivered 2" in err
        assert all(r.signature_error == "" for r in recv.received)
        code, out, _ = _cli("events", "list")
        assert len(out.splitlines()) == 2
        code, out, err = _cli("worker", "--lease-s", "1", "--timeout-s", "10")
        assert code == 2 and "twice timeout_s" in err
        code, out, _ = _cli("action", "remove", str(rule["id"]))
        assert code == 0
        code, out, err = _cli("action", "remove", str(rule["id"]))
        assert code == 2 and "not found" in err
    finally:
        recv.close()


def test_verify_helper_accepts_what_the_worker_sends(
    db: Database, banks: Banks, receiver: Receiver
) -> None:
    """A receiver using only the documented recipe (header + raw body + secret) accepts it."""
    _setup(db, banks, receiver.url)
    Worker(db, FAST).run_once()
    (r,) = receiver.received
    assert verify_signature(SECRET, r.body, r.headers["Lifeguard-Signature"]) > 0
    assert r.headers[IDEMPOTENCY_HEADER] == str(json.loads(r.body)["delivery_id"])
