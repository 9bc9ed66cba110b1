"""SSRF-safe URL fetching for match/hash by URL (off unless ``url_fetch_enabled``).

* Only ``https`` (``http`` when allowed), no user-info, host on the allow-list.
* The host name is resolved once; every resolved address must be public (not private, loopback,
  link-local, multicast, reserved, unspecified, shared, or IPv4-mapped versions of those), and the
  connection goes to that checked address (TLS still verifies the host name), so DNS rebinding
  between check and connect cannot redirect it.
* Redirects are followed by hand, at most ``max_redirects``, each target checked the same way.
* ``Content-Length`` over the limit is refused before reading; the body is read in chunks and
  abandoned as soon as it passes the limit; one deadline covers resolve, connect and read.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

USER_AGENT = "lifeguard-fetch/1"
_CHUNK = 64 * 1024


class FetchError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FetchPolicy:
    allowed_hosts: tuple[str, ...]
    max_bytes: int
    timeout_s: float = 10.0
    max_redirects: int = 3
    allow_http: bool = False
    #: TEST ONLY: permit loopback addresses (127.0.0.0/8, ::1).
    allow_loopback: bool = False


@dataclass
class Fetched:
    data: bytes
    content_type: str
    url: str
    redirects: list[str] = field(default_factory=list)


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Exact host names, or ``.example.com`` for example.com and its subdomains."""
    h = host.lower().rstrip(".")
    for a in allowed:
        a = a.lower().strip().rstrip(".")
        if not a:
            continue
        if a.startswith("."):
            if h == a[1:] or h.endswith(a):
                return True
        elif h == a:
            return True
    return False


def address_refusal(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool
) -> str | None:
    """Why ``ip`` may not be contacted, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return address_refusal(ip.ipv4_mapped, allow_loopback)
    if ip.is_loopback:
        return None if allow_loopback else "loopback"
    for attr, why in (
        ("is_unspecified", "unspecified"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return why
    if not ip.is_global:
        return "not globally routable"
    return None


def _resolve(host: str, port: int, policy: FetchPolicy) -> str:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addrs = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise FetchError(
                422, "url_unresolvable", f"cannot resolve host {host!r}: {e}"
            ) from None
        addrs = []
        for info in infos:
            a = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if a not in addrs:
                addrs.append(a)
        if not addrs:
            raise FetchError(422, "url_unresolvable", f"host {host!r} has no addresses")
    for a in addrs:  # every address must be acceptable: no mixing a public and a private one
        why = address_refusal(a, policy.allow_loopback)
        if why is not None:
            raise FetchError(
                403, "url_forbidden_address", f"host {host!r} resolves to a {why} address ({a})"
            )
    return str(addrs[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        ctx = ssl.create_default_context()
        self.sock = ctx.wrap_socket(sock, server_hostname=self.host)


def check_url(url: str, policy: FetchPolicy) -> tuple[str, str, int, str]:
    """(scheme, host, port, path+query) or FetchError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise FetchError(422, "url_invalid", f"malformed URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(
            422, "url_invalid", f"URL scheme {scheme or '(none)'!r} not allowed (https only)"
        )
    if scheme == "http" and not policy.allow_http:
        raise FetchError(422, "url_invalid", "plain http URLs are not allowed (use https)")
    if parts.username is not None or parts.password is not None:
        raise FetchError(422, "url_invalid", "URLs with user info are not allowed")
    host = (parts.hostname or "").lower()
    if not host:
        raise FetchError(422, "url_invalid", "URL has no host")
    if not host_allowed(host, policy.allowed_hosts):
        raise FetchError(403, "url_host_not_allowed", f"host {host!r} is not on the allow-list")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port or (443 if scheme == "https" else 80), path


def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` under ``policy`` (blocking; run it in a worker thread)."""
    deadline = time.monotonic() + policy.timeout_s
    redirects: list[str] = []
    current = url
    while True:
        scheme, host, port, path = check_url(current, policy)
        ip = _resolve(host, port, policy)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(504, "url_timeout", "fetch timed out")
        conn_cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        conn = conn_cls(host, port, ip, remaining)
        try:
            try:
                conn.request(
                    "GET",
                    path,
                    headers={"User-Agent": USER_AGENT, "Accept": "image/*, video/*, */*;q=0.1"},
                )
                resp = conn.getresponse()
            except TimeoutError:
                raise FetchError(504, "url_timeout", "fetch timed out") from None
            except (OSError, http.client.HTTPException) as e:
                raise FetchError(502, "url_fetch_failed", f"cannot fetch {host}: {e}") from None
            if resp.status in (301, 302, 303, 307, 308):
                loc = resp.getheader("Location")
                if not loc:
                    raise FetchError(
                        502, "url_fetch_failed", f"redirect {resp.status} without Location"
                    )
                if len(redirects) >= policy.max_redirects:
                    raise FetchError(
                        502, "url_too_many_redirects", f"more than {policy.max_redirects} redirects"
                    )
                current = urljoin(current, loc)
                redirects.append(current)
                continue
            if resp.status != 200:
                raise FetchError(502, "url_upstream_status", f"{host} answered HTTP {resp.status}")
            length = resp.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > policy.max_bytes:
                raise FetchError(
                    413,
                    "too_large",
                    f"remote file is {int(length):,} bytes, over the limit of {policy.max_bytes:,}",
                )
            chunks: list[bytes] = []
            total = 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(504, "url_timeout", "fetch timed out")
                try:
                    chunk = resp.read(_CHUNK)
                except TimeoutError:
                    raise FetchError(504, "url_timeout", "fetch timed out") from None
                except (OSError, http.client.HTTPException) as e:
                    raise FetchError(502, "url_fetch_failed", f"reading from {host}: {e}") from None
                if not chunk:
                    break
                total += len(chunk)
                if total > policy.max_bytes:
                    raise FetchError(
                        413,
                        "too_large",
                        f"remote file is over the limit of {policy.max_bytes:,} bytes",
                    )
                chunks.append(chunk)
            return Fetched(
                data=b"".join(chunks),
                content_type=resp.getheader("Content-Type") or "",
                url=current,
                redirects=redirects,
            )
        finally:
            conn.close()
