"""A bounded schemathesis run against the live app's OpenAPI schema: no request the schema
describes — valid (positive) or schema-violating (negative) — may get a 5xx.

The app runs on uvicorn (tests/api_live.py) over SQLite with an admin key without a rate limit.
Every operation gets ``MAX_EXAMPLES`` positive and ``MAX_EXAMPLES`` negative cases, and the
operations with a ``{name}`` path parameter another ``MAX_EXAMPLES`` positive cases aimed at a real
bank (``FUZZ``, with entries), so that they get past the 404. Hypothesis runs derandomized (fixed
seed, no example database): the same cases every run. Each case is checked with schemathesis'
``not_a_server_error``; failures are collected (not shrunk) and reported together with a curl
command that replays them. About 20-40 s on the 2-core machine.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from api_live import Live, live_server
from lifeguard.settings import Settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

MAX_EXAMPLES = 8
BANK = "FUZZ"
LISTED = ["f" * 16 + "0" * 48, "0" * 16 + "f" * 48]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    s = Settings(data_dir=tmp_path_factory.mktemp("schemathesis") / "data")
    with live_server(s) as lv:
        yield lv


def _run(
    op: Any,
    mode: GenerationMode,
    session: requests.Session,
    base_url: str,
    failures: list[str],
    statuses: Counter[int] | None = None,
    **strategy_kw: Any,
) -> int:
    strategy = op.as_strategy(generation_mode=mode, **strategy_kw)
    n = [0]

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        n[0] += 1
        try:
            r = case.call_and_validate(
                base_url=base_url, session=session, checks=[not_a_server_error], timeout=30
            )
            if statuses is not None:
                statuses[r.status_code] += 1
        except (Exception, BaseExceptionGroup) as e:  # collected: one does not hide the others
            cmd = case.as_curl_command(headers=dict(session.headers))
            failures.append(f"{op.method.upper()} {op.path} ({mode}): {e}\n  {cmd}")

    with contextlib.suppress(Unsatisfiable):  # e.g. no negative case without inputs
        check()
    return n[0]


def test_no_server_errors(live: Live) -> None:
    token = live.key("admin", rate=0)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    with live.client(token) as c:
        assert c.post("/v1/banks", json={"name": BANK}).status_code == 201
        for h in LISTED:
            r = c.post(f"/v1/banks/{BANK}/entries", json={"signal_type": "pdq", "value": h})
            assert r.status_code == 201, r.text
        schema_doc = c.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(schema_doc)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    counts: dict[str, int] = {}
    t0 = time.monotonic()
    for result in schema.get_all_operations():
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"
        n = 0
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            n += _run(op, mode, session, live.base_url, failures, statuses)
        if "{name}" in op.path:
            n += _run(
                op,
                GenerationMode.POSITIVE,
                session,
                live.base_url,
                failures,
                statuses,
                path_parameters={"name": BANK},
            )
        counts[label] = n
    elapsed = time.monotonic() - t0
    # The run covered the API (not a silently empty schema) ...
    assert len(counts) >= 40, counts
    assert sum(counts.values()) >= 40 * MAX_EXAMPLES, counts
    print(
        f"schemathesis: {sum(counts.values())} cases, {len(counts)} operations, "
        f"{elapsed:.1f}s, statuses {sorted(statuses.items())}"
    )
    # The admin key got through: many 2xx answers, never 401 or 429 (403s are the API's own
    # refusals, e.g. URL fetching disabled or an HMA bank name taken).
    assert sum(n for code, n in statuses.items() if 200 <= code < 300) >= 100, statuses
    assert statuses[401] + statuses[429] == 0, statuses
    # ... the server is still answering, and nothing was a 5xx.
    assert requests.get(live.base_url + "/healthz", timeout=10).status_code == 200
    assert not failures, "\n".join(failures[:20])


def test_collector_sees_a_server_error() -> None:
    """The check itself: a 500 answer is reported (so a green run means something)."""
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/boom": {"get": {"responses": {"200": {"description": "ok"}}}},
        },
    }
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        schema = schemathesis.openapi.from_dict(doc)
        op = next(iter(schema.get_all_operations())).ok()
        failures: list[str] = []
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        n = _run(op, GenerationMode.POSITIVE, requests.Session(), base, failures)
        assert n >= 1 and len(failures) == n
        assert "GET /boom" in failures[0]
    finally:
        srv.shutdown()
        th.join()
