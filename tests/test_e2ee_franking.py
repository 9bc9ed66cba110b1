"""Message franking: a genuine report verifies; every tampering fails with a precise code; replays
are refused; attachments are bound by ciphertext hash AND key (an AES-GCM "invisible salamander"
that decrypts under two keys cannot be reported as the other plaintext); the server stores no
plaintext of unreported messages; the HTTP endpoints stamp, verify and file a case."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import MetaData, select

from api_live import Live, live_server
from conftest import PHOTOS
from lifeguard.e2ee import client
from lifeguard.e2ee.franking import (
    ATTACHMENT_AAD,
    AlreadyReported,
    AttachmentRef,
    FrankingKeys,
    FrankingReport,
    FrankingService,
    ReportedAttachment,
    ReportRejected,
    Stamp,
    commit,
    generate_key,
    opens,
)
from lifeguard.e2ee.models import FrankingReportRow
from lifeguard.settings import Settings
from lifeguard.store.db import Database

ALICE, BOB, MALLORY = "user:alice", "user:bob", "user:mallory"
PICS = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
TEXT = "if you tell anyone about our chats I will send your photos to your school"


def keys(*raw: bytes) -> FrankingKeys:
    return FrankingKeys(list(raw) or [os.urandom(32)])


@pytest.fixture
def svc(db: Database) -> FrankingService:
    """On SQLite and PostgreSQL (storage, replays)."""
    return FrankingService(db, keys())


@pytest.fixture
def lite(sqlite_settings: Settings) -> Iterator[FrankingService]:
    """SQLite only, for the checks that do not depend on the backend."""
    d = Database.open(sqlite_settings)
    yield FrankingService(d, keys())
    d.dispose()


def send(
    svc: FrankingService,
    text: str = TEXT,
    attachments: list[tuple[bytes, str]] | None = None,
    *,
    sender: str = ALICE,
    recipient: str = BOB,
    conversation: str = "conv-1",
    now: dt.datetime | None = None,
) -> tuple[client.FrankedMessage, Stamp]:
    fm = client.frank(text, attachments or [])
    st = svc.stamp(
        fm.commitment, sender=sender, recipient=recipient, conversation=conversation, now=now
    )
    return fm, st


def report_of(fm: client.FrankedMessage, st: Stamp, **changes: Any) -> FrankingReport:
    r = FrankingReport(
        text=fm.text,
        franking_key=fm.franking_key,
        commitment=fm.commitment,
        stamp=st,
        reporter=st.recipient,
        attachments=tuple(ReportedAttachment(a.ciphertext, a.ref) for a in fm.attachments),
    )
    return dataclasses.replace(r, **changes)


def rejected(svc: FrankingService, rep: FrankingReport, code: str) -> None:
    with pytest.raises(ReportRejected) as ei:
        svc.verify_report(rep)
    assert ei.value.code == code, ei.value.message


# ------------------------------------------------------------------------------------ scheme


def test_genuine_report_verifies_and_every_tampering_fails(svc: FrankingService) -> None:
    fm, st = send(svc)
    other_fm, other_st = send(svc, "see you at the park")
    rejected(svc, report_of(fm, st, text=TEXT + "!"), "commitment_mismatch")
    rejected(svc, report_of(fm, st, franking_key=os.urandom(32)), "commitment_mismatch")
    rejected(svc, report_of(fm, dataclasses.replace(st, sender=MALLORY)), "invalid_tag")
    # Another recipient: changing the stamp breaks the tag; reporting as someone else is refused.
    rejected(
        svc,
        report_of(fm, dataclasses.replace(st, recipient=MALLORY), reporter=MALLORY),
        "invalid_tag",
    )
    rejected(svc, report_of(fm, st, reporter=MALLORY), "not_recipient")
    rejected(svc, report_of(fm, dataclasses.replace(st, tag=os.urandom(32))), "invalid_tag")
    # A tag taken from another message, another conversation or another time does not fit.
    rejected(svc, report_of(fm, dataclasses.replace(st, tag=other_st.tag)), "invalid_tag")
    rejected(svc, report_of(fm, dataclasses.replace(st, conversation="conv-2")), "invalid_tag")
    rejected(
        svc,
        report_of(fm, dataclasses.replace(st, timestamp_ms=st.timestamp_ms - 1)),
        "invalid_tag",
    )
    rejected(svc, report_of(fm, dataclasses.replace(st, key_id="0" * 16)), "unknown_key_id")
    v = svc.verify_report(report_of(fm, st))
    assert (v.text, v.sender, v.recipient, v.conversation) == (TEXT, ALICE, BOB, "conv-1")
    assert abs((v.sent_at - st.time).total_seconds()) < 0.01
    # Replay: the same stamped message reported again is refused, naming the first report.
    with pytest.raises(AlreadyReported) as ei:
        svc.verify_report(report_of(fm, st))
    assert ei.value.report_id == v.report_id
    assert svc.verify_report(report_of(other_fm, other_st)).report_id != v.report_id
    from lifeguard.reports import audit

    with svc.db.session() as sess:
        recs = [r for r in audit.iter_records(sess) if r.action == "e2ee.report_verified"]
    assert [r.subject_id for r in recs][:1] == [str(v.report_id)] and len(recs) == 2
    assert TEXT not in repr([r.details_json for r in recs])


def test_concurrent_replays_verify_once(svc: FrankingService) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fm, st = send(svc)
    rep = report_of(fm, st)

    def one(_: int) -> str:
        try:
            svc.verify_report(rep)
            return "ok"
        except AlreadyReported:
            return "replay"

    with ThreadPoolExecutor(6) as ex:
        got = sorted(ex.map(one, range(6)))
    assert got == ["ok"] + ["replay"] * 5


def test_report_window_and_clock(lite: FrankingService) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=91)
    fm, st = send(lite, now=old)
    rejected(lite, report_of(fm, st), "report_expired")
    fm, st = send(lite, now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    rejected(lite, report_of(fm, st), "stamp_in_future")
    lite.window = dt.timedelta(days=365)
    fm, st = send(lite, now=old)
    assert lite.verify_report(report_of(fm, st)).report_id > 0


def test_key_rotation(db: Database) -> None:
    k_old, k_new = os.urandom(32), os.urandom(32)
    fm, st = send(FrankingService(db, keys(k_old)))
    rotated = FrankingService(db, keys(k_new, k_old))
    fm2, st2 = send(rotated)
    assert st2.key_id != st.key_id and st2.key_id == rotated.keys.current_id
    assert rotated.verify_report(report_of(fm, st)).key_id == st.key_id
    retired = FrankingService(db, keys(k_new))
    rejected(retired, report_of(fm2, st2, text="x"), "commitment_mismatch")
    fm3, st3 = send(FrankingService(db, keys(k_old)))
    rejected(retired, report_of(fm3, st3), "unknown_key_id")


def test_keys_from_env(tmp_path: Path) -> None:
    a, b = generate_key(), generate_key()
    k = FrankingKeys.from_env({"LIFEGUARD_FRANKING_KEYS": f"{a},{b}"})
    assert len(k.by_id) == 2 and k.current == base64.b64decode(a)
    f = tmp_path / "keys"
    f.write_text(f"# franking keys\n{b}\n")
    assert FrankingKeys.from_env({"LIFEGUARD_FRANKING_KEYS_FILE": str(f)}).current_id == (
        FrankingKeys([base64.b64decode(b)]).current_id
    )
    for bad in (
        {},
        {"LIFEGUARD_FRANKING_KEYS": "not base64!"},
        {"LIFEGUARD_FRANKING_KEYS": "QUJD"},
    ):
        with pytest.raises(Exception, match=r"franking key|base64|bytes"):
            FrankingKeys.from_env(bad)


def test_attachments_bound_by_ciphertext_and_key(lite: FrankingService) -> None:
    photo = PICS[0].read_bytes()
    other = PICS[1].read_bytes()
    fm, st = send(lite, "look", [(photo, "image/jpeg")])
    fm2 = client.frank("x", [(other, "image/jpeg")])
    other_ct = fm2.attachments[0].ciphertext
    other_ref = fm2.attachments[0].ref
    a = fm.attachments[0]
    # Swap the ciphertext only: not the committed one.
    rejected(
        lite,
        report_of(fm, st, attachments=(ReportedAttachment(other_ct, a.ref),)),
        "attachment_mismatch",
    )
    # Swap ciphertext and its ref (key, nonce, hash): the commitment does not open.
    rejected(
        lite,
        report_of(fm, st, attachments=(ReportedAttachment(other_ct, other_ref),)),
        "commitment_mismatch",
    )
    # Drop the attachment, or change its declared type: the commitment does not open.
    rejected(lite, report_of(fm, st, attachments=()), "commitment_mismatch")
    changed = dataclasses.replace(a.ref, mime="text/plain")
    rejected(
        lite,
        report_of(fm, st, attachments=(ReportedAttachment(a.ciphertext, changed),)),
        "commitment_mismatch",
    )
    v = lite.verify_report(report_of(fm, st))
    assert v.attachments[0].data == photo
    assert v.attachments[0].sha256 == hashlib.sha256(photo).hexdigest()


# ------------------------------------------------------------------------------------ salamander
# The attack of Dodis-Grubbs-Ristenpart-Woodage (CRYPTO 2018) on AES-GCM: one ciphertext and tag
# that decrypt under two keys. Test code only (it attacks the scheme; it is not used by it).

_R = 0xE1 << 120


def _gmul(x: int, y: int) -> int:
    z, v = 0, y
    for i in range(128):
        if (x >> (127 - i)) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ginv(x: int) -> int:
    result, base, e = 1 << 127, x, (1 << 128) - 2  # 1 << 127 is the field's one in GCM bit order
    while e:
        if e & 1:
            result = _gmul(result, base)
        base = _gmul(base, base)
        e >>= 1
    return result


def _aes_block(key: bytes, block: bytes) -> int:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return int.from_bytes(enc.update(block) + enc.finalize(), "big")


def _blocks(b: bytes) -> list[int]:
    b = b + b"\x00" * (-len(b) % 16)
    return [int.from_bytes(b[i : i + 16], "big") for i in range(0, len(b), 16)]


def _ghash(h: int, aad: bytes, ct: bytes) -> int:
    lens = (len(aad) * 8).to_bytes(8, "big") + (len(ct) * 8).to_bytes(8, "big")
    x = 0
    for blk in [*_blocks(aad), *_blocks(ct), int.from_bytes(lens, "big")]:
        x = _gmul(x ^ blk, h)
    return x


def salamander(k1: bytes, k2: bytes, nonce: bytes, blocks: int = 4) -> bytes:
    """A ciphertext||tag valid under both ``k1`` and ``k2`` (AAD = the attachment AAD)."""
    h1, h2 = _aes_block(k1, bytes(16)), _aes_block(k2, bytes(16))
    j0 = nonce + b"\x00\x00\x00\x01"
    e1, e2 = _aes_block(k1, j0), _aes_block(k2, j0)
    ct = bytearray(os.urandom(16 * blocks))
    free = blocks - 1  # the last ciphertext block is solved for
    ct[16 * free : 16 * free + 16] = bytes(16)
    rest = e1 ^ _ghash(h1, ATTACHMENT_AAD, bytes(ct)) ^ e2 ^ _ghash(h2, ATTACHMENT_AAD, bytes(ct))
    # Block `free` is followed by the length block only, so its coefficient is H^2.
    coef = _gmul(h1, h1) ^ _gmul(h2, h2)
    ct[16 * free : 16 * free + 16] = _gmul(rest, _ginv(coef)).to_bytes(16, "big")
    tag = e1 ^ _ghash(h1, ATTACHMENT_AAD, bytes(ct))
    return bytes(ct) + tag.to_bytes(16, "big")


def test_invisible_salamander_cannot_be_reported_as_the_other_plaintext(
    lite: FrankingService,
) -> None:
    k1, k2, nonce = os.urandom(32), os.urandom(32), os.urandom(12)
    ct = salamander(k1, k2, nonce)
    p1 = AESGCM(k1).decrypt(nonce, ct, ATTACHMENT_AAD)  # AES-GCM accepts both keys...
    p2 = AESGCM(k2).decrypt(nonce, ct, ATTACHMENT_AAD)
    assert p1 != p2
    sha = hashlib.sha256(ct).digest()
    ref1, ref2 = AttachmentRef(sha, k1, nonce), AttachmentRef(sha, k2, nonce)
    k_f = os.urandom(32)
    c = commit(k_f, "pic", [ref1])  # ...but the commitment names the key as well as the hash
    assert not opens(c, k_f, "pic", [ref2])
    st = lite.stamp(c, sender=ALICE, recipient=BOB)
    # The recipient handed key 2 finds on receipt that the message cannot be reported.
    payload = {
        "text": "pic",
        "franking_key": base64.b64encode(k_f).decode(),
        "attachments": [
            {"ciphertext_sha256": sha.hex(), "key": base64.b64encode(k2).decode(),
             "nonce": base64.b64encode(nonce).decode(), "mime": "application/octet-stream"}
        ],
    }  # fmt: skip
    with pytest.raises(ReportRejected) as ei:
        client.receive(payload, c, st, me=BOB)
    assert ei.value.code == "commitment_mismatch"
    base = FrankingReport("pic", k_f, c, st, BOB, (ReportedAttachment(ct, ref2),))
    rejected(lite, base, "commitment_mismatch")
    v = lite.verify_report(dataclasses.replace(base, attachments=(ReportedAttachment(ct, ref1),)))
    assert v.attachments[0].data == p1


# ------------------------------------------------------------------------------------ client flow


def test_client_flow_receive_and_report(lite: FrankingService) -> None:
    photo = PICS[2].read_bytes()
    fm = client.frank("hello", [(photo, "image/jpeg")])
    st = lite.stamp(fm.commitment, sender=ALICE, recipient=BOB)
    # The payload crosses the E2EE channel as JSON; the stamp as the server's JSON.
    payload = json.loads(json.dumps(fm.payload()))
    assert "commitment" not in payload and payload["franking_key"]
    got = client.receive(payload, fm.commitment, json.loads(json.dumps(st.to_json())), me=BOB)
    assert got.attachment(0, fm.attachments[0].ciphertext) == photo
    with pytest.raises(ReportRejected):
        client.receive(payload, fm.commitment, st, me=MALLORY)
    tampered = {**payload, "text": "hello!"}
    with pytest.raises(ReportRejected):
        client.receive(tampered, fm.commitment, st, me=BOB)
    body = client.build_report(got, [fm.attachments[0].ciphertext], category="grooming")
    assert body["reporter"] == BOB and body["category"] == "grooming"


# ------------------------------------------------------------------------------------ storage


def _all_rows(db: Database) -> str:
    md = MetaData()
    md.reflect(db.engine)
    out: list[str] = []
    with db.engine.connect() as c:
        for t in md.sorted_tables:
            for row in c.execute(select(t)):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def test_server_stores_no_plaintext_of_unreported_messages(
    svc: FrankingService, db: Database, settings: Settings
) -> None:
    secrets_ = [f"unreported secret message number {i} zq{os.urandom(4).hex()}" for i in range(20)]
    sent = [send(svc, t) for t in secrets_]
    reported_text = "reported message xk" + os.urandom(4).hex()
    fm, st = send(svc, reported_text)
    v = svc.verify_report(report_of(fm, st))
    dump = _all_rows(db)
    for t in secrets_:
        assert t not in dump
    assert reported_text not in dump  # the franking table keeps its SHA-256 only
    for fm_i, _ in sent:
        assert fm_i.franking_key.hex() not in dump and fm_i.commitment.hex() not in dump
    with db.session() as s:
        row = s.get(FrankingReportRow, v.report_id)
        assert row is not None
        assert row.text_sha256 == hashlib.sha256(reported_text.encode()).hexdigest()
        assert row.commitment == fm.commitment.hex()
        assert (row.sender, row.recipient) == (ALICE, BOB)
    if db.dialect == "sqlite":
        path = Path(settings.resolved_database_url.split("///", 1)[1])
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for t in secrets_:
            assert t.encode() not in raw


# ------------------------------------------------------------------------------------ HTTP


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    monkeypatch.setenv("LIFEGUARD_FRANKING_KEYS", generate_key())
    monkeypatch.setenv("LIFEGUARD_EVIDENCE_KEY", base64.b64encode(os.urandom(32)).decode())
    with live_server(Settings(data_dir=tmp_path / "data")) as lv:
        yield lv


def test_http_stamp_report_case_and_replay(live: Live) -> None:
    photo = PICS[3].read_bytes()
    fm = client.frank(TEXT, [(photo, "image/jpeg")])
    relay = live.client(live.key("frank"))
    r = relay.post(
        "/v1/e2ee/stamp",
        json={
            "commitment": base64.b64encode(fm.commitment).decode(),
            "sender": ALICE,
            "recipient": BOB,
            "conversation": "c1",
        },
    )
    assert r.status_code == 200, r.text
    stamp = r.json()
    assert set(stamp) == {"tag", "key_id", "timestamp_ms", "sender", "recipient", "conversation"}
    got = client.receive(fm.payload(), fm.commitment, stamp, me=BOB)
    body = client.build_report(
        got, [fm.attachments[0].ciphertext], category="sextortion", note="threat"
    )
    forged = json.loads(json.dumps(body))
    forged["stamp"]["sender"] = MALLORY
    r = relay.post("/v1/e2ee/reports", json=forged)
    assert r.status_code == 422 and r.json()["code"] == "invalid_tag"
    altered = {**body, "text": body["text"] + " (edited)"}
    r = relay.post("/v1/e2ee/reports", json=altered)
    assert r.status_code == 422 and r.json()["code"] == "commitment_mismatch"
    r = relay.post("/v1/e2ee/reports", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["verified"] and out["queued"] and out["case_id"] is not None
    assert out["attachments"][0]["sha256"] == hashlib.sha256(photo).hexdigest()
    r = relay.post("/v1/e2ee/reports", json=body)
    assert r.status_code == 409 and r.json()["code"] == "already_reported"
    assert r.json()["report_id"] == out["report_id"]
    from lifeguard.review.service import ReviewService

    case = ReviewService(live.state.db, live.state.settings).get_case(out["case_id"])
    assert case.surface == "e2ee_verified" and case.priority == 1  # sextortion: a child at risk
    assert case.reported_account == ALICE
    kinds = sorted(i.kind for i in case.items)
    assert kinds == ["media", "message"]
    assert any(TEXT in json.dumps(rep, default=str) for rep in case.reports)
    # A device key (takedown scope) cannot stamp: stamps are what make reports believable.
    with live.client(live.key("takedown")) as dev:
        r = dev.post("/v1/e2ee/stamp", json={"commitment": "", "sender": "a", "recipient": "b"})
        assert r.status_code == 403
    r = relay.post("/v1/e2ee/stamp", json={"commitment": "AAAA", "sender": ALICE, "recipient": BOB})
    assert r.status_code == 422 and r.json()["code"] == "invalid_field"
    relay.close()


def test_http_without_franking_keys_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIFEGUARD_FRANKING_KEYS", raising=False)
    monkeypatch.delenv("LIFEGUARD_FRANKING_KEYS_FILE", raising=False)
    with live_server(Settings(data_dir=tmp_path)) as lv, lv.client(lv.key("frank")) as c:
        r = c.post(
            "/v1/e2ee/stamp",
            json={
                "commitment": base64.b64encode(bytes(32)).decode(),
                "sender": "a",
                "recipient": "b",
            },
        )
        assert r.status_code == 403 and r.json()["code"] == "franking_disabled"


def test_migration_0008_matches_the_models(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lifeguard.store.models import Base

    mine = {"e2ee_franking_report", "takedown_submission"}
    with db.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
        names = set(db.engine.dialect.get_table_names(c))
    assert names >= mine
    flat = [d for d in diff if any(t in repr(d) for t in mine)]
    assert flat == []


def test_http_rejects_out_of_range_stamp(live: Live) -> None:
    fm = client.frank("x")
    with live.client(live.key("frank")) as c:
        st = c.post(
            "/v1/e2ee/stamp",
            json={
                "commitment": base64.b64encode(fm.commitment).decode(),
                "sender": ALICE,
                "recipient": BOB,
            },
        ).json()
        got = client.receive(fm.payload(), fm.commitment, st, me=BOB)
        body = client.build_report(got)
        for ts in (-1, 2**63, 10**17):
            bad = json.loads(json.dumps(body))
            bad["stamp"]["timestamp_ms"] = ts
            r = c.post("/v1/e2ee/reports", json=bad)
            assert r.status_code == 422, (ts, r.text)
        bad = json.loads(json.dumps(body))
        bad["franking_key"] = "!!"
        r = c.post("/v1/e2ee/reports", json=bad)
        assert r.status_code == 422 and r.json()["code"] == "invalid_field"
