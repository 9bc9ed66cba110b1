"""API keys and scopes: every route x every auth case, generated from the app's own routes, so a
new route without a scope (or a scope that is not enforced) fails here."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api_live import Live, live_server
from lifeguard.api.app import create_app
from lifeguard.api.cli_commands import key_app, parse_expiry
from lifeguard.api.config import ApiSettings
from lifeguard.api.keys import SCOPES, KeyStore
from lifeguard.api.ratelimit import RateLimiter
from lifeguard.api.routing import GuardedRoute, route_table, scoped
from lifeguard.settings import Settings
from lifeguard.store.db import Database

PATH_VALUES = {
    "name": "NO_SUCH_BANK",
    "bank_name": "NO_SUCH_BANK",
    "entry_id": "1",
    "content_id": "1",
    "key_id": "0000000000000000",
    "submission_id": "1",
    "case_id": "1",
    "account_id": "no-such-account",
}
#: Routes that must stay reachable without a key (health checks and the API description).
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/status"), ("GET", "/status/live")}


def guarded_routes(settings: Settings) -> list[tuple[str, str, str | None]]:
    app = create_app(settings, ApiSettings())
    return [(m, p, s) for m, p, s, r in route_table(app.routes) if r is not None]


def url_for(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    d = tmp_path_factory.mktemp("auth")
    with live_server(Settings(data_dir=d), ApiSettings(rate_limit_per_s=0)) as lv:
        yield lv


def test_every_route_is_scoped_or_explicitly_public(sqlite_settings: Settings) -> None:
    routes = guarded_routes(sqlite_settings)
    assert len(routes) >= 40
    public = {(m, p) for m, p, s in routes if s is None}
    assert public == PUBLIC
    for _, _, s in routes:
        assert s is None or s in SCOPES
    app = create_app(sqlite_settings, ApiSettings())
    # /review is the reviewer web UI: HTML pages behind a login session, not API keys (every one
    # of its routes is checked to need a session in tests/test_review_web.py).
    plain = {
        p for _, p, _, r in route_table(app.routes) if r is None and not p.startswith("/review")
    }
    assert plain == {"/openapi.json", "/docs", "/docs/oauth2-redirect"}


def test_a_route_without_scope_cannot_be_registered() -> None:
    from fastapi import APIRouter

    router = APIRouter(route_class=GuardedRoute)

    def unguarded() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="neither a scope nor @public"):
        router.add_api_route("/x", unguarded)

    @scoped("hash")
    def guarded() -> dict[str, str]:
        return {}

    router.add_api_route("/y", guarded)


def test_endpoint_scope_matrix(live: Live, sqlite_settings: Settings) -> None:
    routes = guarded_routes(sqlite_settings)
    tokens = {
        "none": None,
        "bad": "lg_0123456789abcdef_" + "A" * 43,
        "garbage": "not-a-key",
        "expired": live.expired_key(),
        "revoked": live.revoked_key(),
    }
    expected_codes = {
        "none": "missing_key",
        "bad": "unknown_key",
        "garbage": "malformed_key",
        "expired": "expired_key",
        "revoked": "revoked_key",
    }
    scoped_keys = {s: live.key(s) for s in SCOPES}
    clients = {case: live.client(token) for case, token in tokens.items()}
    scoped_clients = {s: live.client(t) for s, t in scoped_keys.items()}
    checked = 0
    for method, path, scope in routes:
        url = url_for(path)
        if scope is None:
            r = clients["none"].request(method, url)
            assert r.status_code == 200, (method, path, r.text)
            continue
        for case, c in clients.items():
            r = c.request(method, url)
            assert r.status_code == 401, (method, path, case, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == expected_codes[case], (method, path, case)
            assert "Bearer" in r.headers["www-authenticate"]
        for other in SCOPES:
            if other == scope or other == "admin":
                continue
            r = scoped_clients[other].request(method, url)
            assert r.status_code == 403, (method, path, other, r.status_code, r.text)
            body = r.json()
            assert body["code"] == "insufficient_scope" and body["required_scope"] == scope
        for allowed in (scope, "admin"):
            r = scoped_clients[allowed].request(method, url)
            assert r.status_code not in (401, 403), (method, path, allowed, r.text)
            assert r.status_code < 500, (method, path, allowed, r.text)
        checked += 1
    for c in (*clients.values(), *scoped_clients.values()):
        c.close()
    assert checked >= 35


def test_x_api_key_header_and_malformed_authorization(live: Live) -> None:
    token = live.key("bank:read")
    with live.client(headers={"X-API-Key": token}) as c:
        assert c.get("/v1/banks").status_code == 200
    with live.client(headers={"Authorization": "Basic abc"}) as c:
        r = c.get("/v1/banks")
        assert r.status_code == 401 and r.json()["code"] == "malformed_key"


def test_authentication_precedes_body_parsing(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/banks", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    with live.client(live.key("hash")) as c:
        r = c.post("/v1/banks", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 403


def test_revocation_takes_effect_in_process(live: Live) -> None:
    info, token = live.state.keys.create("to revoke", ["bank:read"])
    with live.client(token) as c:
        assert c.get("/v1/banks").status_code == 200
        live.state.keys.revoke(info.id)
        r = c.get("/v1/banks")
        assert r.status_code == 401 and r.json()["code"] == "revoked_key"


def test_keys_admin_endpoints(live: Live) -> None:
    with live.client(live.key("admin")) as c:
        r = c.post("/v1/keys", json={"name": "svc", "scopes": ["match"]})
        assert r.status_code == 201
        created = r.json()
        token = created["token"]
        assert token.startswith("lg_") and created["key"]["scopes"] == ["match"]
        listed = c.get("/v1/keys").json()
        assert created["key"]["id"] in {k["id"] for k in listed}
        assert all("token" not in k and "secret" not in json.dumps(k) for k in listed)
        r = c.post("/v1/keys", json={"scopes": ["root"]})
        assert r.status_code == 422 and r.json()["errors"]
        assert c.delete(f"/v1/keys/{created['key']['id']}").json()["active"] is False
        assert c.delete("/v1/keys/ffffffffffffffff").status_code == 404
    with live.client(token) as c:
        assert (
            c.post(
                "/v1/match/signals", json={"signals": [{"signal_type": "md5", "value": "0" * 32}]}
            ).status_code
            == 401
        )


def test_last_used_is_recorded(live: Live) -> None:
    info, token = live.state.keys.create("usage", ["bank:read"])
    assert info.last_used_at is None
    with live.client(token) as c:
        c.get("/v1/banks")
    deadline = time.monotonic() + 10
    while live.state.keys.get(info.id).last_used_at is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_secret_is_stored_hashed(live: Live) -> None:
    info, token = live.state.keys.create("digest", ["hash"])
    from lifeguard.api.models import ApiKey

    with live.state.db.session() as s:
        row = s.get(ApiKey, info.id)
        assert row is not None
        secret = token.split("_", 2)[2]
        assert secret not in row.secret_sha256 and len(row.secret_sha256) == 64


def test_rate_limit_per_key(tmp_path: Path) -> None:
    with live_server(
        Settings(data_dir=tmp_path), ApiSettings(rate_limit_per_s=0, rate_limit_burst=2)
    ) as lv:
        slow = lv.key("bank:read", rate=0.2)
        other = lv.key("bank:read")
        with lv.client(slow) as c:
            codes = [c.get("/v1/banks").status_code for _ in range(3)]
            assert codes[:2] == [200, 200] and codes[2] == 429
            r = c.get("/v1/banks")
            assert r.json()["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
        with lv.client(other) as c:  # per key: another key is not limited
            assert all(c.get("/v1/banks").status_code == 200 for _ in range(5))


def test_token_bucket_refills() -> None:
    rl = RateLimiter()
    assert rl.take("k", 1.0, 2, now=0.0) == 0.0
    assert rl.take("k", 1.0, 2, now=0.0) == 0.0
    assert rl.take("k", 1.0, 2, now=0.0) == pytest.approx(1.0)
    assert rl.take("k", 1.0, 2, now=1.0) == 0.0
    assert rl.take("k", 0.0, 2, now=1.0) == 0.0  # rate 0: unlimited


def test_keystore_on_both_backends(db: Database) -> None:
    ks = KeyStore(db, cache_ttl_s=0)
    try:
        info, token = ks.create(
            "k", ["match", "bank:read"], expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        )
        assert ks.verify(token).id == info.id
        assert ks.verify(token).allows("match") and not ks.verify(token).allows("bank:write")
        with pytest.raises(Exception, match="unknown"):
            ks.verify(token[:-1] + ("A" if token[-1] != "A" else "B"))
        ks.revoke(info.id)
        with pytest.raises(Exception, match="revoked"):
            ks.verify(token)
        with pytest.raises(ValueError, match="unknown scope"):
            ks.create("x", ["superuser"])
        with pytest.raises(ValueError, match="past"):
            ks.create("x", ["hash"], expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        assert [k.id for k in ks.list()] == [info.id]
    finally:
        ks.close()


def test_postgres_auth_pass(settings: Settings) -> None:
    """A smaller pass of the matrix on each backend (the full matrix runs on SQLite above)."""
    with live_server(settings) as lv:
        good = lv.key("bank:read")
        with lv.client(good) as c:
            assert c.get("/v1/banks").status_code == 200
        for token, code in (
            (lv.expired_key(), "expired_key"),
            (lv.revoked_key(), "revoked_key"),
            (None, "missing_key"),
        ):
            with lv.client(token) as c:
                r = c.get("/v1/banks")
                assert r.status_code == 401 and r.json()["code"] == code
        with lv.client(lv.key("match")) as c:
            assert c.post("/v1/banks", json={"name": "X"}).status_code == 403


def test_cli_key_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFEGUARD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LIFEGUARD_DATABASE_URL", raising=False)
    runner = CliRunner()
    r = runner.invoke(
        key_app,
        ["create", "--scope", "match", "--scope", "bank:read", "--name", "svc", "--expires", "30d"],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{") :])
    token, key_id = out["token"], out["key"]["id"]
    assert out["key"]["scopes"] == ["match", "bank:read"] and out["key"]["expires_at"]
    r = runner.invoke(key_app, ["list"])
    assert r.exit_code == 0 and key_id in r.stdout and token not in r.stdout
    r = runner.invoke(key_app, ["revoke", key_id])
    assert r.exit_code == 0 and json.loads(r.stdout)["revoked_at"]
    ks = KeyStore(Database.open(Settings(data_dir=tmp_path)))
    with pytest.raises(Exception, match="revoked"):
        ks.verify(token)
    ks.close()
    r = runner.invoke(key_app, ["create", "--scope", "sudo"])
    assert r.exit_code == 2 and "unknown scope" in r.output
    r = runner.invoke(key_app, ["revoke", "ffffffffffffffff"])
    assert r.exit_code == 2


def test_parse_expiry() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert parse_expiry("30d", now) == now + dt.timedelta(days=30)
    assert parse_expiry("12h", now) == now + dt.timedelta(hours=12)
    assert parse_expiry("2027-01-31T00:00:00", now).tzinfo is not None
    with pytest.raises(ValueError):
        parse_expiry("soon", now)
