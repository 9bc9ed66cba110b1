"""Helpers for the API tests: a real uvicorn server on 127.0.0.1 (a free port, in a thread) and
httpx clients against it. Not a test module (no tests here); imported by tests/test_api_*.py."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import update

from lifeguard.api.app import create_app
from lifeguard.api.config import ApiSettings
from lifeguard.api.keys import SCOPES
from lifeguard.api.models import ApiKey
from lifeguard.api.state import AppState
from lifeguard.settings import Settings


@dataclass
class Live:
    app: FastAPI
    base_url: str
    server: uvicorn.Server

    @property
    def state(self) -> AppState:
        st: AppState = self.app.state.lg
        return st

    def client(
        self, token: str | None = None, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Client:
        h = {"Authorization": f"Bearer {token}"} if token else {}
        h.update(headers or {})
        return httpx.Client(base_url=self.base_url, headers=h, timeout=30, **kw)

    def key(self, *scopes: str, rate: float | None = None) -> str:
        _, token = self.state.keys.create("test", scopes or SCOPES, rate_limit_per_s=rate)
        return token

    def expired_key(self, *scopes: str) -> str:
        info, token = self.state.keys.create("expired", scopes or SCOPES)
        with self.state.db.session() as s:
            s.execute(
                update(ApiKey)
                .where(ApiKey.id == info.id)
                .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
            )
        return token

    def revoked_key(self, *scopes: str) -> str:
        info, token = self.state.keys.create("revoked", scopes or SCOPES)
        self.state.keys.revoke(info.id)
        return token

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if httpx.get(self.base_url + "/readyz").status_code == 200:
                return
            time.sleep(0.02)
        raise TimeoutError("index did not load")


@contextmanager
def live_server(
    settings: Settings, api: ApiSettings | None = None, *, wait_ready: bool = True
) -> Iterator[Live]:
    app = create_app(settings, api or ApiSettings())
    # uvicorn binds port 0 itself (its own listening path sets TCP_NODELAY on connections; a
    # pre-bound socket passed in would not, costing ~40 ms of delayed ACK per request).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not t.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    live = Live(app=app, base_url=f"http://127.0.0.1:{port}", server=server)
    try:
        if wait_ready:
            live.wait_ready()
        yield live
    finally:
        server.should_exit = True
        t.join(timeout=30)
