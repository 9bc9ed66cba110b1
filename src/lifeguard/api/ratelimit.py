"""Per-key token buckets, in process. With several workers or replicas each holds its own buckets,
so the effective limit is the per-key rate times the number of processes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``take(key, rate, burst)`` -> seconds to wait (0.0: allowed). ``rate`` <= 0: unlimited."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def take(self, key: str, rate: float, burst: float, *, now: float | None = None) -> float:
        if rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        burst = max(burst, 1.0)
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self._max_keys:
                    self._buckets.clear()
                b = self._buckets[key] = _Bucket(burst, now)
            b.tokens = min(burst, b.tokens + (now - b.updated) * rate)
            b.updated = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / rate
