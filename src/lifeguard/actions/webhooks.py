"""Webhook wire format: the JSON body, the ``Lifeguard-Signature`` header, and one HTTP POST.

Signature (Stripe's scheme): ``Lifeguard-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256 with the rule's secret over ``f"{t}.".encode() + body`` (the raw body bytes as received).
Receivers verify with :func:`verify_signature` (constant-time compare, timestamp within a tolerance
window against replays) and dedupe on the ``Idempotency-Key`` header (the delivery id; retries and
replays of one delivery carry the same key and the same body bytes).

Sending uses :mod:`http.client`: no redirects are followed (a 3xx is a dead letter), environment
proxies are not used, TLS certificates are verified, the whole exchange has one deadline, and with
``block_private`` the resolved address must be public (checked on the address actually connected
to, so DNS rebinding cannot slip through).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from lifeguard.errors import LifeguardError

SIGNATURE_HEADER = "Lifeguard-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE_S = 300
USER_AGENT = "lifeguard-webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024
#: Statuses that are retried although they are 4xx.
RETRYABLE_4XX = frozenset({408, 425, 429})

Outcome = Literal["delivered", "retry", "dead"]


class SignatureError(LifeguardError):
    """A webhook's signature header is missing, malformed, stale or does not match."""

    code = "bad_signature"


# ------------------------------------------------------------------------------ signing


def payload_bytes(event_json: Mapping[str, Any], delivery_id: int) -> bytes:
    """The canonical body: the event plus ``delivery_id``, sorted keys, compact, ASCII. The same
    delivery always produces the same bytes (retries and replays included)."""
    body = {"delivery_id": delivery_id, **event_json}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    msg = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    return f"t={int(timestamp)},v1={compute_signature(secret, timestamp, body)}"


def verify_signature(
    secret: str | Sequence[str],
    body: bytes,
    header: str | None,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a ``Lifeguard-Signature`` header; returns its timestamp or raises SignatureError.

    ``secret`` may be several (during a secret rotation). Any ``v1`` entry matching any secret is
    accepted; unknown schemes (``v0=``, future ``v2=``) are ignored. The timestamp must be within
    ``tolerance_s`` of ``now`` (default: the current time) in either direction.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    ts: int | None = None
    sigs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} element {part.strip()!r}")
        if key == "t":
            if ts is not None:
                raise SignatureError(f"{SIGNATURE_HEADER}: more than one timestamp")
            if not value.isascii() or not value.isdigit():
                raise SignatureError(f"{SIGNATURE_HEADER}: timestamp {value!r} is not an integer")
            ts = int(value)
        elif key == "v1":
            sigs.append(value)
    if ts is None:
        raise SignatureError(f"{SIGNATURE_HEADER}: no timestamp (t=)")
    if not sigs:
        raise SignatureError(f"{SIGNATURE_HEADER}: no v1 signature")
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise SignatureError(
            f"{SIGNATURE_HEADER}: timestamp {ts} is {abs(current - ts):.0f} s away from now "
            f"(tolerance {tolerance_s:.0f} s)"
        )
    secrets_ = [secret] if isinstance(secret, str) else list(secret)
    for sec in secrets_:
        expected = compute_signature(sec, ts, body)
        if any(hmac.compare_digest(expected, s) for s in sigs):
            return ts
    raise SignatureError(f"{SIGNATURE_HEADER}: no signature matches the body")


# ------------------------------------------------------------------------------ sending


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    status: int | None
    error: str
    #: Seconds from a ``Retry-After`` header (429/503), if any.
    retry_after: float | None = None


class BlockedAddress(LifeguardError):
    code = "blocked_address"


def is_public_address(ip: str) -> bool:
    a = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return not (
        a.is_private
        or a.is_loopback
        or a.is_link_local
        or a.is_multicast
        or a.is_reserved
        or a.is_unspecified
    )


def _connect(host: str, port: int, timeout: float, block_private: bool) -> socket.socket:
    if not block_private:
        return socket.create_connection((host, port), timeout)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    blocked = sorted({str(i[4][0]) for i in infos if not is_public_address(str(i[4][0]))})
    if blocked:
        raise BlockedAddress(
            f"{host} resolves to non-public address {', '.join(blocked)} (--block-private)"
        )
    err: OSError | None = None
    for family, stype, proto, _, addr in infos:
        sock = socket.socket(family, stype, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
            return sock
        except OSError as e:
            sock.close()
            err = e
    raise err or OSError(f"could not connect to {host}:{port}")


class _HTTP(http.client.HTTPConnection):
    block_private = False

    def connect(self) -> None:
        self.sock = _connect(self.host, self.port, float(self.timeout or 10), self.block_private)


@functools.cache
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate-verifying context: the system trust store, or only ``ca_file`` when given."""
    return ssl.create_default_context(cafile=ca_file)


class _HTTPS(http.client.HTTPSConnection):
    block_private = False
    ca_file: str | None = None

    def connect(self) -> None:
        raw = _connect(self.host, self.port, float(self.timeout or 10), self.block_private)
        self.sock = _tls_context(self.ca_file).wrap_socket(raw, server_hostname=self.host)


def classify(status: int) -> Outcome:
    """2xx delivered; 408/425/429 and 5xx retried; 3xx (redirects are not followed) and every other
    4xx dead at once (the receiver refused this request and would refuse it again)."""
    if 200 <= status < 300:
        return "delivered"
    if status in RETRYABLE_4XX or status >= 500:
        return "retry"
    if 300 <= status < 500:
        return "dead"
    return "retry"  # 1xx final status or nonsense: try again later


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    v = value.strip()
    if v.isdigit():
        return float(v)
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def safe_url(url: str) -> str:
    """``scheme://host[:port]/path`` without the query string, for logs and error messages."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}{p.path}"


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    block_private: bool = False,
    ca_file: str | None = None,
) -> SendResult:
    """POST once within ``timeout_s`` (connect, send and response together); never raises for
    network or HTTP errors, which are classified into a :class:`SendResult`."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return SendResult("dead", None, f"refusing URL {safe_url(url)!r}: not an http(s) URL")
    try:
        port = parts.port
    except ValueError as e:
        return SendResult("dead", None, f"bad port in URL: {e}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + timeout_s

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete response within {timeout_s:g} s")
        return left

    conn: _HTTP | _HTTPS
    if scheme == "https":
        conn = _HTTPS(parts.hostname, port, timeout=timeout_s)
        conn.ca_file = ca_file
    else:
        conn = _HTTP(parts.hostname, port, timeout=timeout_s)
    conn.block_private = block_private
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(remaining())
        conn.request("POST", target, body=body, headers=dict(headers))
        conn.sock.settimeout(remaining())
        resp = conn.getresponse()
        chunks: list[bytes] = []
        size = 0
        while size < MAX_RESPONSE_BYTES:
            if conn.sock is not None:
                conn.sock.settimeout(remaining())
            chunk = resp.read(min(8192, MAX_RESPONSE_BYTES - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        status = resp.status
        text = b"".join(chunks)[:300].decode("utf-8", "replace").strip()
        outcome = classify(status)
        if outcome == "delivered":
            return SendResult("delivered", status, "")
        why = f"HTTP {status} {resp.reason}".strip()
        if 300 <= status < 400:
            loc = resp.getheader("Location") or "?"
            why += f" (redirect to {loc!r} not followed; fix the rule's URL)"
        if text:
            why += f": {text}"
        return SendResult(outcome, status, why, _retry_after(resp.getheader("Retry-After")))
    except BlockedAddress as e:
        return SendResult("dead", None, e.message)
    except TimeoutError as e:
        return SendResult("retry", None, f"timeout: {e}")
    except ssl.SSLError as e:  # includes certificate verification failures
        return SendResult("retry", None, f"TLS error: {e}")
    except (OSError, http.client.HTTPException) as e:
        return SendResult("retry", None, f"{type(e).__name__}: {e}")
    finally:
        conn.close()
