"""What the app holds while it runs: database, banks, matcher (loaded in the background), keys."""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import Request

from lifeguard.api.config import ApiSettings
from lifeguard.api.keys import KeyStore
from lifeguard.api.metrics import Metrics
from lifeguard.api.problems import Problem
from lifeguard.api.ratelimit import RateLimiter
from lifeguard.banks import Banks
from lifeguard.matching import Matcher, MatchResult
from lifeguard.settings import Settings
from lifeguard.signals.hasher import MediaHashes
from lifeguard.store.db import Database

log = logging.getLogger("lifeguard.api")


@dataclass
class AppState:
    settings: Settings
    api: ApiSettings
    db: Database
    banks: Banks
    matcher: Matcher
    keys: KeyStore
    limiter: RateLimiter
    metrics: Metrics
    hash_limiter: anyio.CapacityLimiter
    ready: threading.Event = field(default_factory=threading.Event)
    load_error: str | None = None
    started_at: float = field(default_factory=time.time)
    loaded_at: float | None = None
    #: Set after a bank write through this process: the next query syncs the index first, so a
    #: client sees its own changes at once (other processes' changes within the sync interval).
    index_dirty: bool = False

    def load_matcher(self) -> None:
        try:
            self.matcher.load()
            # Fresh while idle too: LISTEN/NOTIFY on PostgreSQL, a poll thread on SQLite.
            self.matcher.start_background_sync(listen=self.api.index_listen)
            self.loaded_at = time.time()
            self.ready.set()
            log.info("index loaded at revision %d", self.matcher.revision)
        except Exception as e:  # reported by /readyz; the service stays up
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("index load failed", exc_info=True)

    def require_ready(self) -> Matcher:
        if not self.ready.is_set():
            why = (
                f"index failed to load ({self.load_error})"
                if self.load_error
                else "index is loading"
            )
            raise Problem(503, "index_not_ready", why, headers={"Retry-After": "2"})
        return self.matcher

    def fresh(self) -> Matcher:
        """The ready matcher, synced first if this process changed a bank (call from a worker
        thread: it may read the database)."""
        m = self.require_ready()
        if self.index_dirty:
            self.index_dirty = False
            m.sync(force=True)
        return m

    def index_status(self) -> dict[str, Any]:
        m = self.matcher
        sizes = {name: len(getattr(m, name)) for name in ("pdq", "md5", "sha256", "vpdq_frames")}
        bg = m.background
        return {
            "ready": self.ready.is_set(),
            "revision": m.revision,
            "sizes": sizes,
            "load_error": self.load_error,
            "loaded_at": self.loaded_at,
            "sync_mode": bg.stats.mode if bg is not None else "request",
            "sync_notifications": bg.stats.notifications if bg is not None else 0,
        }

    def close(self) -> None:
        self.matcher.stop()
        self.keys.close()
        self.banks.close()
        self.db.dispose()


def check_content_id(content_id: str | None) -> str | None:
    """The platform's id for the content: None (also for an empty form field), or 1..256
    characters without control characters (the rule of ``lifeguard.actions``)."""
    if content_id is None or content_id == "":
        return None
    if len(content_id) > 256:
        raise Problem(
            422, "invalid_field", f"content_id: {len(content_id)} characters, at most 256"
        )
    bad = next((c for c in content_id if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise Problem(422, "invalid_field", f"content_id: contains the control character {bad!r}")
    return content_id


def get_state(request: Request) -> AppState:
    st: AppState = request.app.state.lg
    return st


def default_hash_threads(api: ApiSettings) -> int:
    return api.hash_threads or max(1, os.cpu_count() or 1)


def record_match(
    st: AppState, result: MatchResult, content_id: str | None, media: MediaHashes | None
) -> None:
    """Metrics, then ``lifeguard.actions.record_match`` when that module exists and the result has
    standing or allow-list-suppressed matches. A failing hook is logged, never turned into a failed
    match request."""
    st.metrics.observe_match(result)
    if not result.matches and not result.suppressed:
        return
    try:
        actions = importlib.import_module("lifeguard.actions")
    except ImportError:
        return
    hook = getattr(actions, "record_match", None)
    if hook is None:
        return
    try:
        hook(st.db, result, content_id, media)
    except Exception:
        log.error("lifeguard.actions.record_match failed", exc_info=True)
