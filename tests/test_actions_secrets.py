"""Webhook secrets at rest: sealed with LIFEGUARD_SECRETS_KEY, opened only where the key is,
signed deliveries unchanged, a missing key retries instead of dropping, seal-secrets and rotation."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from lifeguard.actions import create_rule, get_delivery, list_deliveries, list_rules, record_match
from lifeguard.actions.cli_commands import app as actions_app
from lifeguard.actions.models import ActionRule
from lifeguard.actions.rules import seal_secrets, update_rule
from lifeguard.actions.secretbox import (
    KEY_ENV,
    SecretBox,
    SecretKeyError,
    generate_key,
    is_sealed,
    open_secret,
)
from lifeguard.actions.worker import Worker, WorkerConfig
from lifeguard.banks import Banks
from lifeguard.settings import Settings, get_settings
from lifeguard.store.db import Database
from test_actions_support import SECRET, FakeClock, Receiver, make_bank, result

FAST = WorkerConfig(timeout_s=2.0, lease_s=30.0, concurrency=2, poll_s=0.05, max_attempts=4)
K1, K2 = generate_key(), generate_key()


def _raw(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(ActionRule.secret).order_by(ActionRule.id)))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_box_round_trip_tamper_and_rotation() -> None:
    box = SecretBox([base64.b64decode(K1)])
    sealed = box.seal(SECRET)
    assert is_sealed(sealed) and SECRET not in sealed and box.open(sealed) == SECRET
    assert box.seal(SECRET) != sealed  # fresh nonce each time
    assert box.open("plain-secret-value") == "plain-secret-value"  # clear passes through
    head, blob = sealed.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(SecretKeyError, match="fails to open"):
        box.open(head + ":" + base64.urlsafe_b64encode(bytes(raw)).decode())
    rotated = SecretBox([base64.b64decode(K2), base64.b64decode(K1)])
    assert rotated.open(sealed) == SECRET and rotated.needs_sealing(sealed)
    with pytest.raises(SecretKeyError, match="not configured"):
        SecretBox([base64.b64decode(K2)]).open(sealed)
    with pytest.raises(SecretKeyError, match="is not set"):
        open_secret(sealed, None)
    with pytest.raises(SecretKeyError):
        SecretBox.from_env({KEY_ENV: "bm90IDMyIGJ5dGVz"})  # "not 32 bytes"
    assert SecretBox.from_env({}) is None


def _sealed_rule_with_a_match(db: Database, url: str) -> str:
    """A rule created with the key set, and one recorded match; the stored secret."""
    matches = make_bank(Banks(db), "ALPHA", 1)
    rule = create_rule(db, "ALPHA", url, secret=SECRET)
    assert rule.secret == SECRET  # shown once, in clear
    record_match(db, result(matches[0]), "post-1", None)
    (stored,) = _raw(db)
    return stored


def test_sealed_at_rest_and_deliveries_still_signed(
    db: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, K1)
    stored = _sealed_rule_with_a_match(db, receiver.url)
    assert is_sealed(stored) and SECRET not in stored
    assert list_rules(db)[0].secret == SECRET  # this process holds the key
    assert Worker(db, FAST).run_once() == 1
    (r,) = receiver.received
    assert r.signature_error == ""  # signed with the opened secret


def test_missing_key_retries_then_delivers(
    db: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, K1)
    _sealed_rule_with_a_match(db, receiver.url)
    (d,) = list_deliveries(db)
    monkeypatch.delenv(KEY_ENV)  # a worker started without the key
    assert list_rules(db)[0].secret == ""  # cannot be read here, and nothing fails
    clock = FakeClock()
    assert Worker(db, FAST, clock=clock).run_once() == 1
    got = get_delivery(db, d.id)
    assert got.status == "pending" and KEY_ENV in got.last_error  # kept for a retry
    assert receiver.received == []
    monkeypatch.setenv(KEY_ENV, K1)  # the key arrives: the retry goes out, signed
    clock.advance(60)
    assert Worker(db, FAST, clock=clock).run_once() == 1
    assert get_delivery(db, d.id).status == "delivered"
    (r,) = receiver.received
    assert r.signature_error == ""


def test_seal_secrets_cli_seals_old_rules_and_rotates(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    banks = Banks(db)
    make_bank(banks, "ALPHA", 1)
    a = create_rule(db, "ALPHA", "https://hooks.example.org/a", secret=SECRET)
    create_rule(db, "ALPHA", "https://hooks.example.org/b")
    assert not any(is_sealed(x) for x in _raw(db))  # no key: stored as given (as before)
    with pytest.raises(SecretKeyError):
        seal_secrets(db)
    monkeypatch.setenv(KEY_ENV, K1)
    monkeypatch.setenv("LIFEGUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LIFEGUARD_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(actions_app, ["action", "seal-secrets"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout) == {"sealed": 2, "resealed": 0, "unchanged": 0}
        assert all(is_sealed(x) for x in _raw(db))
        assert list_rules(db)[0].secret == SECRET
        monkeypatch.setenv(KEY_ENV, f"{K2},{K1}")  # rotation: new key first, old one kept
        assert seal_secrets(db) == {"sealed": 0, "resealed": 2, "unchanged": 0}
        assert seal_secrets(db) == {"sealed": 0, "resealed": 0, "unchanged": 2}
        monkeypatch.setenv(KEY_ENV, K2)  # old key retired
        assert list_rules(db)[0].secret == SECRET
        new = update_rule(db, a.id, secret="whsec_rotated_secret_value")
        assert new.secret == "whsec_rotated_secret_value" and is_sealed(_raw(db)[0])
    finally:
        get_settings.cache_clear()
