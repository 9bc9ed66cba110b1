"""Webhook signing secrets at rest: sealed with AES-256-GCM under a master key.

The worker needs each rule's secret in clear to sign deliveries, so it cannot be hashed; it can be
kept sealed in the database and opened only in the processes that hold the master key. Keys come
from ``LIFEGUARD_SECRETS_KEY`` (base64 of 32 random bytes; several, comma- or newline-separated,
the first current and the rest for reading older seals) or the file ``LIFEGUARD_SECRETS_KEY_FILE``.

Stored form: ``lgsec1:<key id>:<base64url(nonce | ciphertext+tag)>``; the key id is derived from
the key. Without a configured key, secrets are stored as given (as before; ``lifeguard action
seal-secrets`` seals them once a key is set) and a sealed secret cannot be opened: the error names
the missing key id, and the worker retries the delivery later rather than dropping it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lifeguard.errors import LifeguardError
from lifeguard.keyfiles import keys_from_env

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "PREFIX",
    "SecretBox",
    "SecretKeyError",
    "generate_key",
    "is_sealed",
]

KEY_ENV = "LIFEGUARD_SECRETS_KEY"
KEY_FILE_ENV = "LIFEGUARD_SECRETS_KEY_FILE"
PREFIX = "lgsec1:"
_AAD = b"lifeguard-webhook-secret-v1"
_NONCE = 12


class SecretKeyError(LifeguardError):
    """No usable master key, or a sealed secret that cannot be opened."""

    code = "secret_key"


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"lifeguard-secrets-key-id\x00" + key).hexdigest()[:16]


def generate_key() -> str:
    """A new master key, base64 (for the variable or the key file)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


class SecretBox:
    """Seals with the first key, opens with any."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(k) != 32 for k in keys):
            raise SecretKeyError("secrets master keys must be 32 bytes each")
        self.current_id = key_id(keys[0])
        self._current = AESGCM(keys[0])
        self._by_id = {key_id(k): AESGCM(k) for k in keys}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretBox | None:
        """The configured box, or None when neither variable is set."""
        env = os.environ if environ is None else environ
        if not env.get(KEY_ENV) and not env.get(KEY_FILE_ENV):
            return None
        return cls(
            keys_from_env(
                KEY_ENV,
                KEY_FILE_ENV,
                SecretKeyError,
                missing=f"set {KEY_ENV} or {KEY_FILE_ENV}",
                environ=env,
                min_bytes=32,
                max_bytes=32,
                what="AES-256 key",
            )
        )

    def seal(self, secret: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        ct = self._current.encrypt(nonce, secret.encode("utf-8"), _AAD)
        return f"{PREFIX}{self.current_id}:" + base64.urlsafe_b64encode(nonce + ct).decode()

    def open(self, stored: str) -> str:
        if not is_sealed(stored):
            return stored
        kid, _, blob = stored[len(PREFIX) :].partition(":")
        aead = self._by_id.get(kid)
        if aead is None:
            raise SecretKeyError(
                f"webhook secret sealed with key {kid}, which is not configured "
                f"(configured: {', '.join(self._by_id)})"
            )
        try:
            raw = base64.urlsafe_b64decode(blob.encode())
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD).decode("utf-8")
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretKeyError(f"webhook secret sealed with key {kid} fails to open") from None

    def needs_sealing(self, stored: str) -> bool:
        """Stored in clear, or sealed with a key other than the current one."""
        return not stored.startswith(f"{PREFIX}{self.current_id}:")


def open_secret(stored: str, box: SecretBox | None) -> str:
    """The secret in clear; a sealed one needs a box holding its key."""
    if not is_sealed(stored):
        return stored
    if box is None:
        kid = stored[len(PREFIX) :].partition(":")[0]
        raise SecretKeyError(f"webhook secret sealed with key {kid}, but {KEY_ENV} is not set")
    return box.open(stored)


def seal_secret(secret: str, box: SecretBox | None) -> str:
    return secret if box is None else box.seal(secret)
