"""The /v1 API over real HTTP (uvicorn on 127.0.0.1 + httpx), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from api_live import Live, live_server
from conftest import PHOTOS, TE_DATA
from lifeguard.api.config import ApiSettings
from lifeguard.matching import Matcher
from lifeguard.settings import Settings
from lifeguard.signals.hasher import hash_file

REF = TE_DATA / "pdq-data" / "bridge-mods" / "aaa-orig.jpg"
REF_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
KODAK = sorted((PHOTOS / "kodak").glob("*.png"))


def upload(path: Path, field: str = "file") -> dict[str, Any]:
    return {field: (path.name, path.read_bytes(), "application/octet-stream")}


def flipped_jpeg(path: Path) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        buf, "JPEG", quality=90
    )
    return buf.getvalue()


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with live_server(settings) as lv:
        yield lv


@pytest.fixture
def c(live: Live) -> Iterator[httpx.Client]:
    with live.client(live.key("admin")) as client:
        yield client


def test_hash_upload_matches_library(c: httpx.Client) -> None:
    r = c.post("/v1/hash", files=upload(REF))
    assert r.status_code == 200
    body = r.json()
    lib = hash_file(REF)
    assert body["pdq"] == REF_PDQ == lib.pdq
    assert body["md5"] == lib.md5 and body["sha256"] == lib.sha256
    assert body["path"] == REF.name and "query_variants" not in body
    r = c.post("/v1/hash?variants=true", files=upload(REF))
    assert (
        set(r.json()["query_variants"]) >= {"rotate90", "flip_x"}
        or len(r.json()["query_variants"]) >= 3
    )


def test_bank_lifecycle_and_matching(
    live: Live, c: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []
    fake = types.ModuleType("lifeguard.actions")
    fake.record_match = lambda db, result, content_id, media: calls.append(
        (db, result, content_id, media)
    )  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lifeguard.actions", fake)

    r = c.post("/v1/banks", json={"name": "known_photos", "categories": ["test"]})
    assert r.status_code == 201 and r.json()["name"] == "KNOWN_PHOTOS"
    assert c.post("/v1/banks", json={"name": "KNOWN_PHOTOS"}).status_code == 409
    listed = c.post(
        "/v1/banks/KNOWN_PHOTOS/entries/media", files=upload(KODAK[0]), data={"note": "n1"}
    )
    assert listed.status_code == 201
    kinds = {a["entry"]["signal_type"] for a in listed.json()}
    assert kinds == {"pdq", "md5"}
    pdq_entry = next(a["entry"] for a in listed.json() if a["entry"]["signal_type"] == "pdq")
    assert pdq_entry["external_id"] == KODAK[0].name and pdq_entry["added_by"].startswith(
        "api-key:"
    )

    # The listed photo matches, by upload and by its flipped copy (variants); another does not.
    r = c.post("/v1/match", files=upload(KODAK[0]), data={"content_id": "post-1"})
    assert r.status_code == 200
    res = r.json()
    assert res["matched"] and res["banks"] == ["KNOWN_PHOTOS"] and res["content_id"] == "post-1"
    assert {m["entry_id"] for m in res["matches"]} >= {pdq_entry["id"]}
    assert res["media"]["pdq"] == pdq_entry["value"]
    assert (
        calls
        and calls[-1][2] == "post-1"
        and calls[-1][1].matched
        and calls[-1][3].pdq == pdq_entry["value"]
    )
    r = c.post("/v1/match", files={"file": ("f.jpg", flipped_jpeg(KODAK[0]), "image/jpeg")})
    assert r.json()["matched"] and r.json()["matches"][0]["variant"] == "dihedral"
    r = c.post(
        "/v1/match?variants=false", files={"file": ("f.jpg", flipped_jpeg(KODAK[0]), "image/jpeg")}
    )
    assert not r.json()["matched"]
    n_calls = len(calls)
    r = c.post("/v1/match", files=upload(KODAK[1]))
    assert r.status_code == 200 and not r.json()["matched"] and r.json()["matches"] == []
    assert len(calls) == n_calls  # the hook only hears about matches

    # Signals.
    r = c.post(
        "/v1/match/signals", json={"signals": [{"signal_type": "pdq", "value": pdq_entry["value"]}]}
    )
    assert r.json()["matched"] and r.json()["media"] is None
    r = c.post("/v1/match/signals", json={"signals": [{"signal_type": "md5", "value": "0" * 32}]})
    assert r.status_code == 200 and not r.json()["matched"]

    # Batch: two files and a corrupt one, which gets an error entry instead of failing the batch.
    files = [
        ("files", (KODAK[0].name, KODAK[0].read_bytes(), "image/png")),
        ("files", ("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg")),
        ("files", (KODAK[2].name, KODAK[2].read_bytes(), "image/png")),
    ]
    r = c.post("/v1/match/batch", files=files, data={"content_ids": ["a", "b", "c"]})
    assert r.status_code == 200
    out = r.json()["results"]
    assert [x["content_id"] for x in out] == ["a", "b", "c"]
    assert out[0]["result"]["matched"] and not out[2]["result"]["matched"]
    assert out[1]["result"] is None and out[1]["error"]["status"] == 422 and out[1]["error"]["code"]

    # Entries: list/page, get, disable stops matching, enable, delete (tombstone).
    page = c.get("/v1/banks/KNOWN_PHOTOS/entries", params={"limit": 1}).json()
    assert page["total"] == 2 and len(page["items"]) == 1 and page["next_after_id"]
    page2 = c.get(
        "/v1/banks/KNOWN_PHOTOS/entries", params={"limit": 1, "after_id": page["next_after_id"]}
    ).json()
    assert page2["next_after_id"] is None and page2["items"][0]["id"] != page["items"][0]["id"]
    eid = pdq_entry["id"]
    assert c.get(f"/v1/banks/KNOWN_PHOTOS/entries/{eid}").json()["value"] == pdq_entry["value"]
    r = c.patch(
        f"/v1/banks/KNOWN_PHOTOS/entries/{eid}", json={"status": "disabled", "reason": "review"}
    )
    assert r.json()["status"] == "disabled" and r.json()["status_reason"] == "review"
    md5_only = c.post("/v1/match", files=upload(KODAK[0])).json()
    assert {m["signal_type"] for m in md5_only["matches"]} == {"md5"}
    assert (
        c.patch(f"/v1/banks/KNOWN_PHOTOS/entries/{eid}", json={"status": "active"}).json()["status"]
        == "active"
    )
    assert c.delete(f"/v1/banks/KNOWN_PHOTOS/entries/{eid}").json()["status"] == "removed"
    r = c.patch(f"/v1/banks/KNOWN_PHOTOS/entries/{eid}", json={"status": "disabled"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    assert c.get("/v1/banks/KNOWN_PHOTOS/entries/999999").status_code == 404

    # Add by signal: created, then idempotent.
    body = {"signal_type": "pdq", "value": REF_PDQ, "external_id": "ref"}
    assert c.post("/v1/banks/KNOWN_PHOTOS/entries", json=body).status_code == 201
    again = c.post("/v1/banks/KNOWN_PHOTOS/entries", json=body)
    assert again.status_code == 200 and again.json()["duplicate"]

    # Bank update / delete.
    r = c.patch("/v1/banks/KNOWN_PHOTOS", json={"enabled": False, "match_threshold": 10})
    assert r.json()["enabled"] is False and r.json()["match_threshold"] == 10
    assert not c.post("/v1/match", files=upload(REF)).json()["matched"]
    assert c.get("/v1/banks").json()[0]["entry_counts"]["active"] >= 1
    assert c.delete("/v1/banks/KNOWN_PHOTOS").status_code == 200
    assert c.get("/v1/banks/KNOWN_PHOTOS").status_code == 404

    status = c.get("/v1/index/status").json()
    assert status["ready"] and status["revision"] == status["database_revision"]

    metrics = c.get("/metrics").text
    assert 'lifeguard_matches_total{bank="KNOWN_PHOTOS",variant="plain"}' in metrics
    assert 'route="/v1/match"' in metrics and "lifeguard_index_revision" in metrics


def test_import_streamed_and_multipart_and_export(c: httpx.Client) -> None:
    assert c.post("/v1/banks", json={"name": "LIST"}).status_code == 201
    lines = ["signal_type,value,external_id"]
    lines += [f"md5,{i:032x},row{i}" for i in range(1, 2001)]
    lines.insert(500, "md5,not-a-hash,bad1")
    lines.insert(900, "sha1,abcdef,bad2")
    text = "\n".join(lines) + "\n"

    def gen() -> Iterator[bytes]:  # chunked transfer: the server never sees a Content-Length
        data = text.encode()
        for i in range(0, len(data), 7000):
            yield data[i : i + 7000]

    r = c.post(
        "/v1/banks/LIST/import",
        content=gen(),
        params={"filename": "list.csv", "source": "unit test"},
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["format"] == "csv" and res["added"] == 2000 and res["rejected"] == 2
    assert [x["line_no"] for x in res["rejections"]] == [501, 901]
    assert "md5" in res["rejections"][0]["reason"] and "not-a-hash" in res["rejections"][0]["text"]

    # Multipart, JSON Lines, idempotent: duplicates counted, nothing added twice.
    jl = "".join(json.dumps({"signal_type": "md5", "value": f"{i:032x}"}) + "\n" for i in (1, 5000))
    r = c.post(
        "/v1/banks/LIST/import", files={"file": ("more.jsonl", jl.encode(), "application/x-ndjson")}
    )
    assert r.status_code == 200 and r.json()["added"] == 1 and r.json()["duplicates"] == 1

    # Bad input: unknown bank 404, unusable file 422, missing file field 422.
    assert (
        c.post(
            "/v1/banks/NOPE/import", content=b"x", headers={"Content-Type": "text/plain"}
        ).status_code
        == 404
    )
    r = c.post(
        "/v1/banks/LIST/import",
        content=b"a,b\n1,2\n",
        headers={"Content-Type": "text/csv"},
        params={"filename": "x.csv"},
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    r = c.post("/v1/banks/LIST/import", files={"other": ("x.csv", b"md5\n", "text/csv")})
    assert r.status_code == 422

    # Export streams every active entry back.
    with c.stream("GET", "/v1/banks/LIST/export", params={"format": "csv"}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
        assert "attachment" in resp.headers["content-disposition"]
        body = b"".join(resp.iter_bytes()).decode()
    rows = body.strip().split("\n")
    assert rows[0].startswith("signal_type,value") and len(rows) == 1 + 2001
    assert f"md5,{5000:032x}" in body
    r = c.get("/v1/banks/LIST/export", params={"format": "jsonl"})
    assert len(r.text.strip().split("\n")) == 2001
    assert c.get("/v1/banks/LIST/export", params={"format": "xml"}).status_code == 422
    assert c.get("/v1/banks/NOPE/export").status_code == 404


def test_readyz_is_503_until_the_index_loads(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_load = Matcher.load

    def slow_load(self: Matcher, **kw: Any) -> None:
        gate.wait(30)
        real_load(self, **kw)

    monkeypatch.setattr(Matcher, "load", slow_load)
    with live_server(settings, ApiSettings(), wait_ready=False) as lv:
        assert httpx.get(lv.base_url + "/healthz").status_code == 200
        r = httpx.get(lv.base_url + "/readyz")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert httpx.get(lv.base_url + "/status").status_code == 503
        with lv.client(lv.key("match")) as c:
            r = c.post(
                "/v1/match/signals", json={"signals": [{"signal_type": "md5", "value": "0" * 32}]}
            )
            assert (
                r.status_code == 503
                and r.json()["code"] == "index_not_ready"
                and r.headers["retry-after"]
            )
        gate.set()
        lv.wait_ready()
        assert httpx.get(lv.base_url + "/readyz").json()["status"] == "ready"


def test_event_loop_stays_free_while_hashing(sqlite_settings: Settings) -> None:
    """Health checks answer while uploads hash (hashing runs in worker threads). SQLite only: the
    database plays no part."""
    big = io.BytesIO()
    Image.open(KODAK[3]).convert("RGB").resize((2000, 1400)).save(big, "PNG")
    data = big.getvalue()
    with live_server(sqlite_settings) as live:
        _hash_while_probing(live, data)


def _hash_while_probing(live: Live, data: bytes) -> None:
    token = live.key("hash")
    errors: list[BaseException] = []

    def post() -> None:
        try:
            with live.client(token) as c:
                assert (
                    c.post("/v1/hash", files={"file": ("big.png", data, "image/png")}).status_code
                    == 200
                )
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    answered = 0
    while any(t.is_alive() for t in threads):
        assert httpx.get(live.base_url + "/healthz", timeout=30).status_code == 200
        answered += 1
    for t in threads:
        t.join()
    assert not errors and answered >= 1


def test_matches_reach_lifeguard_actions(live: Live, c: httpx.Client) -> None:
    """With the real ``lifeguard.actions`` (when installed): a match through the API is recorded
    as a match event with the content id and the query's hashes."""
    actions = pytest.importorskip("lifeguard.actions")
    c.post("/v1/banks", json={"name": "EVENTS"})
    c.post("/v1/banks/EVENTS/entries/media", files=upload(KODAK[4]))
    r = c.post("/v1/match", files=upload(KODAK[4]), data={"content_id": "msg-42"})
    assert r.json()["matched"]
    events = actions.list_events(live.state.db, content_id="msg-42")
    assert events and {e.type for e in events} == {"match"} and events[0].bank_name == "EVENTS"
    assert events[0].query_md5 == r.json()["media"]["md5"]
    r = c.post("/v1/match", files=upload(KODAK[4]), data={"content_id": "bad\x01id"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_field"
