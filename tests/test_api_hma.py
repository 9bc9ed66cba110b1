"""HMA 1.1 (OpenMediaMatch) contract tests: the requests and response shapes of HMA's own tests,
replayed against lifeguard (facebook/ThreatExchange hasher-matcher-actioner/src/OpenMediaMatch/
tests/test_api.py, test_api_banks.py, test_match_api.py; blueprints hashing.py, matching.py,
curation.py). Differences from HMA are documented in docs/api.md."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api_live import Live, live_server
from conftest import PHOTOS, TE_DATA
from lifeguard.settings import Settings

REF = TE_DATA / "pdq-data" / "bridge-mods" / "aaa-orig.jpg"
REF_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
OTHER = sorted((PHOTOS / "kodak").glob("*.png"))[5]


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with live_server(settings) as lv:
        yield lv


@pytest.fixture
def c(live: Live) -> Iterator[httpx.Client]:
    with live.client(live.key("admin")) as client:
        yield client


def photo(path=REF) -> dict[str, tuple[str, bytes, str]]:  # type: ignore[no-untyped-def]
    return {"photo": (path.name, path.read_bytes(), "image/jpeg")}


def test_status(live: Live) -> None:
    r = httpx.get(live.base_url + "/status")
    assert r.status_code == 200 and r.text == "I-AM-ALIVE"
    assert httpx.get(live.base_url + "/status/live").text == "I-AM-ALIVE"


def test_hma_endpoints_need_a_key(live: Live) -> None:
    for method, path in (("GET", "/c/banks"), ("GET", "/m/raw_lookup"), ("POST", "/h/hash")):
        assert httpx.request(method, live.base_url + path).status_code == 401


def test_banks_crud(c: httpx.Client) -> None:
    assert c.get("/c/banks").json() == []
    assert c.post("/c/banks", json={"name": "01_TEST_BANK"}).status_code == 400
    assert c.post("/c/banks", json={"name": "my_test_bank"}).status_code == 400
    r = c.post("/c/banks", json={"name": "MY_TEST_BANK_01"})
    assert r.status_code == 201
    assert r.json() == {"matching_enabled_ratio": 1.0, "name": "MY_TEST_BANK_01"}
    assert c.get("/c/banks").json() == [r.json()]
    assert c.post("/c/banks", json={"name": "MY_TEST_BANK_01"}).status_code == 403
    assert c.get("/c/bank/MY_TEST_BANK_01").json() == r.json()
    assert c.get("/c/bank/NO_SUCH").status_code == 404

    # test_banks_update
    assert c.put("/c/bank/MY_TEST_BANK_01", json={"name": "1_invalid_name"}).status_code == 400
    r = c.put("/c/bank/MY_TEST_BANK_01", json={"name": "MY_TEST_BANK_RENAMED"})
    assert r.status_code == 200 and r.json()["name"] == "MY_TEST_BANK_RENAMED"
    r = c.put("/c/bank/MY_TEST_BANK_RENAMED", json={"enabled": False})
    assert r.status_code == 200 and r.json()["matching_enabled_ratio"] == 0
    r = c.put("/c/bank/MY_TEST_BANK_RENAMED", json={"enabled_ratio": 0.5})
    assert r.status_code == 200 and r.json()["matching_enabled_ratio"] == 0.5
    assert c.get("/c/banks").json() == [
        {"name": "MY_TEST_BANK_RENAMED", "matching_enabled_ratio": 0.5}
    ]
    assert c.put("/c/bank/MY_TEST_BANK_RENAMED", json={"enabled_ratio": 2}).status_code == 400
    # The lifeguard view agrees: enabled (ratio > 0).
    assert c.get("/v1/banks/MY_TEST_BANK_RENAMED").json()["enabled"] is True

    # test_banks_delete: deleting twice succeeds.
    assert c.delete("/c/bank/MY_TEST_BANK_RENAMED").status_code == 200
    r = c.delete("/c/bank/MY_TEST_BANK_RENAMED")
    assert r.status_code == 200 and r.json() == {"message": "Done"}
    assert c.get("/c/banks").json() == []


def test_content_add_get_update_delete(c: httpx.Client) -> None:
    c.post("/c/banks", json={"name": "NEW_BANK"})
    # test_banks_add_content (HMA adds by URL; the upload path is the same hashing).
    r = c.post("/c/bank/NEW_BANK/content", files=photo())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"id": body["id"], "signals": {"pdq": REF_PDQ}}
    cid = body["id"]
    assert c.post("/c/bank/NO_BANK/content", files=photo()).status_code == 404
    assert c.post("/c/bank/NEW_BANK/content").status_code == 400
    assert (
        c.post(
            "/c/bank/NEW_BANK/content", files={"file": ("x.jpg", b"x", "image/jpeg")}
        ).status_code
        == 400
    )

    # test_bank_get_content
    r = c.get(f"/c/bank/NEW_BANK/content/{cid}")
    assert r.status_code == 200
    got = r.json()
    assert got["id"] == cid and got["disable_until_ts"] == 0
    assert (
        got["bank"] == {"name": "NEW_BANK", "matching_enabled_ratio": 1.0} and "signals" not in got
    )
    assert c.get("/c/bank/NEW_BANK/content/999999").status_code == 404
    assert c.get("/c/bank/TEST_BANK_GET/content/1").status_code == 404

    # test_bank_get_content_signal_validation (signal added with /signal).
    r = c.post("/c/bank/NEW_BANK/signal", json={"pdq": "0" * 63 + "1"})
    assert r.status_code == 200 and r.json()["signals"] == {"pdq": "0" * 63 + "1"}
    sid = r.json()["id"]
    r = c.get(f"/c/bank/NEW_BANK/content/{sid}?signal_type=video_md5")
    assert r.status_code == 200 and r.json()["signals"] == {}
    r = c.get(f"/c/bank/NEW_BANK/content/{sid}?signal_type=pdq")
    assert r.json()["signals"] == {"pdq": "0" * 63 + "1"}
    r = c.get(f"/c/bank/NEW_BANK/content/{sid}?signal_type=invalid")
    assert r.status_code == 400 and "No such signal type" in r.json()["message"]
    assert c.post("/c/bank/NEW_BANK/signal", json={"pdq": "banana"}).status_code == 400
    assert c.post("/c/bank/NEW_BANK/signal", json={"nope": "00"}).status_code == 400
    assert c.post("/c/bank/NEW_BANK/signal", json={}).status_code == 400

    # test_bank_update_content / _400
    ts = int(time.time()) + 365 * 86400
    r = c.put(f"/c/bank/NEW_BANK/content/{cid}", json={"disable_until_ts": ts})
    assert r.status_code == 200 and r.json()["disable_until_ts"] == ts
    assert c.get(f"/v1/banks/NEW_BANK/entries/{cid}").json()["status"] == "disabled"
    assert (
        c.put(f"/c/bank/NEW_BANK/content/{cid}", json={"disable_until_ts": 9999999999}).status_code
        == 400
    )
    assert (
        c.put(f"/c/bank/NEW_BANK/content/{cid}", json={"disable_until_ts": -1}).status_code == 400
    )
    r = c.put(f"/c/bank/NEW_BANK/content/{cid}", json={"disable_until_ts": 0})
    assert r.json()["disable_until_ts"] == 0

    # test_banks_delete_content
    r = c.delete(f"/c/bank/NEW_BANK/content/{cid}")
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    assert c.delete(f"/c/bank/NEW_BANK/content/{cid}").json() == {"deleted": 0}


def test_add_metadata(c: httpx.Client) -> None:
    """test_banks_add_metadata: metadata travels as JSON; unknown keys are refused (400)."""
    c.post("/c/banks", json={"name": "META"})
    r = c.post("/c/bank/META/signal", json={"pdq": REF_PDQ})
    assert r.status_code == 200
    # HMA sends metadata with ?url=; an unknown key is a 400 before anything is fetched or added.
    r = c.post(
        "/c/bank/META/content?url=https://example.com/x.jpg",
        json={"metadata": {"invalid_metadata": 5}},
    )
    assert r.status_code == 400


def test_lookups(c: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """test_match_api.py: raw_lookup, lookup, bank filters; test_api.py: POST /m/lookup."""
    calls: list[tuple[Any, ...]] = []
    fake = types.ModuleType("lifeguard.actions")
    fake.record_match = lambda db, result, content_id, media: calls.append(
        (result, content_id, media)
    )  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lifeguard.actions", fake)
    for b in ("BANK_A", "BANK_B", "BANK_C"):
        assert c.post("/c/banks", json={"name": b}).status_code == 201
        assert c.post(f"/c/bank/{b}/signal", json={"pdq": REF_PDQ}).status_code == 200
    q = {"signal": REF_PDQ, "signal_type": "pdq"}
    r = c.get("/m/raw_lookup", params=q)
    assert r.status_code == 200 and len(r.json()["matches"]) == 3
    assert all(isinstance(x, int) for x in r.json()["matches"])
    assert len(c.get("/m/raw_lookup", params={**q, "banks": "BANK_A"}).json()["matches"]) == 1
    assert (
        len(c.get("/m/raw_lookup", params={**q, "banks": "BANK_A,BANK_B"}).json()["matches"]) == 2
    )
    assert c.get("/m/raw_lookup", params={**q, "banks": "NON_EXISTENT_BANK"}).json() == {
        "matches": []
    }
    with_dist = c.get(
        "/m/raw_lookup", params={**q, "include_distance": "true", "banks": "BANK_A,BANK_B"}
    ).json()
    assert len(with_dist["matches"]) == 2
    assert all(
        set(m) == {"bank_content_id", "distance"} and m["distance"] == "0"
        for m in with_dist["matches"]
    )

    r = c.get("/m/lookup", params=q)
    assert r.status_code == 200 and set(r.json()) == {"BANK_A", "BANK_B", "BANK_C"}
    assert all(set(m) == {"bank_content_id", "distance"} for m in r.json()["BANK_A"])
    assert set(c.get("/m/lookup", params={**q, "banks": "BANK_A,BANK_C"}).json()) == {
        "BANK_A",
        "BANK_C",
    }
    assert c.get("/m/lookup", params={**q, "banks": "NON_EXISTENT_BANK"}).json() == {}
    assert c.get("/m/lookup").status_code == 400

    # POST with an upload: keyed by signal type, then bank.
    r = c.post("/m/lookup?seed=post-9", files=photo())
    assert r.status_code == 200 and set(r.json()["pdq"]) == {"BANK_A", "BANK_B", "BANK_C"}
    result, content_id, media = calls[-1]
    assert (
        content_id == "post-9"
        and media.pdq == REF_PDQ
        and set(result.banks) == set(r.json()["pdq"])
    )
    r = c.post("/m/lookup", files=photo(OTHER))
    assert r.json() == {"pdq": {}}
    # A near match: the distance is reported as a string, like HMA.
    near = REF_PDQ[:-2] + "00"
    r = c.get("/m/lookup", params={"signal": near, "signal_type": "pdq"})
    assert r.json()["BANK_A"][0]["distance"] not in ("0", 0)

    # enabled_ratio sampling with a seed: 0.0 never matches, bypass_coinflip ignores it.
    c.put("/c/bank/BANK_B", json={"enabled_ratio": 0.000001})
    seen = {frozenset(c.get("/m/lookup", params={**q, "seed": str(i)}).json()) for i in range(5)}
    assert all("BANK_B" not in s for s in seen)
    assert "BANK_B" in c.get("/m/lookup", params={**q, "bypass_coinflip": "true"}).json()
    # Disabled banks are not looked up; a bad signal is a 400.
    c.put("/c/bank/BANK_C", json={"enabled": False})
    assert "BANK_C" not in c.get("/m/lookup", params=q).json()
    assert c.get("/m/lookup", params={"signal": "banana", "signal_type": "pdq"}).status_code == 400
    assert c.get("/m/lookup", params={"signal": REF_PDQ, "signal_type": "nope"}).status_code == 400


def test_index_status(c: httpx.Client) -> None:
    c.post("/c/banks", json={"name": "IDX"})
    c.post("/c/bank/IDX/signal", json={"pdq": REF_PDQ})
    r = c.get("/m/index/status")
    assert r.status_code == 200
    pdq = r.json()["pdq"]
    assert pdq["present"] is True and pdq["size"] >= 1 and isinstance(pdq["built_to"], int)
    assert set(c.get("/m/index/status?signal_type=md5").json()) == {"md5"}
    assert c.get("/m/index/status?signal_type=nope").status_code == 400


def test_compare(c: httpx.Client) -> None:
    """test_api.py::test_compare_hashes, verbatim specimens."""
    specimen1 = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"
    specimen2 = "facd8bcb2a49bcebdec1985228d5ae84bcd006c187c598c720c2b087b3fdb318"
    r = c.post("/m/compare", json={"pdq": [specimen1, specimen2]})
    assert r.json() == {"pdq": [True, {"distance": 9}]}
    for bad in (["banana"], {"pdq": "banana"}, {"pdq": []}, {"pdq": ["banana", "banana"]},
                {"pdq": [specimen1, specimen2, specimen1]}):  # fmt: skip
        assert c.post("/m/compare", json=bad).status_code == 400, bad


def test_hash_post(c: httpx.Client) -> None:
    r = c.post("/h/hash", files=photo())
    assert r.status_code == 200 and r.json() == {"pdq": REF_PDQ}
    r = c.post("/h/hash?types=pdq,md5", files=photo())
    assert set(r.json()) == {"pdq", "md5"}
    assert c.post("/h/hash?types=tmk", files=photo()).status_code == 400
    assert c.post("/h/hash", files={"audio": ("a", b"x", "audio/wav")}).status_code == 400
    two = [
        ("photo", ("a.jpg", REF.read_bytes(), "image/jpeg")),
        ("photo", ("b.jpg", REF.read_bytes(), "image/jpeg")),
    ]
    assert c.post("/h/hash", files=two).status_code == 400
    assert c.get("/h/hash").status_code == 400  # url is required
    r = c.get("/h/hash", params={"url": "https://example.com/x.jpg"})
    assert r.status_code == 403 and r.json()["code"] == "url_fetch_disabled"


def test_signal_and_content_types(c: httpx.Client) -> None:
    st = c.get("/c/signal_type").json()
    assert {"name": "pdq", "enabled_ratio": 1.0} in st
    ct = c.get("/c/content_type").json()
    assert {"name": "photo", "enabled": True} in ct and {x["name"] for x in ct} == {
        "photo",
        "video",
    }


def test_video(c: httpx.Client) -> None:
    """POST /h/hash with a field named ``video``; list it and look it up by upload."""
    pytest.importorskip("vpdq")
    video = TE_DATA / "sample-videos" / "chair-19-sd-bar.mp4"
    files = {"video": (video.name, video.read_bytes(), "video/mp4")}
    r = c.post("/h/hash", files=files)
    assert r.status_code == 200 and set(r.json()) == {"vpdq", "video_md5"}
    hashed = r.json()
    c.post("/c/banks", json={"name": "VIDEOS"})
    r = c.post("/c/bank/VIDEOS/content", files=files)
    assert r.status_code == 200 and r.json()["signals"] == hashed
    r = c.post("/m/lookup", files=files)
    assert set(r.json()) == {"vpdq", "video_md5"}
    assert "VIDEOS" in r.json()["vpdq"] and "VIDEOS" in r.json()["video_md5"]
    photo_as_video = {"video": (REF.name, REF.read_bytes(), "image/jpeg")}
    assert c.post("/h/hash", files=photo_as_video).status_code == 400
