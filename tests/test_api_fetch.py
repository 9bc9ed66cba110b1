"""Match by URL: opt-in, allow-listed hosts, public addresses only, redirects re-checked, size and
time limits. A local HTTP server serves the media; loopback is refused unless the test-only
override is set."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from api_live import live_server
from conftest import PHOTOS
from lifeguard.api.config import ApiSettings
from lifeguard.api.fetch import FetchError, FetchPolicy, address_refusal, fetch, host_allowed
from lifeguard.settings import Settings

PHOTO = sorted((PHOTOS / "clothing").glob("*.jpg"))[0]


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        status, headers, body = self.routes.get(self.path, (404, {}, b"nope"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    data = PHOTO.read_bytes()
    _Handler.routes = {
        "/photo.jpg": (200, {"Content-Type": "image/jpeg"}, data),
        "/hop": (302, {"Location": "/photo.jpg"}, b""),
        "/to-private": (302, {"Location": "http://10.1.2.3/photo.jpg"}, b""),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/to-other-host": (302, {"Location": "http://evil.example/photo.jpg"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/big": (200, {"Content-Type": "image/jpeg"}, b"\0" * 300_000),
    }
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def policy(**kw: object) -> FetchPolicy:
    base: dict[str, object] = dict(
        allowed_hosts=("127.0.0.1", "localhost"), max_bytes=200_000, allow_http=True, timeout_s=5
    )
    base.update(kw)
    return FetchPolicy(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1", "127.9.9.9", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
        "fe80::1", "224.0.0.1", "ff02::1", "0.0.0.0", "::", "100.64.0.1", "240.0.0.1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fc00::1", "198.18.0.1",
    ],
)  # fmt: skip
def test_non_public_addresses_refused(addr: str) -> None:
    assert address_refusal(ipaddress.ip_address(addr), allow_loopback=False) is not None


def test_public_addresses_allowed_and_loopback_override() -> None:
    for a in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert address_refusal(ipaddress.ip_address(a), allow_loopback=False) is None
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert address_refusal(ipaddress.ip_address("10.0.0.1"), allow_loopback=True) == "private"


def test_host_allow_list() -> None:
    assert host_allowed("media.example.com", ("media.example.com",))
    assert not host_allowed("media.example.com.evil.com", ("media.example.com",))
    assert host_allowed("a.cdn.example.com", (".example.com",))
    assert host_allowed("example.com", (".example.com",))
    assert not host_allowed("badexample.com", (".example.com",))
    assert not host_allowed("anything.com", ())


def test_loopback_refused_by_default(origin: str) -> None:
    with pytest.raises(FetchError) as e:
        fetch(origin + "/photo.jpg", policy())
    assert e.value.code == "url_forbidden_address" and "loopback" in e.value.message
    port = origin.rsplit(":", 1)[1]
    with pytest.raises(FetchError) as e:  # a name resolving to loopback is refused the same way
        fetch(f"http://localhost:{port}/photo.jpg", policy())
    assert e.value.code == "url_forbidden_address"


def test_url_checks(origin: str) -> None:
    for url, code in (
        ("ftp://127.0.0.1/x", "url_invalid"),
        ("file:///etc/passwd", "url_invalid"),
        ("http://user:pw@127.0.0.1/x", "url_invalid"),
        ("http://evil.example/x", "url_host_not_allowed"),
        ("http://127.0.0.1:abc/x", "url_invalid"),
    ):
        with pytest.raises(FetchError) as e:
            fetch(url, policy())
        assert e.value.code == code, url
    with pytest.raises(FetchError) as e:
        fetch(origin + "/photo.jpg", policy(allow_http=False))
    assert e.value.code == "url_invalid"


def test_redirects_rechecked_and_limits(origin: str) -> None:
    p = policy(allow_loopback=True)
    got = fetch(origin + "/hop", p)
    assert got.data == PHOTO.read_bytes() and got.redirects == [origin + "/photo.jpg"]
    _Handler.hits.clear()
    # Even allow-listed, private and metadata addresses are refused (checked per redirect hop).
    p = policy(allow_loopback=True, allowed_hosts=("127.0.0.1", "10.1.2.3", "169.254.169.254"))
    for path, code in (
        ("/to-private", "url_forbidden_address"),
        ("/to-metadata", "url_forbidden_address"),
        ("/to-other-host", "url_host_not_allowed"),
        ("/loop", "url_too_many_redirects"),
        ("/big", "too_large"),
        ("/missing", "url_upstream_status"),
    ):
        with pytest.raises(FetchError) as e:
            fetch(origin + path, p)
        assert e.value.code == code, path
    assert all(
        h in ("/to-private", "/to-metadata", "/to-other-host", "/loop", "/big", "/missing")
        for h in _Handler.hits
    )


def test_match_url_through_the_api(origin: str, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "a")
    # Disabled by default.
    with live_server(s) as lv, lv.client(lv.key("match", "bank:write")) as c:
        r = c.post("/v1/match/url", json={"url": origin + "/photo.jpg"})
        assert r.status_code == 403 and r.json()["code"] == "url_fetch_disabled"
    # Enabled, loopback allow-listed, but still refused: a loopback address.
    api = ApiSettings(
        url_fetch_enabled=True, url_fetch_allowed_hosts=["127.0.0.1"], url_fetch_allow_http=True
    )
    with live_server(s, api) as lv, lv.client(lv.key("match")) as c:
        r = c.post("/v1/match/url", json={"url": origin + "/photo.jpg"})
        assert r.status_code == 403 and r.json()["code"] == "url_forbidden_address"
    # Test-only override: the success path, matching a listed photo by URL.
    api = api.model_copy(update={"UNSAFE_url_fetch_allow_loopback_for_tests": True})
    with live_server(s, api) as lv, lv.client(lv.key("admin")) as c:
        c.post("/v1/banks", json={"name": "URLS"})
        c.post(
            "/v1/banks/URLS/entries/media",
            files={"file": (PHOTO.name, PHOTO.read_bytes(), "image/jpeg")},
        )
        r = c.post("/v1/match/url", json={"url": origin + "/hop", "content_id": "u1"})
        assert r.status_code == 200 and r.json()["matched"] and r.json()["content_id"] == "u1"
        r = c.post("/v1/match/url", json={"url": origin + "/to-private"})
        assert r.status_code == 403
        # HMA's GET /h/hash?url= and /m/lookup?url= go through the same fetcher.
        r = c.get("/h/hash", params={"url": origin + "/photo.jpg"})
        assert r.status_code == 200 and set(r.json()) == {"pdq"}
        r = c.get("/m/lookup", params={"url": origin + "/photo.jpg"})
        assert r.status_code == 200 and "URLS" in r.json()["pdq"]
