"""The fast lane (lifeguard.api.fastlane) answers lookups that miss before routing; every answer must
be byte for byte what the full path gives, and everything it cannot answer must reach the full path."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api_live import Live, live_server
from lifeguard.settings import Settings

LISTED = "f" * 16 + "0" * 48
LISTED_MD5 = "0" * 31 + "1"


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with live_server(settings) as lv:
        yield lv


def _rand_pdq(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(64))


class Spy:
    """Counts the matcher's full-path calls (the fast lane uses ``match_signals_no_db`` only)."""

    def __init__(self, live: Live) -> None:
        self.full = 0
        m = live.state.matcher
        orig = m.match_signals

        def wrapped(*a: Any, **kw: Any) -> Any:
            self.full += 1
            return orig(*a, **kw)

        m.match_signals = wrapped  # type: ignore[method-assign]


def _both(live: Live, c: httpx.Client, method: str, url: str, **kw: Any) -> httpx.Response:
    """The request with the fast lane on and off: same status, body and content type."""
    live.state.api.fast_lane = True
    a = c.request(method, url, **kw)
    live.state.api.fast_lane = False
    try:
        b = c.request(method, url, **kw)
    finally:
        live.state.api.fast_lane = True
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.headers.get("content-type") == b.headers.get("content-type")
    if a.headers.get("content-type", "").startswith("application/json"):
        assert a.content == b.content
    else:  # problem documents: the same document
        assert a.json() == b.json()
    return a


def test_fast_lane_answers_misses_like_the_full_path(live: Live) -> None:
    token = live.key("match", "bank:write")
    rng = random.Random(7)
    with live.client(token) as c:
        assert c.post("/c/banks", json={"name": "FAST_BANK"}).status_code == 201
        assert c.post("/c/bank/FAST_BANK/signal", json={"pdq": LISTED}).status_code == 200
        assert c.post("/c/bank/FAST_BANK/signal", json={"md5": LISTED_MD5}).status_code == 200
        c.get("/m/lookup", params={"signal": LISTED, "signal_type": "pdq"})  # sync after writes
        spy = Spy(live)

        # misses: answered by the fast lane (no full-path match), identical bytes
        miss = _rand_pdq(rng)
        r = _both(live, c, "GET", "/m/lookup", params={"signal": miss, "signal_type": "pdq"})
        assert r.json() == {}
        assert spy.full == 1  # only the fast-lane-off request took the full path
        body = {"signals": [{"signal_type": "pdq", "value": miss}], "content_id": "msg-1"}
        r = _both(live, c, "POST", "/v1/match/signals", json=body)
        assert r.json()["matched"] is False and r.json()["content_id"] == "msg-1"
        assert spy.full == 2
        md5 = {"signals": [{"signal_type": "md5", "value": "a" * 32}]}
        _both(live, c, "POST", "/v1/match/signals", json=md5)
        assert spy.full == 3
        _both(
            live,
            c,
            "GET",
            "/m/lookup",
            params={"signal": miss, "signal_type": "pdq", "banks": "X", "bypass_coinflip": "true"},
        )
        assert spy.full == 4

        # everything else: the full path (both requests), same answers
        cases: list[tuple[str, str, dict[str, Any], int]] = [
            ("GET", "/m/lookup", {"params": {"signal": LISTED, "signal_type": "pdq"}}, 200),
            ("GET", "/m/lookup", {"params": {"signal": "xyz", "signal_type": "pdq"}}, 400),
            ("GET", "/m/lookup", {"params": {"signal": miss, "signal_type": "nope"}}, 400),
            ("GET", "/m/lookup", {"params": {"signal": miss, "signal_type": "pdq", "x": "1"}}, 200),
            (
                "GET",
                "/m/lookup",
                {"params": {"signal": miss, "signal_type": "pdq", "bypass_coinflip": "maybe"}},
                400,
            ),
            ("GET", "/m/lookup", {"params": {"signal_type": "pdq"}}, 400),
            (
                "POST",
                "/v1/match/signals",
                {"json": {"signals": [{"signal_type": "pdq", "value": LISTED}]}},
                200,
            ),
            (
                "POST",
                "/v1/match/signals",
                {"json": {"signals": [{"signal_type": "md5", "value": LISTED_MD5}]}},
                200,
            ),
            ("POST", "/v1/match/signals", {"json": {"signals": []}}, 422),
            (
                "POST",
                "/v1/match/signals",
                {"json": {"signals": [{"signal_type": "pdq", "value": miss, "x": 1}]}},
                422,
            ),
            (
                "POST",
                "/v1/match/signals",
                {"json": {"signals": [{"signal_type": "pdq", "value": 5}]}},
                422,
            ),
            (
                "POST",
                "/v1/match/signals",
                {"json": {"signals": [{"signal_type": "pdq", "value": "00"}]}},
                422,
            ),
            (
                "POST",
                "/v1/match/signals",
                {
                    "json": {
                        "signals": [{"signal_type": "pdq", "value": miss}],
                        "content_id": "x" * 300,
                    }
                },
                422,
            ),
            (
                "POST",
                "/v1/match/signals",
                {"content": b"{not json", "headers": {"content-type": "application/json"}},
                400,
            ),
            (
                "POST",
                "/v1/match/signals",
                {"content": b"signals=1", "headers": {"content-type": "text/plain"}},
                415,
            ),
        ]
        for method, url, kw, status in cases:
            before = spy.full
            r = _both(live, c, method, url, **kw)
            assert r.status_code == status, (url, kw, r.text)
            if status == 200:
                assert spy.full == before + 2, (url, kw)  # both requests took the full path

        hit = c.get("/m/lookup", params={"signal": LISTED, "signal_type": "pdq"}).json()
        assert list(hit) == ["FAST_BANK"]

    # authentication failures: the full path's answers
    with live.client() as anon:
        _both(live, anon, "GET", "/m/lookup", params={"signal": miss, "signal_type": "pdq"})
    with live.client(live.key("hash")) as wrong_scope:
        r = _both(
            live, wrong_scope, "GET", "/m/lookup", params={"signal": miss, "signal_type": "pdq"}
        )
        assert r.status_code == 403
    with live.client("lg_bad_token") as bad:
        r = _both(live, bad, "POST", "/v1/match/signals", json=body)
        assert r.status_code == 401


def test_fast_lane_sees_writes_at_once_and_counts_metrics(live: Live) -> None:
    token = live.key("match", "bank:write", "admin")
    rng = random.Random(11)
    fresh = _rand_pdq(rng)
    with live.client(token) as c:
        assert c.post("/c/banks", json={"name": "FRESH"}).status_code == 201
        for _ in range(3):
            r = c.get("/m/lookup", params={"signal": fresh, "signal_type": "pdq"})
            assert r.json() == {}
        # a write through this process: the very next lookup must see it (read your writes)
        r = c.post("/c/bank/FRESH/signal", json={"pdq": fresh})
        assert r.status_code == 200
        r = c.get("/m/lookup", params={"signal": fresh, "signal_type": "pdq"})
        assert list(r.json()) == ["FRESH"]
        r = c.post("/v1/match/signals", json={"signals": [{"signal_type": "pdq", "value": fresh}]})
        assert r.json()["matched"] is True
        text = c.get("/metrics").text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("lifeguard_http_requests_total")
        and 'route="/m/lookup"' in ln
        and 'status="200"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 4
    assert 'lifeguard_match_requests_total{outcome="no_match"}' in text
