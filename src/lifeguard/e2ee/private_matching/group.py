"""ristretto255 group operations (libsodium, through the ``rbcl`` bindings) and the KDF/AEAD helpers.

Nothing here implements a primitive: points and scalars are libsodium's, HKDF and ChaCha20-Poly1305 are
``cryptography``'s. This module only fixes encodings and domain-separation labels.
"""

from __future__ import annotations

import hashlib

import rbcl
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

POINT_BYTES = 32
SCALAR_BYTES = 32
#: Order of the ristretto255 group (2**252 + 27742317777372353535851937790883648493).
ORDER = 2**252 + 27742317777372353535851937790883648493
TAG_BYTES = 16
_ZERO_NONCE = bytes(12)


def hash_to_point(label: bytes, data: bytes) -> bytes:
    """Hash ``data`` to a ristretto255 point (libsodium ``from_hash``: two Elligator maps, added)."""
    digest = hashlib.sha512(len(label).to_bytes(1, "big") + label + data).digest()
    return bytes(rbcl.crypto_core_ristretto255_from_hash(digest))


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar (libsodium)."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_random())


def random_point() -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_random())


def mul(scalar: bytes, point: bytes) -> bytes:
    """``scalar * point``; raises ValueError for an invalid point or a zero result."""
    return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, point))


def mul_base(scalar: bytes) -> bytes:
    return bytes(rbcl.crypto_scalarmult_ristretto255_base(scalar))


def add(p: bytes, q: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_add(p, q))


IDENTITY = bytes(POINT_BYTES)


def is_valid_point(p: bytes) -> bool:
    """A canonical ristretto255 encoding other than the identity."""
    return (
        len(p) == POINT_BYTES
        and p != IDENTITY
        and bool(rbcl.crypto_core_ristretto255_is_valid_point(p))
    )


def scalar_to_int(s: bytes) -> int:
    return int.from_bytes(s, "little")


def int_to_scalar(v: int) -> bytes:
    return (v % ORDER).to_bytes(SCALAR_BYTES, "little")


def kdf(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 with an empty salt; ``info`` carries the label and the context."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def seal_once(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """ChaCha20-Poly1305 under a key used for exactly one message (so a fixed nonce is safe)."""
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, plaintext, aad)


def open_once(key: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
    """Inverse of :func:`seal_once`; ``None`` when the key is wrong or the data was altered."""
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, ciphertext, aad)
    except InvalidTag:
        return None


def seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def open_(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        return None
