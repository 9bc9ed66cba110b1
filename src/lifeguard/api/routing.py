"""Every route says which scope it needs (``@scoped("bank:read")``) or that it is public
(``@public``); :class:`GuardedRoute` refuses to register a route that says neither.

Before FastAPI reads a body, a guarded route authenticates the key (401/403), applies the key's
rate limit (429), checks the media type (415) and the size — the ``Content-Length`` at once, and a
streamed body as it arrives (413 as soon as it passes the limit, without reading the rest)."""

from __future__ import annotations

import email.message
import math
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from fastapi import HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.params import Form
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from lifeguard.api.keys import InvalidKey, KeyInfo
from lifeguard.api.problems import Problem, internal_error_response
from lifeguard.api.state import AppState
from lifeguard.errors import LifeguardError

BodyKind = Literal["none", "json", "multipart", "import", "hma_content"]
F = TypeVar("F", bound=Callable[..., Any])
SCOPE_ATTR = "__lifeguard_scope__"
PUBLIC_ATTR = "__lifeguard_public__"
BODY_ATTR = "__lifeguard_body__"
MULTIPART_OVERHEAD = 1024 * 1024
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def scoped(scope: str, *, body: BodyKind | None = None) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        setattr(fn, SCOPE_ATTR, scope)
        if body is not None:
            setattr(fn, BODY_ATTR, body)
        return fn

    return deco


def public(fn: F) -> F:
    setattr(fn, PUBLIC_ATTR, True)
    return fn


class PayloadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit of {limit:,} bytes")


def _media_type(request: Request) -> str:
    ct = request.headers.get("content-type")
    if not ct:
        return ""
    m = email.message.Message()
    m["content-type"] = ct
    return m.get_content_type()


def _has_body(request: Request) -> bool:
    cl = request.headers.get("content-length")
    if cl is not None:
        return cl.strip() != "0"
    return "transfer-encoding" in request.headers


IMPORT_TYPES = (
    "text/plain",
    "text/csv",
    "text/tab-separated-values",
    "application/json",
    "application/x-ndjson",
    "application/jsonl",
    "application/jsonlines",
    "application/octet-stream",
)


def _limited_receive(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def _receive() -> Message:
        nonlocal seen
        msg = await receive()
        if msg["type"] == "http.request":
            seen += len(msg.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(limit)
        return msg

    return _receive


async def authenticate(request: Request, st: AppState, scope: str) -> KeyInfo:
    auth = request.headers.get("authorization")
    token: str | None = None
    if auth:
        kind, _, value = auth.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            raise Problem(
                401,
                "malformed_key",
                "Authorization header must read 'Bearer <API key>'",
                headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
            )
        token = value.strip()
    else:
        token = request.headers.get("x-api-key")
    if not token:
        raise Problem(
            401,
            "missing_key",
            "an API key is required (Authorization: Bearer <key> or X-API-Key)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        # A key verified within the cache TTL is checked here, on the event loop; only a cache
        # miss reads the database, in a worker thread.
        key = st.keys.verify_cached(token)
        if key is None:
            key = await run_in_threadpool(st.keys.verify, token)
    except InvalidKey as e:
        raise Problem(
            401, e.code, e.message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    if not key.allows(scope):
        raise Problem(
            403,
            "insufficient_scope",
            f"this API key lacks the {scope!r} scope (it has: {', '.join(key.scopes)})",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope" scope="{scope}"'},
            required_scope=scope,
        )
    rate = key.rate_limit_per_s if key.rate_limit_per_s is not None else st.api.rate_limit_per_s
    wait = st.limiter.take(key.id, rate, max(st.api.rate_limit_burst, rate))
    if wait > 0:
        raise Problem(
            429,
            "rate_limited",
            f"rate limit of {rate:g} requests/s for this key exceeded; retry in {wait:.2f}s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return key


class GuardedRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.required_scope: str | None = getattr(endpoint, SCOPE_ATTR, None)
        self.public: bool = bool(getattr(endpoint, PUBLIC_ATTR, False))
        if self.required_scope is None and not self.public:
            raise RuntimeError(
                f"route {path} ({endpoint.__name__}) declares neither a scope nor @public"
            )
        kind: BodyKind | None = getattr(endpoint, BODY_ATTR, None)
        if kind is None:
            if self.body_field is None:
                kind = "none"
            elif isinstance(self.body_field.field_info, Form):
                kind = "multipart"
            else:
                kind = "json"
        self.body_kind: BodyKind = kind
        if self.required_scope is not None:
            extra = dict(self.openapi_extra or {})
            extra.setdefault("security", SECURITY)
            extra["x-required-scope"] = self.required_scope
            self.openapi_extra = extra

    def _limit(self, st: AppState) -> int:
        k = self.body_kind
        if k == "multipart" or k == "hma_content":
            files = st.api.max_batch_files if self.path.endswith("/batch") else 1
            return files * st.settings.max_file_bytes + MULTIPART_OVERHEAD
        if k == "import":
            return st.api.max_import_bytes
        return st.api.max_json_bytes

    def _check_type(self, request: Request) -> None:
        if not _has_body(request):
            return
        mt = _media_type(request)
        k = self.body_kind
        ok: bool
        want: str
        if k == "json":
            ok = mt == "application/json" or mt.endswith("+json")
            want = "application/json"
        elif k == "multipart":
            ok = mt == "multipart/form-data"
            want = "multipart/form-data"
        elif k == "import":
            ok = mt == "multipart/form-data" or mt in IMPORT_TYPES or mt.startswith("text/")
            want = "multipart/form-data, text/* or application/(x-ndjson|json|octet-stream)"
        elif k == "hma_content":
            ok = mt in ("multipart/form-data", "application/json", "")
            want = "multipart/form-data or application/json"
        else:
            return
        if not ok:
            raise Problem(
                415,
                "unsupported_media_type",
                f"Content-Type {mt or '(none)'!r} is not accepted here; send {want}",
            )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        route = self

        async def guarded(request: Request) -> Response:
            st: AppState = request.app.state.lg
            if route.required_scope is not None:
                request.state.key = await authenticate(request, st, route.required_scope)
            else:
                request.state.key = None
            if route.body_kind != "none":
                route._check_type(request)
                limit = route._limit(st)
                cl = request.headers.get("content-length")
                if cl is not None and cl.strip().isdigit() and int(cl) > limit:
                    raise PayloadTooLarge(limit)
                request._receive = _limited_receive(request._receive, limit)
            try:
                return await handler(request)
            except (Problem, LifeguardError, StarletteHTTPException, RequestValidationError):
                raise
            except Exception as exc:
                # Answer here rather than in Starlette's ServerErrorMiddleware, which re-raises
                # and makes the server drop the (keep-alive) connection.
                return internal_error_response(request, exc)
            finally:
                if route.required_scope == "bank:write":
                    st.index_dirty = True

        return guarded


def route_table(routes: Any) -> list[tuple[str, str, str | None, GuardedRoute | None]]:
    """``(method, path, scope, route)`` for every route of an app (``app.routes``), following
    included routers. ``route`` is None for routes that are not guarded (FastAPI's docs)."""
    from fastapi.routing import iter_route_contexts

    out: list[tuple[str, str, str | None, GuardedRoute | None]] = []
    for ctx in iter_route_contexts(routes):
        r = ctx.original_route
        path = str(getattr(ctx, "path", "") or getattr(r, "path", ""))
        methods = sorted(getattr(r, "methods", None) or ())
        for m in methods:
            if isinstance(r, GuardedRoute):
                out.append((m, path, r.required_scope, r))
            else:
                out.append((m, path, None, None))
    return out
