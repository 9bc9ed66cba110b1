"""Reviewer accounts, login sessions, exposure counter and the ``lifeguard reviewer`` CLI
(SQLite and PostgreSQL through the ``db`` fixture)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from lifeguard.errors import Conflict, NotFound
from lifeguard.reports import audit
from lifeguard.review.accounts import (
    AccountError,
    Accounts,
    LoginFailed,
    ReviewerSession,
    hash_password,
    verify_password,
)
from lifeguard.review.roles import Role
from lifeguard.settings import Settings
from lifeguard.store.db import Database

PW = "correct horse battery"


def _actions(db: Database) -> list[dict[str, object]]:
    with db.read_session() as s:
        return [audit.record_to_dict(r) for r in audit.iter_records(s)]


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    a, b = hash_password(PW), hash_password(PW)
    assert a != b and a.startswith("scrypt$14$8$1$")
    assert verify_password(PW, a) and verify_password(PW, b)
    assert not verify_password(PW + "x", a)
    assert not verify_password(PW, "scrypt$14$8$1$!!$!!")  # malformed never verifies
    assert not verify_password(PW, "plain$" + PW)
    with pytest.raises(AccountError):
        hash_password("short")


def test_add_login_session_logout(db: Database) -> None:
    acc = Accounts(db)
    v = acc.add("alice", PW, Role.SENIOR)
    assert v.role is Role.SENIOR and not v.disabled
    with pytest.raises(Conflict):
        acc.add("alice", PW)
    with pytest.raises(AccountError):
        acc.add("Bad Name", PW)
    with pytest.raises(AccountError):
        acc.add("bob", PW, "boss")

    with pytest.raises(LoginFailed):
        acc.login("alice", "wrong password!")
    with pytest.raises(LoginFailed):
        acc.login("nobody", PW)
    new = acc.login("alice", PW, client="127.0.0.1")
    info = acc.session(new.token)
    assert info is not None
    assert info.actor.id == "alice" and info.actor.role is Role.SENIOR
    assert info.csrf_token == new.info.csrf_token and len(info.csrf_token) >= 32
    assert acc.session("not-a-token") is None
    assert acc.session(None) is None
    # Only the token's hash is stored.
    with db.read_session() as s:
        rows = list(s.query(ReviewerSession))
    assert (
        len(rows) == 1 and rows[0].token_hash != new.token and new.token not in rows[0].token_hash
    )
    assert acc.get("alice").last_login_at is not None

    acc.logout(new.token)
    assert acc.session(new.token) is None

    recs = _actions(db)
    acts = [r["action"] for r in recs]
    assert acts.count("reviewer.login_failed") == 2
    assert "reviewer.login" in acts and "reviewer.logout" in acts
    failed = [r for r in recs if r["action"] == "reviewer.login_failed"]
    assert {f["details"]["reason"] for f in failed} == {"wrong_password", "unknown_account"}  # type: ignore[index]
    assert audit.verify(db).ok


def test_session_expiry_and_disable(db: Database) -> None:
    acc = Accounts(db, session_ttl=dt.timedelta(minutes=5))
    acc.add("carol", PW)
    t0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    new = acc.login("carol", PW, now=t0)
    assert acc.session(new.token, now=t0 + dt.timedelta(minutes=4)) is not None
    assert acc.session(new.token, now=t0 + dt.timedelta(minutes=6)) is None

    live = acc.login("carol", PW)
    assert acc.session(live.token) is not None
    acc.disable("carol")
    assert acc.session(live.token) is None
    with pytest.raises(LoginFailed):
        acc.login("carol", PW)
    with pytest.raises(NotFound):
        acc.disable("nobody")
    assert [a.name for a in acc.all()] == ["carol"] and acc.all()[0].disabled


def test_exposure_counter_per_reviewer_per_day(db: Database) -> None:
    acc = Accounts(db)
    d1 = dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.UTC)
    d2 = d1 + dt.timedelta(minutes=2)
    with db.session() as s:
        assert acc.record_reveal(s, "dave", now=d1) == 1
    with db.session() as s:
        assert acc.record_reveal(s, "dave", now=d1) == 2
        assert acc.record_reveal(s, "erin", now=d1) == 1
    with db.session() as s:
        assert acc.record_reveal(s, "dave", now=d2) == 1  # a new UTC day
    assert acc.exposure_today("dave", now=d1) == 2
    assert acc.exposure_today("dave", now=d2) == 1
    assert acc.exposure_today("erin", now=d2) == 0


def test_reviewer_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from lifeguard import cli

    monkeypatch.setattr("lifeguard.review.web.cli.get_settings", lambda: settings)
    r = CliRunner()
    res = r.invoke(
        cli.app,
        ["reviewer", "add", "frank", "--role", "admin", "--password-stdin"],
        input=PW + "\n",
    )
    assert res.exit_code == 0, res.output
    res = r.invoke(cli.app, ["reviewer", "add", "frank", "--password-stdin"], input=PW + "\n")
    assert res.exit_code == 2 and "already exists" in res.output
    res = r.invoke(cli.app, ["reviewer", "add", "gina", "--password-stdin"], input="short\n")
    assert res.exit_code == 2 and "password" in res.output
    res = r.invoke(cli.app, ["reviewer", "list", "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.output)
    assert [(x["name"], x["role"], x["disabled"]) for x in rows] == [("frank", "admin", False)]
    res = r.invoke(cli.app, ["reviewer", "disable", "frank"])
    assert res.exit_code == 0
    res = r.invoke(cli.app, ["reviewer", "list", "--json"])
    assert json.loads(res.output)[0]["disabled"] is True
    db = Database.open(settings)
    try:
        with pytest.raises(LoginFailed):
            Accounts(db).login("frank", PW)
    finally:
        db.dispose()


def test_failed_logins_are_throttled_per_name(db: Database) -> None:
    acc = Accounts(db, max_failures=3, failure_window=dt.timedelta(minutes=15))
    acc.add("hana", PW)
    acc.add("ivan", PW)
    t0 = dt.datetime.now(dt.UTC)
    acc.login("hana", PW, now=t0)
    for i in range(3):
        with pytest.raises(LoginFailed, match=r"wrong password|unknown"):
            acc.login("hana", f"wrong password {i}", now=t0 + dt.timedelta(seconds=i + 1))
    # The right password is refused too while throttled; other names are not affected.
    with pytest.raises(LoginFailed, match="too many failed logins"):
        acc.login("hana", PW, now=t0 + dt.timedelta(seconds=5))
    assert acc.login("ivan", PW, now=t0 + dt.timedelta(seconds=5)).token
    # After the window the failures no longer count.
    assert acc.login("hana", PW, now=t0 + dt.timedelta(minutes=16)).token
    reasons = [
        r["details"]["reason"]  # type: ignore[index]
        for r in _actions(db)
        if r["action"] == "reviewer.login_failed"
    ]
    assert reasons == ["wrong_password"] * 3 + ["throttled"]
