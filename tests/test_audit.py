"""Audit log: chain integrity, tamper detection by raw SQL on both databases, checkpoints, CLI."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from lifeguard.reports import audit
from lifeguard.reports.audit import AuditError, AuditKeyError, checkpoint, record, verify
from lifeguard.reports.models import GENESIS_HASH, AuditHead, AuditRecord
from lifeguard.settings import Settings, get_settings
from lifeguard.store.db import Database

KEY = b"k" * 32


def _fill(db: Database, n: int) -> None:
    for i in range(n):
        with db.session() as s:
            record(
                s,
                actor=f"reviewer:{i % 3}",
                action="reveal" if i % 2 else "decision",
                subject_type="case",
                subject_id=str(100 + i),
                details={"i": i, "note": "ünïcode ok", "tags": ["a", "b"]},
            )


def _sql(db: Database, sql: str, **params: object) -> None:
    with db.engine.begin() as c:
        c.execute(text(sql), params)


def _rows(db: Database) -> list[AuditRecord]:
    with db.read_session() as s:
        return list(s.execute(select(AuditRecord).order_by(AuditRecord.seq)).scalars())


def _rehash_from(db: Database, start: int) -> None:
    """What an attacker who knows the algorithm (but no key) does: recompute hashes from
    ``start`` onwards and fix the head row."""
    with db.session() as s:
        rows = list(s.execute(select(AuditRecord).order_by(AuditRecord.seq)).scalars())
        prev = GENESIS_HASH
        for r in rows:
            if r.seq >= start:
                r.prev_hash = prev
                r.hash = audit._hash_of(r)
            prev = r.hash
        s.flush()
        head = s.get(AuditHead, 1)
        assert head is not None
        head.seq, head.hash = rows[-1].seq, rows[-1].hash


def test_empty_and_intact_chain(db: Database) -> None:
    res = verify(db, key=KEY)
    assert res.ok and res.records == 0 and res.head_hash == GENESIS_HASH
    assert any("no checkpoints" in w for w in res.warnings)
    _fill(db, 6)
    res = verify(db, key=KEY)
    assert res.ok, res.reason
    rows = _rows(db)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, 6))
    assert res.head_seq == 6 and res.head_hash == rows[-1].hash


def test_hash_is_the_documented_encoding(db: Database) -> None:
    with db.session() as s:
        r = record(
            s,
            actor="a",
            action="x",
            subject_type="case",
            subject_id=7,
            details={"b": 1, "a": [True, None]},
        )
    t = audit.format_time(r.time)
    assert r.details_json == '{"a":[true,null],"b":1}'
    enc = json.dumps(
        ["lifeguard-audit-v1", 1, t, "a", "x", "case", "7", r.details_json, GENESIS_HASH],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert r.hash == hashlib.sha256(enc.encode()).hexdigest()
    assert t.endswith("Z") and len(t) == len("2026-01-01T00:00:00.000000Z")


def test_details_must_be_canonical(db: Database) -> None:
    with db.session() as s:
        with pytest.raises(AuditError, match="floats"):
            record(s, actor="a", action="x", details={"score": 0.5})
        with pytest.raises(AuditError, match="not a string"):
            record(s, actor="a", action="x", details={1: "x"})  # type: ignore[dict-item]
        with pytest.raises(AuditError, match="bytes"):
            record(s, actor="a", action="x", details={"b": b"raw"})
        with pytest.raises(AuditError, match="at most 64"):
            record(s, actor="a", action="x" * 65)
    assert audit.canonical_json({"b": 1, "a": 2}) == audit.canonical_json({"a": 2, "b": 1})


def test_record_commits_and_rolls_back_with_the_callers_transaction(db: Database) -> None:
    _fill(db, 2)
    with pytest.raises(RuntimeError), db.session() as s:
        record(s, actor="a", action="decision", subject_type="case", subject_id="9")
        raise RuntimeError("decision failed")
    with db.session() as s:
        r = record(s, actor="a", action="decision", subject_type="case", subject_id="9")
    assert r.seq == 3  # no gap left by the rolled-back record
    assert verify(db, key=KEY).ok


def test_edited_field_detected(db: Database) -> None:
    _fill(db, 6)
    _sql(db, "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3")
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 3, "hash_mismatch")


def test_edited_details_detected(db: Database) -> None:
    _fill(db, 6)
    _sql(db, "UPDATE audit_log SET details_json = :d WHERE seq = 5", d='{"i":99}')
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 5, "hash_mismatch")


def test_edited_record_with_recomputed_hash_detected_at_next(db: Database) -> None:
    _fill(db, 6)
    _sql(db, "UPDATE audit_log SET action = 'nothing' WHERE seq = 2")
    with db.session() as s:
        r = s.get(AuditRecord, 2)
        assert r is not None
        r.hash = audit._hash_of(r)
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 3, "prev_mismatch")


def test_deleted_record_detected(db: Database) -> None:
    _fill(db, 6)
    _sql(db, "DELETE FROM audit_log WHERE seq = 3")
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 4, "seq_gap")
    assert "seq 3 missing" in (res.reason or "")


def test_deleted_record_renumbered_detected(db: Database) -> None:
    _fill(db, 6)
    _sql(db, "DELETE FROM audit_log WHERE seq = 3")
    _sql(db, "UPDATE audit_log SET seq = -seq WHERE seq > 3")
    _sql(db, "UPDATE audit_log SET seq = -seq - 1 WHERE seq < 0")
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 3, "prev_mismatch")


def test_inserted_record_detected(db: Database) -> None:
    _fill(db, 6)
    rows = _rows(db)
    # make room at seq 3 and insert a well-formed forgery (correct prev_hash and hash)
    _sql(db, "UPDATE audit_log SET seq = -seq WHERE seq >= 3")
    _sql(db, "UPDATE audit_log SET seq = -seq + 1 WHERE seq < 0")
    forged = dict(
        seq=3,
        time=rows[2].time,
        actor="x",
        action="decision",
        subject_type="case",
        subject_id="1",
        details_json="{}",
        prev_hash=rows[1].hash,
    )
    h = audit.record_hash(**forged)  # type: ignore[arg-type]
    with db.session() as s:
        s.add(AuditRecord(hash=h, **forged))
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 4, "prev_mismatch")


def test_inserted_record_with_bad_hash_detected_at_itself(db: Database) -> None:
    _fill(db, 3)
    rows = _rows(db)
    _sql(
        db,
        "INSERT INTO audit_log (seq, time, actor, action, subject_type, subject_id, details_json,"
        " prev_hash, hash) VALUES (4, :t, 'x', 'decision', 'case', '1', '{}', :p, :h)",
        t=rows[0].time,
        p=rows[2].hash,
        h="ab" * 32,
    )
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 4, "hash_mismatch")


def test_truncated_tail_detected_by_head_row(db: Database) -> None:
    _fill(db, 6)
    _sql(db, "DELETE FROM audit_log WHERE seq >= 5")
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 5, "truncated")


def test_truncation_with_forged_head_needs_a_checkpoint(db: Database) -> None:
    _fill(db, 6)
    checkpoint(db, key=KEY)  # vouches for seq 6
    _fill(db, 2)  # seq 7, 8 after the checkpoint
    rows = _rows(db)
    # truncate to seq 7 and fix the head row: after the checkpoint, undetectable (documented)
    _sql(db, "DELETE FROM audit_log WHERE seq = 8")
    _sql(db, "UPDATE audit_head SET seq = 7, hash = :h", h=rows[6].hash)
    assert verify(db, key=KEY).ok
    # truncate into the checkpointed range: detected
    _sql(db, "DELETE FROM audit_log WHERE seq >= 5")
    _sql(db, "UPDATE audit_head SET seq = 4, hash = :h", h=rows[3].hash)
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 5, "truncated")


def test_whole_chain_rewrite_detected_only_by_checkpoint(db: Database) -> None:
    _fill(db, 5)
    _sql(db, "UPDATE audit_log SET actor = 'rewritten' WHERE seq = 2")
    _rehash_from(db, 2)
    assert verify(db, key=KEY).ok  # a consistent rewrite passes the chain check alone
    # fresh start with a checkpoint
    _sql(db, "DELETE FROM audit_log")
    _sql(db, "UPDATE audit_head SET seq = 0, hash = :h", h=GENESIS_HASH)
    _fill(db, 5)
    checkpoint(db, key=KEY)
    _sql(db, "UPDATE audit_log SET actor = 'rewritten' WHERE seq = 2")
    _rehash_from(db, 2)
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 5, "checkpoint_mismatch")


def test_forged_checkpoint_detected(db: Database) -> None:
    _fill(db, 5)
    checkpoint(db, key=KEY)
    _sql(db, "DELETE FROM audit_log WHERE seq = 5")
    rows = _rows(db)
    _sql(db, "UPDATE audit_head SET seq = 4, hash = :h", h=rows[3].hash)
    _sql(db, "UPDATE audit_checkpoint SET seq = 4, hash = :h", h=rows[3].hash)
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 4, "checkpoint_forged")
    # without the key the checkpoint is only compared, and a warning says so
    other = verify(db, key=None)
    assert other.ok and any("not authenticated" in w for w in other.warnings)


def test_checkpoint_file_survives_database_tampering(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "cp.jsonl"
    _fill(db, 4)
    checkpoint(db, key=KEY, file=f)
    rows = _rows(db)
    _sql(db, "DELETE FROM audit_checkpoint")
    _sql(db, "DELETE FROM audit_log WHERE seq = 4")
    _sql(db, "UPDATE audit_head SET seq = 3, hash = :h", h=rows[2].hash)
    assert verify(db, key=KEY).ok  # the database alone no longer shows it
    res = verify(db, key=KEY, checkpoint_file=f)
    assert (res.ok, res.seq, res.kind) == (False, 4, "truncated")
    _fill(db, 1)  # a new seq 4 is not the record the checkpoint vouched for
    res = verify(db, key=KEY, checkpoint_file=f)
    assert (res.ok, res.seq, res.kind) == (False, 4, "checkpoint_mismatch")
    g = tmp_path / "bad.jsonl"
    g.write_text("not json\n")
    res = verify(db, key=KEY, checkpoint_file=g)
    assert (res.ok, res.kind) == (False, "checkpoint_unreadable") and "bad.jsonl:1" in (
        res.reason or ""
    )


def test_checkpoint_key_configuration(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(audit.KEY_ENV, raising=False)
    monkeypatch.delenv(audit.KEY_FILE_ENV, raising=False)
    with pytest.raises(AuditKeyError, match="LIFEGUARD_AUDIT_HMAC_KEY"):
        checkpoint(db)
    monkeypatch.setenv(audit.KEY_ENV, "!!!")
    with pytest.raises(AuditKeyError, match="base64"):
        checkpoint(db)
    monkeypatch.setenv(audit.KEY_ENV, base64.b64encode(b"short").decode())
    with pytest.raises(AuditKeyError, match="at least 32"):
        checkpoint(db)
    monkeypatch.delenv(audit.KEY_ENV)
    kf = tmp_path / "audit.key"
    kf.write_text(base64.b64encode(KEY).decode() + "\n")
    monkeypatch.setenv(audit.KEY_FILE_ENV, str(kf))
    cp = checkpoint(db)
    assert cp.key_id == audit.key_id(KEY)
    assert verify(db).checkpoints_checked == 1


def test_concurrent_appends_do_not_fork(db: Database) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                with db.session() as s:
                    record(s, actor=f"t{t}", action="reveal", subject_id=str(i))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    res = verify(db, key=KEY)
    assert res.ok, res.reason
    assert res.records == 40 and [r.seq for r in _rows(db)] == list(range(1, 41))


def test_cli_verify_exit_codes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lifeguard.reports.cli_commands import audit_app

    monkeypatch.setenv("LIFEGUARD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LIFEGUARD_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv(audit.KEY_ENV, base64.b64encode(KEY).decode())
    get_settings.cache_clear()
    try:
        db = Database.open(settings)
        _fill(db, 3)
        runner = CliRunner()
        ok = runner.invoke(audit_app, ["verify"])
        assert ok.exit_code == 0, ok.output
        assert runner.invoke(audit_app, ["checkpoint"]).exit_code == 0
        out = tmp_path / "audit.jsonl"
        assert (
            runner.invoke(audit_app, ["export", "--out", str(out), "--actor", "t"]).exit_code == 0
        )
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert [x["seq"] for x in lines] == [1, 2, 3]
        _sql(db, "UPDATE audit_log SET subject_id = 'x' WHERE seq = 2")
        bad = runner.invoke(audit_app, ["verify", "--json"])
        assert bad.exit_code == 1
        assert json.loads(bad.stdout)["seq"] == 2
        db.dispose()
    finally:
        get_settings.cache_clear()


def test_checkpoint_refuses_a_head_that_does_not_match(db: Database) -> None:
    _fill(db, 3)
    _sql(db, "DELETE FROM audit_log WHERE seq = 3")
    with pytest.raises(AuditError, match="does not match"):
        checkpoint(db, key=KEY)
    with db.session() as s, pytest.raises(AuditError, match="timezone-aware"):
        record(s, actor="a", action="x", now=dt.datetime(2026, 1, 1))


def test_append_bypassing_the_head_detected(db: Database) -> None:
    _fill(db, 3)
    rows = _rows(db)
    forged = dict(
        seq=4,
        time=rows[2].time,
        actor="x",
        action="decision",
        subject_type="case",
        subject_id="1",
        details_json="{}",
        prev_hash=rows[2].hash,
    )
    with db.session() as s:
        s.add(AuditRecord(hash=audit.record_hash(**forged), **forged))  # type: ignore[arg-type]
    res = verify(db, key=KEY)
    assert (res.ok, res.seq, res.kind) == (False, 4, "head_mismatch")
