"""Change notification: keep every replica's index fresh, idle or busy.

Writers announce each revision bump with ``NOTIFY lifeguard_revision, '<rev>'`` in the same
transaction (:func:`notify_revision`, called by ``store.db.bump_revision``), so PostgreSQL delivers
it exactly when the change commits, and only if it commits. Each replica runs a
:class:`BackgroundSync` thread:

* **PostgreSQL** (``listen=True``): a dedicated autocommit psycopg 3 connection runs
  ``LISTEN lifeguard_revision`` and waits in ``conn.notifies()``; each notification newer than the
  index makes the matcher apply the changed entries at once (``Matcher.sync(force=True)``). While
  listening, request threads skip their own revision polls. Every ``safety_poll_s`` the thread
  checks the connection (``SELECT 1``) and the revision anyway, so a missed notification costs at
  most that long. A lost connection is reopened with exponential back-off (``backoff_s`` doubling
  up to ``backoff_max_s``); meanwhile, and whenever ``LISTEN`` cannot be set up, the thread polls
  every ``index_sync_interval_s`` and request threads poll too — freshness never depends on the
  listener alone.
* **SQLite** (one host), or ``listen=False``: the thread polls every ``index_sync_interval_s``, so
  an idle replica is as fresh as a busy one.

The thread never syncs a matcher that has not loaded yet (``Matcher.load`` does that itself).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from lifeguard.matching.matcher import Matcher

log = logging.getLogger(__name__)

#: The PostgreSQL notification channel; the payload is the new revision in decimal.
CHANNEL = "lifeguard_revision"


def notify_revision(session: Session, revision: int) -> None:
    """Queue ``NOTIFY lifeguard_revision, '<revision>'`` in ``session``'s transaction (PostgreSQL
    only; a no-op elsewhere). PostgreSQL sends it when the transaction commits, never before and
    never for a rollback."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {
            "channel": CHANNEL,
            "payload": str(revision),
        },
    )


def libpq_url(sqlalchemy_url: Any) -> str:
    """The libpq connection URL for a SQLAlchemy PostgreSQL URL (``postgresql+psycopg://...`` →
    ``postgresql://...``), password included (it never leaves the process)."""
    url = sqlalchemy_url.set(drivername="postgresql")
    return str(url.render_as_string(hide_password=False))


@dataclass
class SyncStats:
    """What a :class:`BackgroundSync` has done (read without a lock: counters only grow)."""

    mode: str = "starting"  # "listen", "poll" or "stopped"
    notifications: int = 0
    syncs: int = 0
    entries_applied: int = 0
    connects: int = 0
    connect_failures: int = 0
    sync_errors: int = 0
    last_error: str | None = None


class BackgroundSync:
    """A daemon thread keeping ``matcher`` in step with the database (see the module docstring).

    ``listen``: use LISTEN/NOTIFY when the database is PostgreSQL (else poll). ``poll_interval_s``
    defaults to the matcher's ``index_sync_interval_s``."""

    def __init__(
        self,
        matcher: Matcher,
        *,
        listen: bool = True,
        poll_interval_s: float | None = None,
        safety_poll_s: float = 5.0,
        wake_s: float = 0.2,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        connect_timeout_s: int = 5,
        log_every_s: float = 30.0,
    ) -> None:
        if safety_poll_s <= 0 or wake_s <= 0 or backoff_s <= 0 or backoff_max_s < backoff_s:
            raise ValueError("BackgroundSync: intervals must be > 0 and backoff_max_s >= backoff_s")
        self.matcher = matcher
        self.use_listen = listen and matcher.db.dialect == "postgresql"
        self.poll_interval_s = poll_interval_s or matcher.settings.index_sync_interval_s
        self.safety_poll_s = safety_poll_s
        self.wake_s = wake_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.log_every_s = log_every_s
        self._last_log: tuple[str, float] = ("", 0.0)
        self.stats = SyncStats()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    # ------------------------------------------------------------------ control
    @property
    def listening(self) -> bool:
        """True while notifications are being received (request threads may then skip polling)."""
        return self._listening.is_set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="lifeguard-index-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (returns within about ``wake_s``) and close its connection."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._listening.clear()
        self.stats.mode = "stopped"

    def wait_listening(self, timeout: float) -> bool:
        """Block until notifications are being received (False after ``timeout``)."""
        return self._listening.wait(timeout)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        try:
            if self.use_listen:
                self._run_listen()
            else:
                self.stats.mode = "poll"
                self._poll_until(None)
        finally:
            self._listening.clear()
            self._close()

    def _sync(self, *, force: bool) -> None:
        if not self.matcher.loaded:
            return
        try:
            n = self.matcher.sync(force=force)
            self.stats.syncs += 1
            self.stats.entries_applied += n
        except Exception as e:  # the database may be restarting: try again next time
            self.stats.sync_errors += 1
            self._warn("index sync failed: %s", f"{type(e).__name__}: {e}")

    def _warn(self, fmt: str, error: str, *args: Any) -> None:
        """Record ``error``; log it when it is new or the last log is ``log_every_s`` old (a
        database that is down for a minute logs a few lines, not hundreds)."""
        self.stats.last_error = error
        now = time.monotonic()
        if fmt != self._last_log[0] or now - self._last_log[1] >= self.log_every_s:
            self._last_log = (fmt, now)
            log.warning(fmt, error, *args)

    def _poll_until(self, deadline: float | None) -> None:
        """Poll every ``poll_interval_s`` until ``deadline`` (monotonic; None: until stopped)."""
        while not self._stop.is_set():
            self._sync(force=False)
            wait = self.poll_interval_s
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            self._stop.wait(wait)

    def _run_listen(self) -> None:
        backoff = self.backoff_s
        while not self._stop.is_set():
            try:
                self._connect()
            except Exception as e:
                self.stats.connect_failures += 1
                self.stats.mode = "poll"
                delay = backoff * (0.8 + 0.4 * random.random())
                self._warn(
                    f"LISTEN {CHANNEL} failed (%s); polling, next try in %.1f s",
                    f"{type(e).__name__}: {e}",
                    delay,
                )
                self._poll_until(time.monotonic() + delay)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = self.backoff_s
            try:
                self._listen_loop()
            except Exception as e:
                if self._stop.is_set():
                    break
                self._warn("notification connection lost (%s); reconnecting", f"{e}")
            finally:
                self._listening.clear()
                self._close()

    def _connect(self) -> None:
        import psycopg

        conn = psycopg.connect(
            libpq_url(self.matcher.db.engine.url),
            autocommit=True,
            connect_timeout=self.connect_timeout_s,
            application_name="lifeguard-index-listener",
            # Notice a dead server while idle (the connection only ever waits).
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        try:
            conn.execute(f"LISTEN {CHANNEL}")
        except Exception:
            conn.close()
            raise
        self._conn = conn
        self.stats.connects += 1
        # Changes committed before LISTEN took effect sent no notification to us: catch up.
        self._sync(force=True)
        self.stats.mode = "listen"
        self._listening.set()
        log.info("index sync: listening on %s", CHANNEL)

    def _listen_loop(self) -> None:
        conn = self._conn
        next_check = time.monotonic() + self.safety_poll_s
        while not self._stop.is_set():
            for n in conn.notifies(timeout=self.wake_s):
                self.stats.notifications += 1
                try:
                    rev = int(n.payload)
                except ValueError:
                    rev = None
                # Notifications that arrive during a sync are usually covered by it: skip them.
                if rev is None or rev > self.matcher.revision:
                    self._sync(force=True)
                if self._stop.is_set():
                    return
            if time.monotonic() >= next_check:
                conn.execute("SELECT 1")  # raises if the connection died silently
                self._sync(force=True)  # and a missed notification costs at most this long
                next_check = time.monotonic() + self.safety_poll_s

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
