"""Client side: make a voucher for one image against the blinded table.

The client learns nothing about the list: every lookup is answered by the table the client already
holds, and each pair's key ``S`` is computed the same way whether or not the slot holds a listed chunk.
Entry point: :func:`make_voucher`.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from . import group, shamir
from .params import PrivateMatchingError, chunk_values, element, parse_pdq
from .table import BlindedTable, element_point, position
from .voucher import (
    AD_MAX,
    ID_BYTES,
    INNER_LABEL,
    INNER_PT,
    NONCE_BYTES,
    OUTER_LABEL,
    PAIR_CT,
    Voucher,
    pair_info,
)


@dataclass
class AccountState:
    """Client-side secret of one account: the threshold polynomial (never sent anywhere).

    Every real voucher carries one share ``(x, f(x))`` of it; the inner layers are sealed under a key
    derived from ``f(0)``. Keep it with the account's other end-to-end keys; store it with
    :meth:`to_json` (no pickle).
    """

    threshold: int
    coefficients: list[int]

    @classmethod
    def new(cls, threshold: int) -> AccountState:
        return cls(threshold, shamir.random_polynomial(secrets.randbelow(shamir.P), threshold))

    @classmethod
    def for_table(cls, table: BlindedTable) -> AccountState:
        return cls.new(table.params.threshold)

    @property
    def inner_key(self) -> bytes:
        return inner_key_from_secret(self.coefficients[0])

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "threshold": self.threshold,
                "coefficients": [f"{c:x}" for c in self.coefficients],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> AccountState:
        try:
            d = json.loads(text)
            coeffs = [int(c, 16) for c in d["coefficients"]]
            t = int(d["threshold"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PrivateMatchingError(f"account state is not valid: {exc}") from None
        if d.get("v") != 1 or len(coeffs) != t or any(not 0 <= c < shamir.P for c in coeffs):
            raise PrivateMatchingError("account state is not valid")
        return cls(t, coeffs)


def inner_key_from_secret(secret: int) -> bytes:
    return group.kdf(group.int_to_scalar(secret), INNER_LABEL)


def _pdq_of(image_or_pdq: bytes | str | Path) -> tuple[bytes, int]:
    """(32-byte PDQ, quality) from a PDQ (hex or 32 bytes) or an image (path or file bytes)."""
    if isinstance(image_or_pdq, str) and len(image_or_pdq) == 64:
        return parse_pdq(image_or_pdq), 100
    if isinstance(image_or_pdq, bytes | bytearray) and len(image_or_pdq) == 32:
        return bytes(image_or_pdq), 100
    from ...signals.hasher import hash_bytes, hash_file

    if isinstance(image_or_pdq, bytes | bytearray):
        mh = hash_bytes(bytes(image_or_pdq))
    else:
        mh = hash_file(Path(image_or_pdq))
    if mh.pdq is None:
        raise PrivateMatchingError("no PDQ hash for this media (only still images are supported)")
    return bytes.fromhex(mh.pdq), int(mh.quality or 0)


def _seal_pairs(
    table: BlindedTable, vid: bytes, root: bytes, elems: list[bytes | None], shares: list[bytes]
) -> list[tuple[bytes, bytes]]:
    """Real pairs: ``Q = b*H(e) + g*G`` and ``S = b*T[pos] + g*L`` with fresh ``b, g`` per pair."""
    pairs = []
    size = len(table.slots)
    for j, elem in enumerate(elems):
        assert elem is not None
        h = element_point(elem)
        chunk_pairs = []
        for i in (0, 1):
            b, g = group.random_scalar(), group.random_scalar()
            q = group.add(group.mul(b, h), group.mul_base(g))
            slot = table.slots[position(table.seed, i, elem, size)]
            s = group.add(group.mul(b, slot), group.mul(g, table.server_public))
            key = group.kdf(s, pair_info(vid, root, j, q))
            chunk_pairs.append((q, group.seal_once(key, shares[j], vid)))
        if secrets.randbelow(2):
            chunk_pairs.reverse()
        pairs.extend(chunk_pairs)
    return pairs


def _voucher_key_shares(n: int, k: int) -> tuple[bytes, list[bytes]]:
    """A random voucher secret split ``k``-of-``n`` (shares at x = 1..n)."""
    poly = shamir.random_polynomial(secrets.randbelow(shamir.P), k)
    shares = [group.int_to_scalar(shamir.evaluate(poly, j + 1)) for j in range(n)]
    return group.int_to_scalar(poly[0]), shares


def make_voucher(
    image_or_pdq: bytes | str | Path,
    table: BlindedTable,
    account_state: AccountState,
    *,
    associated_data: bytes = b"",
    synthetic: bool | None = None,
) -> bytes:
    """The voucher for one image (or PDQ hash) to send with the encrypted message.

    ``synthetic=None`` (the default) draws a synthetic voucher with the table's ``synthetic_rate``;
    tests and benchmarks force either kind. ``associated_data`` (at most 64 bytes, e.g. a reference to
    the encrypted media) is readable by the server only once the account is over the threshold and
    only for vouchers that matched.
    """
    params = table.params
    if account_state.threshold != params.threshold:
        raise PrivateMatchingError(
            f"account state threshold {account_state.threshold} != table threshold {params.threshold}"
        )
    if len(associated_data) > AD_MAX:
        raise PrivateMatchingError(f"associated_data is limited to {AD_MAX} bytes")
    pdq, quality = _pdq_of(image_or_pdq)
    if synthetic is None:
        synthetic = secrets.randbelow(1_000_000) < int(params.synthetic_rate * 1_000_000)
    vid = os.urandom(ID_BYTES)
    root = bytes.fromhex(table.root)
    n = params.n_chunks
    vkey_secret, shares = _voucher_key_shares(n, params.chunk_threshold)

    if not synthetic:
        x = 1 + secrets.randbelow(shamir.P - 1)
        y = shamir.evaluate(account_state.coefficients, x)
        inner_pt = pdq + bytes([min(quality, 255), len(associated_data)])
        inner_pt += associated_data.ljust(AD_MAX, b"\0")
        assert len(inner_pt) == INNER_PT
        nonce = os.urandom(NONCE_BYTES)
        inner = nonce + group.seal(account_state.inner_key, nonce, inner_pt, vid)
        elems: list[bytes | None] = [element(j, v) for j, v in enumerate(chunk_values(pdq, params))]
        pairs = _seal_pairs(table, vid, root, elems, shares)
    else:
        # Random account share and inner layer; the server can open ``count`` chunks: there the pair
        # is Q = g*G, S = g*L (so alpha*Q = S), elsewhere Q is a random point and c random bytes.
        x = 1 + secrets.randbelow(shamir.P - 1)
        y = secrets.randbelow(shamir.P)
        inner = os.urandom(NONCE_BYTES + INNER_PT + group.TAG_BYTES)
        count = secrets.choice(params.synthetic_open_counts)
        opened = set(secrets.SystemRandom().sample(range(n), count))
        pairs = []
        for j in range(n):
            open_at = secrets.randbelow(2) if j in opened else -1
            for i in (0, 1):
                if i == open_at:
                    g = group.random_scalar()
                    q = group.mul_base(g)
                    s = group.mul(g, table.server_public)
                    key = group.kdf(s, pair_info(vid, root, j, q))
                    pairs.append((q, group.seal_once(key, shares[j], vid)))
                else:
                    pairs.append((group.random_point(), os.urandom(PAIR_CT)))
    outer_key = group.kdf(vkey_secret, OUTER_LABEL + vid)
    outer_pt = group.int_to_scalar(x) + group.int_to_scalar(y) + inner
    v = Voucher(vid, root, pairs, b"")
    outer = group.seal_once(outer_key, outer_pt, v.header)
    return Voucher(vid, root, pairs, outer).to_bytes()
