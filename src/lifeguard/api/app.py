"""``create_app(settings)``: the FastAPI application.

The database is opened (and migrated) when the app starts; the matcher's index loads in a
background thread, so ``/healthz`` answers at once and ``/readyz`` turns 200 when the index is
ready (match endpoints answer 503 ``index_not_ready`` until then).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.formparsers import MultiPartParser

from lifeguard import __version__ as _version
from lifeguard.api import problems
from lifeguard.api.config import ApiSettings
from lifeguard.api.fastlane import FastLane
from lifeguard.api.keys import KeyStore
from lifeguard.api.metrics import Metrics, MetricsMiddleware
from lifeguard.api.ratelimit import RateLimiter
from lifeguard.api.routes_e2ee import e2ee
from lifeguard.api.routes_hma import hma
from lifeguard.api.routes_private_matching import pm as private_matching
from lifeguard.api.routes_review import review_router
from lifeguard.api.routes_safety import safety as safety_conversation
from lifeguard.api.routes_safety_nudity import safety as safety_nudity
from lifeguard.api.routes_safety_rules import close_engine as close_safety_engine
from lifeguard.api.routes_safety_rules import safety_rules
from lifeguard.api.routes_v1 import root, v1
from lifeguard.api.state import AppState, default_hash_threads
from lifeguard.banks import Banks
from lifeguard.matching import Matcher
from lifeguard.settings import Settings, get_settings
from lifeguard.store.db import Database

log = logging.getLogger("lifeguard.api")

DESCRIPTION = """\
lifeguard's HTTP API: hash media, match it against hash banks, curate the banks.

* `/v1/...` — lifeguard's own API (errors are RFC 9457 problem documents).
* `/h`, `/m`, `/c`, `/status` — compatible with Meta's HMA 1.1 (OpenMediaMatch) shapes.

Every route except health checks needs an API key with the scope named in `x-required-scope`:
`Authorization: Bearer <key>` or `X-API-Key: <key>`. The `admin` scope grants all others.
"""


def create_app(settings: Settings | None = None, api: ApiSettings | None = None) -> FastAPI:
    """The application. ``settings``/``api`` default to the environment (``LIFEGUARD_*``)."""
    settings = settings or get_settings()
    api = api or ApiSettings()
    holder: dict[str, Any] = {}

    def read_index() -> dict[str, Any]:
        st: AppState | None = holder.get("state")
        if st is None:
            return {"ready": False, "revision": 0, "sizes": {}}
        return st.index_status()

    metrics = Metrics(read_index)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await anyio.to_thread.run_sync(Database.open, settings)
        st = AppState(
            settings=settings,
            api=api,
            db=db,
            banks=Banks(db),
            matcher=Matcher(db, settings),
            keys=KeyStore(db, cache_ttl_s=api.key_cache_ttl_s),
            limiter=RateLimiter(),
            metrics=metrics,
            hash_limiter=anyio.CapacityLimiter(default_hash_threads(api)),
        )
        app.state.lg = st
        holder["state"] = st
        if api.matcher_load_in_background:
            threading.Thread(
                target=st.load_matcher, name="lifeguard-index-load", daemon=True
            ).start()
        else:
            await anyio.to_thread.run_sync(st.load_matcher)
        try:
            yield
        finally:
            holder.pop("state", None)
            close_safety_engine(app)
            st.close()

    # Uploads stay in memory up to the media size limit (they are hashed and dropped, never
    # written to a temporary file).
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, settings.max_file_bytes)

    app = FastAPI(
        title="lifeguard",
        version=_version,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.include_router(root)
    app.include_router(v1)
    app.include_router(review_router)
    app.include_router(hma)
    app.include_router(e2ee)
    app.include_router(private_matching)
    app.include_router(safety_nudity)
    app.include_router(safety_rules)
    app.include_router(safety_conversation)
    problems.install(app)
    from lifeguard.review.web.routes import mount as mount_review_ui

    mount_review_ui(app)  # /review: the reviewer web UI (HTML; not in the OpenAPI schema)
    app.add_middleware(FastLane)  # inside the metrics middleware: fast answers are counted
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.api_settings = api
    app.state.settings = settings

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            comps = schema.setdefault("components", {})
            comps["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "lg_<id>_<secret>"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            comps.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
            for path in schema.get("paths", {}).values():
                for op in path.values():
                    resp = op.setdefault("responses", {})
                    resp.setdefault(
                        "default",
                        {
                            "description": "Problem details (RFC 9457)",
                            "content": {
                                "application/problem+json": {
                                    "schema": {"$ref": "#/components/schemas/Problem"}
                                }
                            },
                        },
                    )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string", "description": "urn:lifeguard:problem:<code> or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request path."},
        "code": {"type": "string", "description": "Stable machine-readable code."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "string"},
                    "detail": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
        "message": {"type": "string", "description": "HMA routes only: same as detail."},
    },
    "required": ["type", "title", "status", "detail", "code"],
}
