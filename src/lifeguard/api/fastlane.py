"""The fast lane: hash lookups that miss, answered before routing and validation.

Most hash lookups miss. For ``GET /m/lookup?signal=..&signal_type=..`` and ``POST /v1/match/signals``
this ASGI middleware authenticates the key (the same :func:`~lifeguard.api.routing.authenticate` as
every route, so scopes and rate limits hold), checks the request as strictly as the route would, and
asks the matcher for a result that needs no database (:meth:`Matcher.match_signals_no_db`). When the
answer is "nothing near", it writes the same bytes the route would have; in every other case — a hit,
a malformed hash, an unknown parameter, a failed authentication, a body it cannot take, an index that
is loading or that this process just changed — it hands the request (and any body it read) to the
full application unchanged, which answers as it always does. Turn it off with
``LIFEGUARD_API_FAST_LANE=false``; tests compare both paths byte for byte.

Measured in bench/bench_load.py (docs/benchmarks.md, "Load test (HTTP)").
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifeguard.api.problems import Problem
from lifeguard.api.routing import authenticate
from lifeguard.api.state import AppState, check_content_id

LOOKUP = "/m/lookup"
SIGNALS = "/v1/match/signals"
_LOOKUP_KEYS = frozenset({"signal", "signal_type", "banks", "seed", "bypass_coinflip"})
_BOOLS = frozenset({"true", "false", "1", "0", "yes", "no", "on", "off", "t", "f", "y", "n"})
_ROUTES = {LOOKUP: SimpleNamespace(path=LOOKUP), SIGNALS: SimpleNamespace(path=SIGNALS)}
_JSON_HEADERS = [(b"content-type", b"application/json")]
_MAX_SIGNALS = 1000


def _json_bytes(content: Any) -> bytes:
    """Serialised as FastAPI's JSONResponse does."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _lookup_signals(query_string: bytes) -> list[tuple[str, str]] | None:
    try:
        pairs = parse_qsl(
            query_string.decode("latin-1"), keep_blank_values=True, strict_parsing=True
        )
    except ValueError:
        return None
    seen: dict[str, str] = {}
    for k, v in pairs:
        if k not in _LOOKUP_KEYS or k in seen:
            return None
        seen[k] = v
    if "bypass_coinflip" in seen and seen["bypass_coinflip"].lower() not in _BOOLS:
        return None
    signal, stype = seen.get("signal"), seen.get("signal_type")
    if not signal or not stype:
        return None
    return [(stype, signal)]


def _body_signals(body: bytes) -> tuple[list[tuple[str, str]], str | None] | None:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or not doc.keys() <= {"signals", "content_id"}:
        return None
    sigs = doc.get("signals")
    if not isinstance(sigs, list) or not 1 <= len(sigs) <= _MAX_SIGNALS:
        return None
    out: list[tuple[str, str]] = []
    for s in sigs:
        if not isinstance(s, dict) or s.keys() != {"signal_type", "value"}:
            return None
        t, v = s["signal_type"], s["value"]
        if type(t) is not str or type(v) is not str:
            return None
        out.append((t, v))
    cid = doc.get("content_id")
    if cid is not None and type(cid) is not str:
        return None
    try:
        checked = check_content_id(cid)
    except Problem:
        return None
    return out, checked


def _is_json(scope: Scope) -> bool:
    for k, v in scope["headers"]:
        if k == b"content-type":
            mt = v.split(b";", 1)[0].strip().lower()
            return bool(mt == b"application/json" or mt.endswith(b"+json"))
    return False


class FastLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if not ((path == LOOKUP and method == "GET") or (path == SIGNALS and method == "POST")):
            await self.app(scope, receive, send)
            return
        app = scope.get("app")
        st: AppState | None = getattr(getattr(app, "state", None), "lg", None)
        if (
            st is None
            or not st.api.fast_lane
            or not st.ready.is_set()
            or st.index_dirty
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        if path == LOOKUP:
            await self._lookup(st, scope, receive, send)
        else:
            await self._signals(st, scope, receive, send)

    async def _authorised(self, st: AppState, scope: Scope) -> bool:
        try:
            await authenticate(Request(scope), st, "match")
        except Problem:
            return False  # the full path authenticates again and answers with the problem
        return True

    async def _lookup(self, st: AppState, scope: Scope, receive: Receive, send: Send) -> None:
        signals = _lookup_signals(scope["query_string"])
        if signals is None or not await self._authorised(st, scope):
            await self.app(scope, receive, send)
            return
        r = st.matcher.match_signals_no_db(signals)
        if r is None:
            await self.app(scope, receive, send)
            return
        st.metrics.observe_match(r)
        await _respond(scope, send, b"{}", LOOKUP)

    async def _signals(self, st: AppState, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_json(scope):
            await self.app(scope, receive, send)
            return
        limit = st.api.max_json_bytes
        read: list[Message] = []
        size = 0
        body = b""
        while True:
            msg = await receive()
            read.append(msg)
            if msg["type"] != "http.request":
                break  # a disconnect: let the full path see it
            size += len(msg.get("body", b""))
            if size > limit:
                break
            if not msg.get("more_body", False):
                body = b"".join(m.get("body", b"") for m in read)
                break
        replay = _replay(read, receive)
        if not body:
            await self.app(scope, replay, send)
            return
        parsed = _body_signals(body)
        if parsed is None or not await self._authorised(st, scope):
            await self.app(scope, replay, send)
            return
        signals, cid = parsed
        r = st.matcher.match_signals_no_db(signals)
        if r is None:
            await self.app(scope, replay, send)
            return
        st.metrics.observe_match(r)
        d = r.to_json()
        d["content_id"] = cid
        d["media"] = None
        await _respond(scope, send, _json_bytes(d), SIGNALS)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def _receive() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return _receive


async def _respond(scope: Scope, send: Send, body: bytes, route: str) -> None:
    scope["route"] = _ROUTES[route]  # the metrics middleware labels by route template
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": body})
