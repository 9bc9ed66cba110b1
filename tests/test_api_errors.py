"""Every error is an RFC 9457 problem document; bad input never gets a 500."""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api_live import Live, live_server
from conftest import PHOTOS
from lifeguard.api.config import ApiSettings
from lifeguard.banks import Banks
from lifeguard.settings import Settings

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "code"}
PHOTO = sorted((PHOTOS / "kodak").glob("*.png"))[0]


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = r.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    d = tmp_path_factory.mktemp("errors")
    settings = Settings(data_dir=d, max_file_bytes=600_000)
    with live_server(
        settings, ApiSettings(rate_limit_per_s=0, max_json_bytes=10_000, max_import_bytes=50_000)
    ) as lv:
        yield lv


@pytest.fixture(scope="module")
def c(live: Live) -> Iterator[httpx.Client]:
    with live.client(live.key("admin")) as client:
        client.post("/v1/banks", json={"name": "ERRS"})
        yield client


def test_404_405(c: httpx.Client) -> None:
    body = assert_problem(c.get("/v1/nothing"), 404, "not_found")
    assert body["instance"] == "/v1/nothing" and body["type"] == "urn:lifeguard:problem:not_found"
    r = c.put("/v1/banks")
    assert_problem(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]
    assert_problem(c.get("/v1/banks/NOPE"), 404, "not_found")


def test_validation_errors_list_fields(c: httpx.Client) -> None:
    r = c.post("/v1/banks", json={"name": "X", "match_threshold": 99, "surprise": 1})
    body = assert_problem(r, 422, "validation_error")
    locs = {e["loc"] for e in body["errors"]}  # type: ignore[attr-defined]
    assert {"body.match_threshold", "body.surprise"} <= locs
    body = assert_problem(c.post("/v1/banks", json={"name": "9lives"}), 422, "invalid_field")
    assert "must not start with a digit" in str(body["detail"])
    assert_problem(c.get("/v1/banks/ERRS/entries", params={"limit": 0}), 422, "validation_error")
    assert_problem(c.get("/v1/banks/ERRS/entries/abc"), 422, "validation_error")


def test_malformed_json_and_wrong_media_type(c: httpx.Client) -> None:
    r = c.post("/v1/banks", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert "not valid JSON" in str(assert_problem(r, 400, "malformed_json")["detail"])
    r = c.post(
        "/v1/banks",
        content=b"name=X",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(r, 415, "unsupported_media_type")
    r = c.post("/v1/hash", json={"file": "x"})
    assert_problem(r, 415, "unsupported_media_type")
    r = c.post("/v1/banks/ERRS/import", content=b"\x89PNG", headers={"Content-Type": "image/png"})
    assert_problem(r, 415, "unsupported_media_type")


def test_bad_hashes(c: httpx.Client) -> None:
    r = c.post("/v1/match/signals", json={"signals": [{"signal_type": "pdq", "value": "abc"}]})
    assert "wrong length" in str(assert_problem(r, 422, "invalid_signal")["detail"])
    r = c.post("/v1/match/signals", json={"signals": [{"signal_type": "phash", "value": "abc"}]})
    assert "unknown signal type" in str(assert_problem(r, 422, "invalid_signal")["detail"])
    r = c.post("/v1/banks/ERRS/entries", json={"signal_type": "md5", "value": "zz" * 16})
    assert "not hexadecimal" in str(assert_problem(r, 422, "invalid_signal")["detail"])
    assert_problem(c.post("/v1/match/signals", json={"signals": []}), 422, "validation_error")


def test_corrupt_and_non_image_uploads(c: httpx.Client) -> None:
    head = PHOTO.read_bytes()[:5000]
    for name, data in (
        ("cut.png", head),
        ("notes.txt", b"hello world, not an image"),
        ("empty.jpg", b""),
    ):
        r = c.post("/v1/hash", files={"file": (name, data, "application/octet-stream")})
        body = assert_problem(r, 422)
        assert body["code"] in ("truncated", "corrupt", "unsupported", "empty"), body
        assert body["title"] == "Media could not be hashed"
    r = c.post("/v1/hash", files={"file": ("cut.png", head, "image/png")})
    assert assert_problem(r, 422)["code"] == "truncated"


def test_upload_limit_enforced_while_reading(live: Live, c: httpx.Client) -> None:
    big = PHOTO.read_bytes()
    assert len(big) > 600_000
    # Declared too large: refused from the headers.
    assert_problem(c.post("/v1/hash", files={"file": ("big.png", big, "image/png")}), 413)

    # Streamed without a Content-Length: refused once the limit passes, without reading the rest.
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(10_000):  # 640 MB if it were all read
            sent += 65536
            yield b"\0" * 65536

    token = live.key("hash")
    reply = b""
    with socket.create_connection(("127.0.0.1", int(live.base_url.rsplit(":", 1)[1]))) as s:
        s.sendall(
            b"POST /v1/hash HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + token.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        s.settimeout(10)
        for chunk in endless():
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            readable, _, _ = select.select([s], [], [], 0)
            if readable:  # the answer came while we were still sending: stop
                reply = s.recv(65536)
                break
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"application/problem+json" in reply
    assert sent < 10 * 1024 * 1024  # the limit is 600 kB (+1 MiB multipart allowance)


def test_streamed_import_over_the_limit_is_refused_and_rolled_back(
    live: Live, c: httpx.Client
) -> None:
    def body() -> Iterator[bytes]:
        for i in range(3000):  # ~100 kB of valid lines, streamed without a Content-Length
            yield f"{i:032x}\n".encode()

    with live.client(live.key("bank:write")) as own:  # the server closes this connection
        r = own.post(
            "/v1/banks/ERRS/import",
            content=body(),
            params={"format": "plain", "signal_type": "md5"},
            headers={"Content-Type": "text/plain"},
        )
    assert_problem(r, 413)
    assert c.get("/v1/banks/ERRS").json()["entry_counts"]["active"] == 0


def test_json_body_limit(c: httpx.Client) -> None:
    r = c.post("/v1/banks", json={"name": "X", "description": "d" * 20_000})
    assert_problem(r, 413)


def test_internal_errors_do_not_leak(
    live: Live, c: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(self: Banks, **kw: object) -> None:
        raise RuntimeError("secret database password xyz")

    monkeypatch.setattr(Banks, "list_banks", boom)
    with caplog.at_level(logging.ERROR, logger="lifeguard.api"):
        r = c.get("/v1/banks")
    body = assert_problem(r, 500, "internal_error")
    assert "secret" not in r.text and "RuntimeError" not in r.text
    assert body["error_id"] in caplog.text and "secret database password" in caplog.text
    assert c.get("/healthz").status_code == 200  # the keep-alive connection survives a 500


def test_hma_errors_carry_message_and_400(c: httpx.Client) -> None:
    r = c.get("/m/raw_lookup", params={"signal": "abc", "signal_type": "pdq"})
    body = assert_problem(r, 400)
    assert body["message"] == body["detail"] and "invalid signal" in str(body["message"])
    body = assert_problem(c.get("/m/raw_lookup"), 400, "validation_error")
    assert body["message"]
    assert assert_problem(c.get("/c/bank/NOPE"), 404)["message"] == "bank 'NOPE' not found"


def test_problem_for_unreadable_settings(tmp_path: Path) -> None:
    from lifeguard.api.config import load_settings

    bad = tmp_path / "x.toml"
    bad.write_text("api = [")
    with pytest.raises(ValueError, match=r"x\.toml"):
        load_settings(bad)
    with pytest.raises(ValueError, match="not found"):
        load_settings(tmp_path / "missing.toml")
