"""Take it down: hashes (never images) become a self-reported bank; receipts check and withdraw;
shared entries survive one withdrawal; abuse checks hold suspicious submissions for review; rate
limits per IP and per client key; over HTTP, the device sends nothing but the hashes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, select

from api_live import Live, live_server
from conftest import PHOTOS
from lifeguard.banks import Banks
from lifeguard.e2ee.client import TakeItDownClient, TakeItDownError, hash_image
from lifeguard.e2ee.takedown import (
    ImageHashes,
    RateLimited,
    Takedown,
    TakedownError,
    TakedownSettings,
)
from lifeguard.errors import Conflict, NotFound
from lifeguard.matching import Matcher, MatchResult
from lifeguard.settings import Settings
from lifeguard.store.db import Database

PICS = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def flip(pdq: str, bits: int, start: int = 0) -> str:
    v = int(pdq, 16)
    for b in range(start, start + bits):
        v ^= 1 << b
    return f"{v:064x}"


@pytest.fixture(scope="module")
def hashes() -> list[ImageHashes]:
    return [hash_image(p) for p in PICS[:4]]


class Env:
    def __init__(self, db: Database, settings: Settings, **kw: object) -> None:
        self.banks = Banks(db)
        self.matcher = Matcher(db, settings)
        self.matcher.load(use_snapshot=False)
        self.td = Takedown(db, self.banks, self.match, TakedownSettings(**kw))  # type: ignore[arg-type]

    def match(self, sigs: list[tuple[str, str]]) -> MatchResult:
        self.matcher.sync(force=True)
        return self.matcher.match_signals(sigs)

    def listed(self, h: ImageHashes) -> bool:
        return "SELF_REPORTED" in self.match([("pdq", h.pdq)]).banks


def test_submit_status_withdraw(
    db: Database, settings: Settings, hashes: list[ImageHashes]
) -> None:
    env = Env(db, settings)
    r = env.td.submit(hashes[:2], age_band="13_15", client_key_id="k1", client_ip="10.0.0.1")
    assert r.submission.status == "active" and r.submission.images == 2
    assert r.code.startswith("TD-") and len(r.code) == 42
    assert env.listed(hashes[0]) and env.listed(hashes[1]) and not env.listed(hashes[2])
    assert "SELF_REPORTED" in env.match([("md5", hashes[0].md5)]).banks
    entries = env.banks.list_entries("SELF_REPORTED").items
    assert len(entries) == 4 and all(e.source == "take-it-down" for e in entries)
    assert all("age_13_15" in e.categories for e in entries)
    # The receipt code is stored only as a digest.
    md = MetaData()
    md.reflect(db.engine)
    with db.engine.connect() as c:
        dump = repr([tuple(row) for t in md.sorted_tables for row in c.execute(select(t))])
    assert r.code not in dump and r.code.replace("-", "") not in dump
    assert env.td.status(r.code.lower()).status == "active"
    w = env.td.withdraw(r.code)
    assert w.status == "withdrawn" and w.status_changed_at is not None
    assert not env.listed(hashes[0]) and not env.listed(hashes[1])
    assert env.td.withdraw(r.code).status == "withdrawn"  # idempotent
    with pytest.raises(NotFound):
        env.td.status("TD-" + "-".join(["AAAA"] * 8))
    with pytest.raises(TakedownError) as ei:
        env.td.status("not-a-receipt")
    assert ei.value.code == "invalid_receipt"
    # Submitting the same image again lists it again (the disabled entry is re-enabled).
    env.td.submit(hashes[:1])
    assert env.listed(hashes[0])


def test_shared_entries_survive_one_withdrawal(
    db: Database, settings: Settings, hashes: list[ImageHashes]
) -> None:
    env = Env(db, settings)
    a = env.td.submit(hashes[:1])
    b = env.td.submit(hashes[:1])
    assert a.submission.status == b.submission.status == "active"  # same value: not "unrelated"
    env.td.withdraw(a.code)
    assert env.listed(hashes[0])
    env.td.withdraw(b.code)
    assert not env.listed(hashes[0])


def test_abuse_checks_hold_for_review(
    db: Database, settings: Settings, hashes: list[ImageHashes]
) -> None:
    env = Env(db, settings, review_unrelated_matches=3)
    h = hashes[0]
    env.banks.create_bank("OTHER")
    for i in range(3):  # three different listed hashes near the submitted one
        env.banks.add_entry("OTHER", "pdq", flip(h.pdq, 2, 10 * i))
    r = env.td.submit([h])
    assert r.submission.status == "review" and r.submission.unrelated_matches == 3
    assert "3 unrelated" in r.submission.review_reason
    assert not env.listed(h)  # nothing listed while held
    assert [s.id for s in env.td.list_submissions(status="review")] == [r.submission.id]
    approved = env.td.decide(r.submission.id, approve=True, by="reviewer:1")
    assert approved.status == "active" and env.listed(h)
    with pytest.raises(Conflict):
        env.td.decide(r.submission.id, approve=False)
    # Two unrelated matches stay under the threshold.
    h2 = hashes[1]
    for i in range(2):
        env.banks.add_entry("OTHER", "pdq", flip(h2.pdq, 2, 10 * i))
    assert env.td.submit([h2]).submission.status == "active"
    # An allow-list hit, or a low-quality hash, is held too; a rejected one is never listed.
    h3 = hashes[2]
    env.banks.create_bank("BENIGN", kind="allow")
    env.banks.add_entry("BENIGN", "md5", h3.md5)
    r3 = env.td.submit([h3])
    assert r3.submission.status == "review" and "allow-list" in r3.submission.review_reason
    assert env.td.decide(r3.submission.id, approve=False).status == "rejected"
    assert not env.listed(h3)
    low = ImageHashes(hashes[3].pdq, hashes[3].md5, pdq_quality=10)
    assert "quality" in env.td.submit([low]).submission.review_reason
    with pytest.raises(NotFound):
        env.td.decide(999_999, approve=True)


def test_rate_limits_per_ip_and_key(sqlite_settings: Settings, hashes: list[ImageHashes]) -> None:
    env = Env(
        Database.open(sqlite_settings), sqlite_settings, per_ip_per_hour=2, per_key_per_hour=3
    )
    env.td.submit(hashes[:1], client_ip="1.1.1.1", client_key_id="k")
    env.td.submit(hashes[:1], client_ip="1.1.1.1", client_key_id="k")
    with pytest.raises(RateLimited) as ei:
        env.td.submit(hashes[:1], client_ip="1.1.1.1", client_key_id="k")
    assert ei.value.retry_after_s > 60
    env.td.submit(hashes[:1], client_ip="2.2.2.2", client_key_id="k")
    with pytest.raises(RateLimited):  # the key's own limit (3 an hour) is spent now
        env.td.submit(hashes[:1], client_ip="3.3.3.3", client_key_id="k")


def test_validation(sqlite_settings: Settings, hashes: list[ImageHashes]) -> None:
    env = Env(Database.open(sqlite_settings), sqlite_settings, max_images=2)
    h = hashes[0]
    for bad, what in (
        ([], "at least one"),
        ([h, h, h], "at most 2"),
        ([ImageHashes("xyz", h.md5)], "pdq"),
        ([ImageHashes(h.pdq, "0" * 31)], "md5"),
        ([ImageHashes(h.pdq, h.md5, 101)], "quality"),
    ):
        with pytest.raises(TakedownError, match=what):
            env.td.submit(bad)
    with pytest.raises(TakedownError, match="age_band"):
        env.td.submit([h], age_band="12")


# ------------------------------------------------------------------------------------ HTTP


class Recorder(httpx.BaseTransport):
    """Wraps the real transport and keeps every request (method, URL, headers, body)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    monkeypatch.setenv("LIFEGUARD_TAKEDOWN_PER_IP_PER_HOUR", "4")
    with live_server(Settings(data_dir=tmp_path / "data")) as lv:
        yield lv


def test_http_device_sends_only_hashes(live: Live) -> None:
    rec = Recorder()
    images = [p.read_bytes() for p in PICS[4:6]]
    with TakeItDownClient(live.base_url, live.key("takedown"), transport=rec) as dev:
        out = dev.submit(images, age_band="16_17")
        assert out["submission"]["status"] == "active" and out["submission"]["images"] == 2
        receipt = out["receipt"]
        assert dev.status(receipt)["status"] == "active"
        with live.client(live.key("match")) as platform:
            r = platform.post("/v1/match", files={"file": ("x.jpg", images[0])})
            assert "SELF_REPORTED" in r.json()["banks"]
        assert dev.withdraw(receipt)["status"] == "withdrawn"
        with live.client(live.key("match")) as platform:
            r = platform.post("/v1/match", files={"file": ("x.jpg", images[0])})
            assert "SELF_REPORTED" not in r.json()["banks"]
        with pytest.raises(TakeItDownError) as ei:
            dev.withdraw("TD-" + "-".join(["ABCD"] * 8))
        assert ei.value.status == 404
    assert len(rec.requests) == 4
    for req in rec.requests:
        body = req.content
        assert len(body) < 400 * len(images)  # two 64-hex PDQs and two MD5s, nothing more
        for im in images:
            # No window of the image's bytes, raw or base64, appears anywhere in the request.
            for off in range(0, len(im) - 48, max(1, len(im) // 64)):
                chunk = im[off : off + 48]
                assert chunk not in body and base64.b64encode(chunk)[:40] not in body
        if req.url.path == "/v1/takedown/submissions":
            sent = json.loads(body)
            assert set(sent) == {"images", "age_band"}
            for item in sent["images"]:
                # A 256-bit perceptual hash and a digest: neither gives the image back.
                assert set(item) == {"pdq", "md5", "pdq_quality"}
                assert len(item["pdq"]) == 64 and len(item["md5"]) == 32
        else:
            assert set(json.loads(body)) == {"receipt"}


def test_http_rate_limit_review_and_scopes(live: Live) -> None:
    h = hash_image(PICS[6])
    body = {"images": [{"pdq": h.pdq, "md5": h.md5, "pdq_quality": h.pdq_quality}]}
    with live.client(live.key("takedown")) as dev:
        codes = [dev.post("/v1/takedown/submissions", json=body).status_code for _ in range(5)]
        assert codes == [201, 201, 201, 201, 429]
        r = dev.post("/v1/takedown/submissions", json=body)
        assert r.json()["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 60
        r = dev.post("/v1/takedown/status", json={"receipt": "nope"})
        assert r.status_code == 422 and r.json()["code"] == "invalid_receipt"
        # A device key sees nothing else: not the banks, not the review list.
        assert dev.get("/v1/banks").status_code == 403
        assert dev.get("/v1/takedown/submissions").status_code == 403
    st = live.state
    bank_name = "OTHER_HTTP"
    st.banks.create_bank(bank_name)
    h2 = hash_image(PICS[7])
    for i in range(3):
        st.banks.add_entry(bank_name, "pdq", flip(h2.pdq, 2, 10 * i))
    st.index_dirty = True
    svc = live.app.state.e2ee_takedown
    svc.limiter = type(svc.limiter)()  # fresh buckets for the next part
    with live.client(live.key("takedown")) as dev:
        r = dev.post(
            "/v1/takedown/submissions",
            json={"images": [{"pdq": h2.pdq, "md5": h2.md5, "pdq_quality": h2.pdq_quality}]},
        )
        assert r.status_code == 201 and r.json()["submission"]["status"] == "review"
        sid = r.json()["submission"]["id"]
    with live.client(live.key("bank:read")) as reviewer:
        listed = reviewer.get("/v1/takedown/submissions").json()
        assert [s["id"] for s in listed] == [sid]
        assert "receipt" not in json.dumps(listed)
        assert reviewer.post(f"/v1/takedown/submissions/{sid}/decision", json={}).status_code == 403
    with live.client(live.key("bank:write")) as curator:
        r = curator.post(f"/v1/takedown/submissions/{sid}/decision", json={"approve": True})
        assert r.status_code == 200 and r.json()["status"] == "active"
        r = curator.post(f"/v1/takedown/submissions/{sid}/decision", json={"approve": True})
        assert r.status_code == 409
        r = curator.post("/v1/takedown/submissions/424242/decision", json={"approve": False})
        assert r.status_code == 404
