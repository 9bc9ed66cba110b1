"""Prometheus metrics (``/metrics``), one registry per app. With several uvicorn workers each
process has its own counters; scrape each worker or run one worker per container."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifeguard.matching import MatchResult


class _IndexCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        st = self.read()
        size = GaugeMetricFamily(
            "lifeguard_index_items", "Items in the in-memory indexes", labels=["index"]
        )
        for name, n in st.get("sizes", {}).items():
            size.add_metric([name], float(n))
        yield size
        yield GaugeMetricFamily(
            "lifeguard_index_revision",
            "Bank revision the index reflects",
            value=float(st.get("revision", 0)),
        )
        yield GaugeMetricFamily(
            "lifeguard_index_ready",
            "1 once the index is loaded",
            value=1.0 if st.get("ready") else 0.0,
        )
        yield GaugeMetricFamily(
            "lifeguard_index_listening",
            "1 while bank changes arrive by PostgreSQL LISTEN/NOTIFY (0: polling)",
            value=1.0 if st.get("sync_mode") == "listen" else 0.0,
        )
        yield CounterMetricFamily(
            "lifeguard_index_notifications",
            "Revision notifications received",
            value=float(st.get("sync_notifications", 0)),
        )


class Metrics:
    def __init__(self, read_index: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lifeguard_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lifeguard_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.match_requests = Counter(
            "lifeguard_match_requests",
            "Media/signal match requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.matches = Counter(
            "lifeguard_matches",
            "Standing block-list matches by bank and variant",
            ["bank", "variant"],
            registry=self.registry,
        )
        self.registry.register(_IndexCollector(read_index))

    def observe_match(self, r: MatchResult) -> None:
        outcome = "matched" if r.matched else ("suppressed" if r.suppressed else "no_match")
        self.match_requests.labels(outcome).inc()
        for m in r.matches:
            self.matches.labels(m.bank, m.variant).inc()


class MetricsMiddleware:
    """Counts requests by route template (not raw path, so cardinality stays bounded)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, path, str(status[0])).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - start)
