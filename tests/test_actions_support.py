"""Helpers shared by the test_actions_* files (no tests here): a real webhook receiver on 127.0.0.1
that verifies signatures, a fake clock, and fixtures that build banks, entries and match results."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lifeguard.actions.webhooks import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify_signature
from lifeguard.banks import Banks
from lifeguard.errors import LifeguardError
from lifeguard.matching import Match, MatchResult
from lifeguard.store.models import utcnow

SECRET = "whsec_test_secret_0123456789abcdef"


@dataclass
class Received:
    path: str
    key: str | None
    body: bytes
    headers: dict[str, str]
    #: "" when the signature verified, else the verification error.
    signature_error: str


#: behaviour(request, n-th time this key arrived (1-based)) -> (status, headers, body)
Behaviour = Callable[[Received, int], tuple[int, dict[str, str], bytes]]


def ok(_r: Received, _n: int) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, b"ok"


@dataclass
class Receiver:
    """A threaded HTTP server on 127.0.0.1 recording every POST (verified with ``secrets``)."""

    behaviour: Behaviour = ok
    secrets: tuple[str, ...] = (SECRET,)
    #: While set, every handler blocks (holding its request open) until it is cleared.
    hold: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                headers = {k: v for k, v in self.headers.items()}
                try:
                    verify_signature(recv.secrets, body, self.headers.get(SIGNATURE_HEADER))
                    why = ""
                except LifeguardError as e:
                    why = e.message
                r = Received(self.path, self.headers.get(IDEMPOTENCY_HEADER), body, headers, why)
                with recv.lock:
                    recv.received.append(r)
                    count = sum(1 for x in recv.received if x.key == r.key)
                with recv.arrived:
                    recv.arrived.notify_all()
                if recv.hold.is_set():
                    recv.released.wait(30)
                status, hdrs, payload = recv.behaviour(r, count)
                try:
                    self.send_response(status)
                    for k, v in hdrs.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the worker went away (killed) while we held the request

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def wait_for(self, n: int, timeout: float = 20.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.received) >= n, timeout)

    def keys(self) -> list[str | None]:
        with self.lock:
            return [r.key for r in self.received]

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class FakeClock:
    """An injectable clock: starts at the real time, moves only when told."""

    def __init__(self) -> None:
        self.t = utcnow()

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += dt.timedelta(seconds=seconds)


def make_bank(banks: Banks, name: str, n: int = 3, categories: tuple[str, ...] = ()) -> list[Match]:
    """A block bank with ``n`` MD5 entries and one exact Match for each."""
    info = banks.create_bank(name, categories=list(categories))
    out = []
    for i in range(n):
        value = f"{i:02x}{info.id:02x}".ljust(32, "a")
        e = banks.add_entry(name, "md5", value, external_id=f"{name.lower()}-{i}").entry
        out.append(
            Match(
                bank=info.name,
                bank_id=info.id,
                bank_kind="block",
                entry_id=e.id,
                external_id=e.external_id,
                signal_type="md5",
                value=e.value,
                distance=0,
                variant="exact",
                query_variant="md5",
                listed_variant="plain",
                categories=categories,
            )
        )
    return out


def pdq_match(
    m: Match, distance: int, variant: str = "plain", query_variant: str = "original"
) -> Match:
    from dataclasses import replace

    return replace(
        m,
        signal_type="pdq",
        value="f" * 64,
        distance=distance,
        variant=variant,  # type: ignore[arg-type]
        query_variant=query_variant,
    )


def result(*matches: Match, suppressed: tuple[Match, ...] = ()) -> MatchResult:
    return MatchResult(matches=list(matches), suppressed=list(suppressed), revision=7)
