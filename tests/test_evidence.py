"""Evidence vault: encryption round trip, key handling, tampering, retention, legal hold, rotation."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from pathlib import Path

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from conftest import PHOTOS
from lifeguard.errors import NotFound
from lifeguard.reports import audit
from lifeguard.reports.evidence import (
    KEY_ENV,
    KEY_FILE_ENV,
    EvidenceError,
    EvidenceIntegrityError,
    EvidenceKeyError,
    EvidenceVault,
    Keyring,
    master_key_id,
    purge,
)
from lifeguard.reports.models import AuditRecord, EvidenceItem
from lifeguard.settings import Settings, get_settings
from lifeguard.store.db import Database

PHOTO = PHOTOS / "kodak" / "01.png"
PHOTO2 = PHOTOS / "kodak" / "02.png"


@pytest.fixture
def ring() -> Keyring:
    return Keyring([secrets.token_bytes(32)])


@pytest.fixture
def vault(db: Database, settings: Settings, ring: Keyring) -> EvidenceVault:
    return EvidenceVault.from_settings(db, settings, ring)


def _audit(db: Database) -> list[AuditRecord]:
    with db.read_session() as s:
        return list(s.execute(select(AuditRecord).order_by(AuditRecord.seq)).scalars())


def test_round_trip_encrypted_at_rest(vault: EvidenceVault, db: Database) -> None:
    data = PHOTO.read_bytes()
    info = vault.put(
        "case-1",
        data,
        actor="reviewer:a",
        content_id="post/1",
        media_type="image/png",
        metadata={"filename": "01.png", "reporter_note": "secret note"},
    )
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.md5 == hashlib.md5(data).hexdigest()
    assert info.size == len(data) and not info.legal_hold
    assert info.retention_until - info.created_at == dt.timedelta(days=365)
    blob = vault.path_for(info.id).read_bytes()
    assert data[:64] not in blob and data[-64:] not in blob  # not stored in clear
    with db.read_session() as s:
        row = s.get(EvidenceItem, info.id)
        assert row is not None and b"secret note" not in bytes(row.metadata_ct)
    ev = vault.get(info.id, actor="reviewer:b", reason="review")
    assert ev.content == data
    assert ev.metadata == {"filename": "01.png", "reporter_note": "secret note"}
    assert [i.id for i in vault.list("case-1")] == [info.id]
    assert vault.list("case-2") == []
    recs = _audit(db)
    assert [r.action for r in recs] == ["evidence.put", "evidence.reveal"]
    assert all(r.subject_id == info.id for r in recs)
    assert json.loads(recs[1].details_json)["reason"] == "review"
    assert "secret note" not in recs[0].details_json
    assert audit.verify(db, key=b"k" * 32).ok


def test_each_item_has_its_own_data_key(vault: EvidenceVault, db: Database) -> None:
    data = PHOTO.read_bytes()
    a = vault.put("c", data, actor="x")
    b = vault.put("c", data, actor="x")
    assert a.id != b.id
    assert vault.path_for(a.id).read_bytes() != vault.path_for(b.id).read_bytes()
    with db.read_session() as s:
        ra, rb = s.get(EvidenceItem, a.id), s.get(EvidenceItem, b.id)
        assert ra is not None and rb is not None and ra.wrapped_key != rb.wrapped_key


def test_export_writes_new_file_and_is_audited(
    vault: EvidenceVault, db: Database, tmp_path: Path
) -> None:
    data = PHOTO.read_bytes()
    info = vault.put("c", data, actor="x")
    dest = tmp_path / "out.png"
    vault.export(info.id, dest, actor="senior:a", reason="NCMEC report")
    assert dest.read_bytes() == data and (dest.stat().st_mode & 0o777) == 0o600
    with pytest.raises(EvidenceError, match="not overwriting"):
        vault.export(info.id, dest, actor="senior:a")
    assert _audit(db)[-1].action == "evidence.export"


def test_wrong_master_key_fails_clearly(
    vault: EvidenceVault, db: Database, settings: Settings
) -> None:
    info = vault.put("c", PHOTO.read_bytes(), actor="x")
    other = EvidenceVault.from_settings(db, settings, Keyring([secrets.token_bytes(32)]))
    with pytest.raises(
        EvidenceKeyError, match=f"wrapped with master key {info.key_id}.*not configured"
    ):
        other.get(info.id, actor="y")
    assert _audit(db)[-1].action == "evidence.reveal_failed"
    # key id forged to the other key's id: the unwrap fails authentication
    with db.engine.begin() as c:
        c.execute(text("UPDATE evidence_item SET key_id = :k"), {"k": other.keyring.current_id})
    with pytest.raises(EvidenceIntegrityError, match="does not unwrap"):
        other.get(info.id, actor="y")


def test_tampered_ciphertext_fails(vault: EvidenceVault) -> None:
    info = vault.put("c", PHOTO.read_bytes(), actor="x")
    p = vault.path_for(info.id)
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 1
    p.write_bytes(bytes(b))
    with pytest.raises(EvidenceIntegrityError, match="authentication failed"):
        vault.get(info.id, actor="y")
    p.write_bytes(b"")
    with pytest.raises(EvidenceIntegrityError, match="not an evidence blob"):
        vault.get(info.id, actor="y")
    p.unlink()
    with pytest.raises(EvidenceIntegrityError, match="missing"):
        vault.get(info.id, actor="y")


def test_swapped_ciphertexts_and_keys_fail(vault: EvidenceVault, db: Database) -> None:
    a = vault.put("c", PHOTO.read_bytes(), actor="x")
    b = vault.put("c", PHOTO2.read_bytes(), actor="x")
    pa, pb = vault.path_for(a.id), vault.path_for(b.id)
    ba, bb = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(bb)  # b's blob under a's id (AAD binds the id)
    with pytest.raises(EvidenceIntegrityError, match="content"):
        vault.get(a.id, actor="y")
    pa.write_bytes(ba)
    # b's wrapped key and encrypted metadata copied onto a's row
    with db.engine.begin() as c:
        wk, mc = c.execute(
            text("SELECT wrapped_key, metadata_ct FROM evidence_item WHERE id = :i"), {"i": b.id}
        ).one()
        c.execute(
            text("UPDATE evidence_item SET metadata_ct = :m WHERE id = :i"), {"m": mc, "i": a.id}
        )
    with pytest.raises(EvidenceIntegrityError, match="metadata"):
        vault.get(a.id, actor="y")
    with db.engine.begin() as c:
        c.execute(
            text("UPDATE evidence_item SET wrapped_key = :w WHERE id = :i"), {"w": wk, "i": a.id}
        )
    with pytest.raises(EvidenceIntegrityError, match="does not unwrap"):
        vault.get(a.id, actor="y")
    assert vault.get(b.id, actor="y").content == PHOTO2.read_bytes()


def test_edited_hash_in_index_detected(vault: EvidenceVault, db: Database) -> None:
    info = vault.put("c", PHOTO.read_bytes(), actor="x")
    with db.engine.begin() as c:
        c.execute(text("UPDATE evidence_item SET sha256 = :h"), {"h": "0" * 64})
    with pytest.raises(EvidenceIntegrityError, match="sha256"):
        vault.get(info.id, actor="y")


def test_purge_respects_retention_and_legal_hold(vault: EvidenceVault, db: Database) -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    data = PHOTO.read_bytes()
    short = vault.put("c1", data, actor="x", retention=dt.timedelta(days=30), now=t0)
    held = vault.put("c1", data, actor="x", retention=dt.timedelta(days=30), now=t0)
    year = vault.put("c2", data, actor="x", now=t0)
    vault.hold(held.id, "preservation request LE-42", actor="legal:a")
    with pytest.raises(EvidenceError, match="reason"):
        vault.hold(short.id, "  ", actor="legal:a")
    assert purge(db, t0 + dt.timedelta(days=29), root=vault.root) == []
    deleted = purge(db, t0 + dt.timedelta(days=31), root=vault.root)
    assert deleted == [short.id]
    assert not vault.path_for(short.id).exists()
    assert vault.path_for(held.id).exists() and vault.path_for(year.id).exists()
    with pytest.raises(NotFound):
        vault.info(short.id)
    recs = [r for r in _audit(db) if r.action == "evidence.delete"]
    assert len(recs) == 1 and recs[0].subject_id == short.id
    d = json.loads(recs[0].details_json)
    assert d["sha256"] == short.sha256 and d["md5"] == short.md5 and d["case_id"] == "c1"
    # past a year: the held item stays until released
    assert purge(db, t0 + dt.timedelta(days=400), root=vault.root) == [year.id]
    vault.release(held.id, actor="legal:a", reason="case closed")
    assert vault.purge(t0 + dt.timedelta(days=400)) == [held.id]
    assert vault.list() == []
    actions = [r.action for r in _audit(db) if r.action != "evidence.put"]
    assert actions == [
        "evidence.hold",
        "evidence.delete",
        "evidence.delete",
        "evidence.release",
        "evidence.delete",
    ]
    assert audit.verify(db, key=b"k" * 32).ok


def test_purge_needs_no_key(
    vault: EvidenceVault, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    info = vault.put("c", PHOTO.read_bytes(), actor="x", now=t0)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    keyless = EvidenceVault(db, vault.root)
    assert keyless.purge(t0 + dt.timedelta(days=366)) == [info.id]


def test_rotation_rewraps_keys(db: Database, settings: Settings) -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    v1 = EvidenceVault.from_settings(db, settings, Keyring([old]))
    items = [v1.put("c", p.read_bytes(), actor="x") for p in (PHOTO, PHOTO2)]
    blobs = [v1.path_for(i.id).read_bytes() for i in items]
    v2 = EvidenceVault.from_settings(db, settings, Keyring([new, old]))
    assert v2.get(items[0].id, actor="y").content == PHOTO.read_bytes()  # old key still unwraps
    assert v2.rewrap(actor="admin") == 2
    assert v2.rewrap(actor="admin") == 0
    assert all(i.key_id == master_key_id(new) for i in v2.list())
    assert [v1.path_for(i.id).read_bytes() for i in items] == blobs  # content not re-encrypted
    v3 = EvidenceVault.from_settings(db, settings, Keyring([new]))  # old key retired
    assert v3.get(items[1].id, actor="y").content == PHOTO2.read_bytes()
    with pytest.raises(EvidenceKeyError):
        v1.get(items[0].id, actor="y")
    rec = [r for r in _audit(db) if r.action == "key.rewrap"]
    assert len(rec) == 1 and sorted(json.loads(rec[0].details_json)["items"]) == sorted(
        i.id for i in items
    )


def test_key_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with pytest.raises(EvidenceKeyError, match="no evidence master key"):
        Keyring.from_env()
    monkeypatch.setenv(KEY_ENV, "not base64!")
    with pytest.raises(EvidenceKeyError, match="not valid base64"):
        Keyring.from_env()
    monkeypatch.setenv(KEY_ENV, base64.b64encode(b"x" * 16).decode())
    with pytest.raises(EvidenceKeyError, match="16 bytes"):
        Keyring.from_env()
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    monkeypatch.setenv(KEY_ENV, f"{base64.b64encode(k1).decode()},{base64.b64encode(k2).decode()}")
    ring = Keyring.from_env()
    assert ring.current == k1 and set(ring.by_id) == {master_key_id(k1), master_key_id(k2)}
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "missing.key"))
    with pytest.raises(EvidenceKeyError, match="cannot read"):
        Keyring.from_env()
    f = tmp_path / "evidence.key"
    f.write_text(
        f"# current\n{base64.b64encode(k2).decode()}\n# old\n{base64.b64encode(k1).decode()}\n"
    )
    monkeypatch.setenv(KEY_FILE_ENV, str(f))
    assert Keyring.from_env().current == k2


def test_missing_key_config_is_a_clear_error_on_put(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    v = EvidenceVault.from_settings(db, settings)
    with pytest.raises(EvidenceKeyError, match="LIFEGUARD_EVIDENCE_KEY"):
        v.put("c", b"benign bytes", actor="x")
    assert v.list() == []
    assert not v.root.exists() or not any(v.root.rglob("*.lgev"))


def test_bad_input(vault: EvidenceVault) -> None:
    with pytest.raises(EvidenceError, match="case_id"):
        vault.put("", b"x", actor="a")
    with pytest.raises(EvidenceError, match="retention"):
        vault.put("c", b"x", actor="a", retention=dt.timedelta(0))
    with pytest.raises(audit.AuditError, match="floats"):
        vault.put("c", b"x", actor="a", metadata={"f": 1.5})
    with pytest.raises(NotFound, match="not a valid item id"):
        vault.get("../../etc/passwd", actor="a")
    with pytest.raises(NotFound, match="no such item"):
        vault.get("0" * 32, actor="a")


def test_failed_db_write_leaves_no_blob(vault: EvidenceVault) -> None:
    with pytest.raises(audit.AuditError):
        vault.put("c", b"benign", actor="")  # audit rejects an empty actor inside the transaction
    assert vault.list() == []
    assert not any(vault.root.rglob("*.lgev"))


def test_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lifeguard.reports.cli_commands import evidence_app

    monkeypatch.setenv("LIFEGUARD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LIFEGUARD_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    get_settings.cache_clear()
    try:
        r = CliRunner()
        key = r.invoke(evidence_app, ["keygen"]).stdout.strip()
        assert len(base64.b64decode(key)) == 32
        monkeypatch.setenv(KEY_ENV, key)
        put = r.invoke(evidence_app, ["put", str(PHOTO), "--case", "c9", "--actor", "rev"])
        assert put.exit_code == 0, put.output
        item = put.stdout.split()[0]
        out = tmp_path / "got.png"
        got = r.invoke(evidence_app, ["get", item, "--out", str(out), "--actor", "rev"])
        assert got.exit_code == 0, got.output
        assert out.read_bytes() == PHOTO.read_bytes()
        assert (
            r.invoke(evidence_app, ["hold", item, "--reason", "LE", "--actor", "l"]).exit_code == 0
        )
        assert r.invoke(evidence_app, ["release", item, "--actor", "l"]).exit_code == 0
        assert r.invoke(evidence_app, ["list"]).exit_code == 0
        monkeypatch.setenv(KEY_ENV, base64.b64encode(secrets.token_bytes(32)).decode())
        bad = r.invoke(evidence_app, ["get", item, "--out", str(tmp_path / "x"), "--actor", "rev"])
        assert bad.exit_code == 2 and "evidence_key" in bad.output
    finally:
        get_settings.cache_clear()
