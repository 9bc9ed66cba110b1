"""Wire format of a voucher and the labels both sides derive keys with.

``b"LGV1"`` | voucher id (16) | table root (32) | ``2 * n_chunks`` pairs ``Q (32) || c (48)`` | outer
ciphertext. Pairs ``2j`` and ``2j + 1`` are chunk ``j`` looked up at its two cuckoo positions, in
random order; ``c`` seals chunk ``j``'s
share of the voucher key under ``HKDF(S)``. The outer ciphertext (voucher key) seals the account share
``x (32) || y (32)``, the inner nonce (12) and the inner ciphertext (account key), which seals
``pdq (32) || quality (1) || len(ad) (1) || ad padded to 64``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .group import POINT_BYTES, TAG_BYTES
from .params import InvalidVoucher, Params

MAGIC = b"LGV1"
ID_BYTES = 16
ROOT_BYTES = 32
PAIR_PT = 32
PAIR_CT = PAIR_PT + TAG_BYTES
PAIR_BYTES = POINT_BYTES + PAIR_CT
AD_MAX = 64
INNER_PT = 32 + 1 + 1 + AD_MAX
INNER_CT = INNER_PT + TAG_BYTES
NONCE_BYTES = 12
OUTER_PT = 32 + 32 + NONCE_BYTES + INNER_CT
OUTER_CT = OUTER_PT + TAG_BYTES
HEADER = len(MAGIC) + ID_BYTES + ROOT_BYTES

PAIR_LABEL = b"lifeguard/pm/v1/pair"
OUTER_LABEL = b"lifeguard/pm/v1/outer"
INNER_LABEL = b"lifeguard/pm/v1/inner"


def voucher_size(params: Params) -> int:
    return HEADER + 2 * params.n_chunks * PAIR_BYTES + OUTER_CT


def pair_info(voucher_id: bytes, root: bytes, chunk: int, q: bytes) -> bytes:
    """KDF context of a pair. It names the chunk, not the cuckoo position: the client puts the two
    pairs of a chunk in random order, so the server does not learn which position matched."""
    return PAIR_LABEL + voucher_id + root + struct.pack(">H", chunk) + q


@dataclass(frozen=True)
class Voucher:
    voucher_id: bytes
    root: bytes
    pairs: list[tuple[bytes, bytes]]  # index 2*j + i -> (Q, c)
    outer: bytes

    @property
    def header(self) -> bytes:
        return MAGIC + self.voucher_id + self.root

    def to_bytes(self) -> bytes:
        return self.header + b"".join(q + c for q, c in self.pairs) + self.outer

    @classmethod
    def from_bytes(cls, data: bytes, params: Params) -> Voucher:
        if not data.startswith(MAGIC):
            raise InvalidVoucher("not a lifeguard voucher (bad magic)")
        want = voucher_size(params)
        if len(data) != want:
            raise InvalidVoucher(f"voucher is {len(data)} bytes; this table's vouchers are {want}")
        vid = data[4 : 4 + ID_BYTES]
        root = data[4 + ID_BYTES : HEADER]
        off = HEADER
        pairs = []
        for _ in range(2 * params.n_chunks):
            pairs.append(
                (data[off : off + POINT_BYTES], data[off + POINT_BYTES : off + PAIR_BYTES])
            )
            off += PAIR_BYTES
        return cls(vid, root, pairs, data[off:])
