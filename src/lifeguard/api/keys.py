"""API keys: create (the secret is returned once), verify, list, revoke.

A token reads ``lg_<key id>_<secret>``: the key id (16 hex characters) finds the row, the secret
(32 random bytes, URL-safe base64) is checked against its stored SHA-256 digest with
:func:`hmac.compare_digest`. A 256-bit random secret needs no slow password hash: it cannot be
guessed, and a leaked digest does not give the token back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.orm import Session

from lifeguard.api.models import ApiKey
from lifeguard.errors import LifeguardError, NotFound
from lifeguard.store.db import Database
from lifeguard.store.models import utcnow

log = logging.getLogger(__name__)

#: ``frank``: stamp franking commitments and submit verified E2EE reports (the platform's relay);
#: ``takedown``: submit/check/withdraw take-it-down hashes (a client app; grants nothing else).
SCOPES: Final = (
    "hash",
    "match",
    "bank:read",
    "bank:write",
    "admin",
    "frank",
    "takedown",
    "report",
    "review",
)
TOKEN_PREFIX: Final = "lg_"
_TOKEN_RE = re.compile(r"^lg_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
#: ``last_used_at`` is written at most this often per key (not on every request).
LAST_USED_RESOLUTION_S: Final = 60.0


class InvalidKey(LifeguardError):
    """The token is missing, malformed, unknown, revoked or expired (``code`` says which)."""

    code = "invalid_key"


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    rate_limit_per_s: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > dt.datetime.now(dt.UTC)
        )

    def allows(self, scope: str) -> bool:
        """``admin`` grants every scope."""
        return scope in self.scopes or "admin" in self.scopes

    def to_json(self) -> dict[str, object]:
        def iso(t: dt.datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "last_used_at": iso(self.last_used_at),
            "rate_limit_per_s": self.rate_limit_per_s,
            "active": self.active,
        }


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _info(k: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=k.id,
        name=k.name,
        scopes=tuple(k.scopes or ()),
        created_at=_aware(k.created_at) or utcnow(),
        created_by=k.created_by,
        expires_at=_aware(k.expires_at),
        revoked_at=_aware(k.revoked_at),
        last_used_at=_aware(k.last_used_at),
        rate_limit_per_s=k.rate_limit_per_s,
    )


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    out: list[str] = []
    for s in scopes:
        s = s.strip()
        if s not in SCOPES:
            raise ValueError(f"unknown scope {s!r} (known: {', '.join(SCOPES)})")
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError(f"at least one scope is needed (known: {', '.join(SCOPES)})")
    return out


def read_engine(db: Database) -> Engine | None:
    """SQLite: an autocommit engine, so verifying a key never waits for a writer's lock (the
    ``Database`` engine begins every transaction with ``BEGIN IMMEDIATE``)."""
    if db.dialect != "sqlite" or db.engine.url.database in (None, "", ":memory:"):
        return None
    eng = create_engine(db.engine.url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(eng, "connect")
    def _autocommit(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    return eng


class KeyStore:
    """API keys in the database. ``verify`` caches a key for ``cache_ttl_s`` seconds, so a key
    revoked by another process stops working within that time (at once in this process)."""

    def __init__(self, db: Database, *, cache_ttl_s: float = 2.0) -> None:
        self.db = db
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, str, KeyInfo]] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()
        self._reader = read_engine(db)
        self._touch_q: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._toucher: threading.Thread | None = None

    def close(self) -> None:
        if self._toucher is not None:
            self._touch_q.put(None)
            self._toucher.join(timeout=5)
            self._toucher = None
        if self._reader is not None:
            self._reader.dispose()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reads that never takes SQLite's write lock (plain session elsewhere)."""
        with self._read() as s:
            yield s

    @contextmanager
    def _read(self) -> Iterator[Session]:
        if self._reader is None:
            with self.db.session() as s:
                yield s
        else:
            with Session(self._reader) as s:
                yield s

    def create(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        expires_at: dt.datetime | None = None,
        created_by: str = "",
        rate_limit_per_s: float | None = None,
    ) -> tuple[KeyInfo, str]:
        """A new key and its token (shown once; only its digest is stored)."""
        sc = validate_scopes(scopes)
        if expires_at is not None:
            expires_at = _aware(expires_at)
            if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
                raise ValueError("expiry is in the past")
        if rate_limit_per_s is not None and rate_limit_per_s < 0:
            raise ValueError("rate limit must be >= 0")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        row = ApiKey(
            id=key_id,
            name=name[:256],
            secret_sha256=digest(secret),
            scopes=sc,
            created_at=utcnow(),
            created_by=created_by[:256],
            expires_at=expires_at,
            rate_limit_per_s=rate_limit_per_s,
        )
        with self.db.session() as s:
            s.add(row)
            s.flush()
            info = _info(row)
        return info, f"{TOKEN_PREFIX}{key_id}_{secret}"

    def list(self) -> list[KeyInfo]:
        with self._read() as s:
            return [
                _info(k) for k in s.execute(select(ApiKey).order_by(ApiKey.created_at)).scalars()
            ]

    def get(self, key_id: str) -> KeyInfo:
        with self._read() as s:
            k = s.get(ApiKey, key_id)
            if k is None:
                raise NotFound(f"API key {key_id!r} not found")
            return _info(k)

    def revoke(self, key_id: str) -> KeyInfo:
        with self.db.session() as s:
            k = s.get(ApiKey, key_id)
            if k is None:
                raise NotFound(f"API key {key_id!r} not found")
            if k.revoked_at is None:
                k.revoked_at = utcnow()
                s.flush()
            info = _info(k)
        with self._lock:
            self._cache.pop(key_id, None)
        return info

    def verify(self, token: str) -> KeyInfo:
        """The key a token belongs to, or :class:`InvalidKey` saying why not. May read the
        database (call from a worker thread)."""
        key_id, secret = self._parse(token)
        hit = self._cached(key_id)
        if hit is None:
            with self._read() as s:
                k = s.get(ApiKey, key_id)
                stored = k.secret_sha256 if k is not None else ""
                info_or_none = _info(k) if k is not None else None
            if info_or_none is None:
                # Compare anyway, so timing does not tell unknown ids from wrong secrets.
                hmac.compare_digest("0" * 64, digest(secret))
                raise InvalidKey("unknown API key", code="unknown_key")
            hit = (stored, info_or_none)
            with self._lock:
                self._cache[key_id] = (time.monotonic(), stored, info_or_none)
        return self._check(key_id, secret, *hit)

    def verify_cached(self, token: str) -> KeyInfo | None:
        """:meth:`verify` without touching the database: the key when this process verified it
        within ``cache_ttl_s`` (checked the same way), None when the database must be asked.
        Cheap enough to call on the event loop."""
        key_id, secret = self._parse(token)
        hit = self._cached(key_id)
        return None if hit is None else self._check(key_id, secret, *hit)

    @staticmethod
    def _parse(token: str) -> tuple[str, str]:
        m = _TOKEN_RE.match(token.strip())
        if m is None:
            raise InvalidKey("malformed API key", code="malformed_key")
        key_id, secret = m.groups()
        return key_id, secret

    def _cached(self, key_id: str) -> tuple[str, KeyInfo] | None:
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and time.monotonic() - cached[0] < self.cache_ttl_s:
            return cached[1], cached[2]
        return None

    def _check(self, key_id: str, secret: str, stored: str, info: KeyInfo) -> KeyInfo:
        if not hmac.compare_digest(stored, digest(secret)):
            raise InvalidKey("unknown API key", code="unknown_key")
        if info.revoked_at is not None:
            raise InvalidKey("API key revoked", code="revoked_key")
        if info.expires_at is not None and info.expires_at <= dt.datetime.now(dt.UTC):
            raise InvalidKey("API key expired", code="expired_key")
        self._touch(key_id)
        return info

    def _touch(self, key_id: str) -> None:
        """Record ``last_used_at`` (at most once a minute per key) from a background thread, so
        a request never waits for the database's write lock."""
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < LAST_USED_RESOLUTION_S:
                return
            self._touched[key_id] = now
            if self._toucher is None:
                self._toucher = threading.Thread(
                    target=self._touch_loop, name="lifeguard-key-touch", daemon=True
                )
                self._toucher.start()
        self._touch_q.put(key_id)

    def _touch_loop(self) -> None:
        while True:
            key_id = self._touch_q.get()
            if key_id is None:
                return
            try:
                with self.db.session() as s:
                    s.execute(
                        update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow())
                    )
            except Exception:  # best effort: a busy database must not fail requests
                log.warning("could not record last use of API key %s", key_id, exc_info=True)
