"""``lifeguard worker``: delivers queued webhooks at least once.

Loop: claim up to ``concurrency`` due deliveries under a lease, POST them in parallel (each within
``timeout_s``), record each outcome; sleep ``poll_s`` when nothing is due. A 2xx marks a delivery
delivered. Network errors, timeouts, 408/425/429 and 5xx are retried with exponential back-off and
jitter until ``max_attempts``; 3xx and other 4xx go to the dead-letter queue at once.

Retry delay after attempt *n* (1-based): ``d = min(backoff_max_s, backoff_base_s * 2**(n-1))``, then
a uniform draw from ``[d/2, d]`` ("equal jitter"), raised to a ``Retry-After`` the receiver sent
(capped at ``backoff_max_s``).

Run as ``lifeguard worker`` or ``python -m lifeguard.actions.worker`` (same options).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from lifeguard.actions.outbox import Claimed, DeliveryStatus, claim, finish
from lifeguard.actions.webhooks import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    USER_AGENT,
    SendResult,
    payload_bytes,
    post,
    safe_url,
    signature_header,
)
from lifeguard.banks.service import InvalidField
from lifeguard.store.db import Database
from lifeguard.store.models import utcnow

log = logging.getLogger("lifeguard.actions.worker")

Clock = Callable[[], dt.datetime]
Sender = Callable[[str, bytes, dict[str, str]], SendResult]


@dataclass(frozen=True)
class WorkerConfig:
    #: Deadline for one POST (connect, send, response).
    timeout_s: float = 10.0
    #: How long a claim is held; must exceed the POST deadline with margin. A crashed worker's
    #: deliveries are retried by others after this long.
    lease_s: float = 60.0
    #: Deliveries claimed and sent in parallel per round.
    concurrency: int = 4
    #: Sleep between polls when nothing is due.
    poll_s: float = 1.0
    #: Attempts (claims) per delivery before it becomes a dead letter.
    max_attempts: int = 15
    backoff_base_s: float = 10.0
    backoff_max_s: float = 3600.0
    #: Refuse to connect to loopback, private, link-local, multicast and reserved addresses.
    block_private: bool = False
    #: Trust only this CA bundle (PEM) for https receivers instead of the system store.
    ca_file: str | None = None

    def __post_init__(self) -> None:
        def positive(name: str, v: float) -> None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise InvalidField(f"{name}: expected a positive number, got {v!r}")

        for name in ("timeout_s", "lease_s", "poll_s", "backoff_base_s", "backoff_max_s"):
            positive(name, getattr(self, name))
        for name in ("concurrency", "max_attempts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
                raise InvalidField(f"{name}: expected an integer 1..1000, got {v!r}")
        if self.lease_s < 2 * self.timeout_s:
            raise InvalidField(
                f"lease_s ({self.lease_s:g}) must be at least twice timeout_s ({self.timeout_s:g}), "
                "or a slow delivery could be claimed again while still in flight"
            )
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise InvalidField(f"ca_file: {self.ca_file!r} is not a file")
        if self.backoff_max_s < self.backoff_base_s:
            raise InvalidField(
                f"backoff_max_s ({self.backoff_max_s:g}) is below backoff_base_s "
                f"({self.backoff_base_s:g})"
            )


def backoff_delay(attempt: int, cfg: WorkerConfig, rng: random.Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based)."""
    d = min(cfg.backoff_max_s, cfg.backoff_base_s * 2.0 ** min(max(attempt - 1, 0), 60))
    return d / 2 + rng.random() * d / 2


@dataclass
class WorkerStats:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lost_leases: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


@dataclass
class Worker:
    db: Database
    config: WorkerConfig = field(default_factory=WorkerConfig)
    clock: Clock = utcnow
    rng: random.Random = field(default_factory=random.Random)
    #: ``sender(url, body, headers) -> SendResult``; default: :func:`lifeguard.actions.webhooks.post`.
    sender: Sender | None = None
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    stats: WorkerStats = field(default_factory=WorkerStats)
    #: Jobs run at the start of every round, each returning how much it did (``lifeguard worker``
    #: turns match events into review cases here). A failing job is logged; delivery goes on.
    jobs: list[Callable[[], int]] = field(default_factory=list)

    def _send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        if self.sender is not None:
            return self.sender(url, body, headers)
        return post(
            url,
            body,
            headers,
            timeout_s=self.config.timeout_s,
            block_private=self.config.block_private,
            ca_file=self.config.ca_file,
        )

    def deliver(self, c: Claimed) -> DeliveryStatus | Literal["lease_lost"]:
        """Send one claimed delivery and record the outcome; returns the new status."""
        started = self.clock()
        if c.secret_error is not None:
            # a key not configured here (yet): keep the delivery, try again later
            res = SendResult("retry", None, c.secret_error)
        elif c.url is None or c.secret is None:
            res = SendResult("dead", None, "rule removed before delivery")
        else:
            body = payload_bytes(c.event.to_json(), c.id)
            ts = int(time.time())  # wall time: receivers compare it with their clocks
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: signature_header(c.secret, body, ts),
                IDEMPOTENCY_HEADER: str(c.id),
                "Lifeguard-Event-Id": str(c.event.id),
                "Lifeguard-Delivery-Id": str(c.id),
                "Lifeguard-Attempt": str(c.attempts),
            }
            try:
                res = self._send(c.url, body, headers)
            except Exception as e:  # a sender bug must not kill the worker or lose the row
                log.exception("delivery %d: sender raised", c.id)
                res = SendResult("retry", None, f"internal error: {type(e).__name__}: {e}")
        now = self.clock()
        status: DeliveryStatus
        nxt: dt.datetime | None = None
        error = res.error
        if res.outcome == "delivered":
            status = "delivered"
        elif res.outcome == "dead":
            status = "dead"
        elif c.attempts >= self.config.max_attempts:
            status = "dead"
            error = f"gave up after {c.attempts} attempts: {res.error}"
        else:
            status = "pending"
            delay = backoff_delay(c.attempts, self.config, self.rng)
            if res.retry_after is not None:
                delay = max(delay, min(res.retry_after, self.config.backoff_max_s))
            nxt = now + dt.timedelta(seconds=delay)
        ok = finish(
            self.db,
            c,
            now=now,
            attempted_at=started,
            status=status,
            http_status=res.status,
            error=error,
            next_attempt_at=nxt,
        )
        where = safe_url(c.url) if c.url else "-"
        if not ok:
            self.stats.add("lost_leases")
            log.warning("delivery %d: lease lost before recording %s (%s)", c.id, status, where)
            return "lease_lost"
        if status == "delivered":
            self.stats.add("delivered")
            log.info("delivery %d -> %s: delivered (attempt %d)", c.id, where, c.attempts)
        elif status == "dead":
            self.stats.add("dead")
            log.warning("delivery %d -> %s: dead letter: %s", c.id, where, error)
        else:
            self.stats.add("retried")
            log.info(
                "delivery %d -> %s: attempt %d failed (%s); retry at %s",
                c.id,
                where,
                c.attempts,
                error,
                nxt.isoformat() if nxt else "?",
            )
        return status

    def claim(self) -> list[Claimed]:
        got = claim(
            self.db,
            now=self.clock(),
            limit=self.config.concurrency,
            lease_s=self.config.lease_s,
            owner=self.worker_id,
            max_attempts=self.config.max_attempts,
        )
        self.stats.add("claimed", len(got))
        return got

    def run_once(self, pool: ThreadPoolExecutor | None = None) -> int:
        """Claim one batch and deliver it; returns how many deliveries were attempted."""
        batch = self.claim()
        if not batch:
            return 0
        if pool is None or len(batch) == 1:
            for c in batch:
                self.deliver(c)
        else:
            list(pool.map(self.deliver, batch))
        return len(batch)

    def run(self, stop: threading.Event | None = None, *, drain: bool = False) -> WorkerStats:
        """Deliver until ``stop`` is set (or, with ``drain``, until nothing is due)."""
        stop = stop or threading.Event()
        log.info("worker %s started (%s)", self.worker_id, self.config)
        with ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="webhook") as pool:
            while not stop.is_set():
                done = 0
                for job in self.jobs:
                    try:
                        done += job()
                    except Exception:
                        log.exception("worker job %s failed", getattr(job, "__name__", job))
                try:
                    n = self.run_once(pool)
                except Exception:
                    # The database went away or similar: leases protect the rows; try again.
                    log.exception("worker round failed; retrying in %.1f s", self.config.poll_s)
                    n = 0
                if n == 0 and done == 0:
                    if drain:
                        break
                    stop.wait(self.config.poll_s)
        log.info("worker %s stopped: %s", self.worker_id, self.stats)
        return self.stats


def main() -> None:
    """``python -m lifeguard.actions.worker [OPTIONS]``: the ``lifeguard worker`` command."""
    import typer

    from lifeguard.actions.cli_commands import worker_cmd

    app = typer.Typer(add_completion=False)
    app.command()(worker_cmd)
    app(prog_name="python -m lifeguard.actions.worker")


if __name__ == "__main__":
    main()


__all__ = ["Worker", "WorkerConfig", "WorkerStats", "backoff_delay"]
