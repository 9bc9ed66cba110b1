"""Parameters, PDQ chunking and errors of the private matching protocol."""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field

from ...errors import LifeguardError

PDQ_BITS = 256
PDQ_BYTES = 32
#: How many of 8 chunks the counted copies in bench/bench_private_matching.py opened (1x8, 2026-11-25:
#: 1:162 2:153 3:108 4:116 5:88 6:302 7:57 8:460 of 1,446), in 28ths: the default for synthetic
#: vouchers with 8 chunks, so their opened-chunk count looks like that of real matches.
MEASURED_OPEN_8 = (1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5) + (6,) * 6 + (7,) + (8,) * 9


class PrivateMatchingError(LifeguardError):
    """Bad input to the private matching protocol."""

    code = "private_matching"


class InvalidVoucher(PrivateMatchingError):
    code = "invalid_voucher"


class InvalidTable(PrivateMatchingError):
    code = "invalid_table"


class CommitmentMismatch(PrivateMatchingError):
    """The blinded table does not hash to the published commitment (root)."""

    code = "commitment_mismatch"


@dataclass(frozen=True)
class Params:
    """Public parameters, fixed per blinded table (they are part of its header and commitment).

    * ``views`` x ``chunks`` chunks of ``256 / chunks`` bits each are cut from every PDQ hash. View 0
      takes consecutive bits; each further view first applies a fixed public bit permutation.
      A copy within Hamming distance ``< chunks`` of a listed hash shares at least one whole chunk with
      it in every view (pigeonhole).
    * ``chunk_threshold``: how many chunks must match for the server to open a voucher's outer layer.
    * ``threshold``: how many matching vouchers an account needs before the inner layers open.
    * ``match_distance``: the PDQ distance the server checks once inner layers are readable.
    * ``synthetic_rate``: how often a client sends a synthetic voucher instead of a real one.
    * ``synthetic_open``: how many chunks a synthetic voucher lets the server open (picked uniformly
      from this tuple). Default: with 8 chunks, the measured mix :data:`MEASURED_OPEN_8`; otherwise all
      chunks (like an exact copy). Counts below ``chunk_threshold`` are raised to it.
    """

    views: int = 1
    chunks: int = 8
    chunk_threshold: int = 1
    threshold: int = 10
    match_distance: int = 31
    synthetic_rate: float = 0.02
    synthetic_open: tuple[int, ...] = field(default=())
    load_factor: float = 0.45

    def __post_init__(self) -> None:
        if self.chunks not in (4, 8, 16, 32):
            raise PrivateMatchingError("chunks must be 4, 8, 16 or 32 (whole bytes per chunk)")
        if not 1 <= self.views <= 4:
            raise PrivateMatchingError("views must be between 1 and 4")
        if not 1 <= self.chunk_threshold <= self.n_chunks:
            raise PrivateMatchingError("chunk_threshold must be between 1 and views * chunks")
        if not 1 <= self.threshold <= 1000:
            raise PrivateMatchingError("threshold must be between 1 and 1000")
        if not 0 <= self.match_distance <= PDQ_BITS:
            raise PrivateMatchingError("match_distance must be between 0 and 256")
        if not 0.0 <= self.synthetic_rate < 1.0:
            raise PrivateMatchingError("synthetic_rate must be in [0, 1)")
        if not 0.1 <= self.load_factor <= 0.49:
            raise PrivateMatchingError(
                "load_factor must be in [0.1, 0.49] (two-choice cuckoo table)"
            )
        for c in self.synthetic_open:
            if not self.chunk_threshold <= c <= self.n_chunks:
                raise PrivateMatchingError(
                    "synthetic_open counts must be in [chunk_threshold, n_chunks]"
                )

    @property
    def n_chunks(self) -> int:
        return self.views * self.chunks

    @property
    def chunk_bytes(self) -> int:
        return PDQ_BYTES // self.chunks

    @property
    def synthetic_open_counts(self) -> tuple[int, ...]:
        default = MEASURED_OPEN_8 if self.n_chunks == 8 else (self.n_chunks,)
        return tuple(max(c, self.chunk_threshold) for c in self.synthetic_open or default)

    def pack(self) -> bytes:
        """Canonical encoding (table header); the synthetic rate is the client's policy, also bound here."""
        counts = self.synthetic_open_counts
        return struct.pack(
            ">BBBHHdd B",
            self.views,
            self.chunks,
            self.chunk_threshold,
            self.threshold,
            self.match_distance,
            self.synthetic_rate,
            self.load_factor,
            len(counts),
        ) + bytes(counts)

    @classmethod
    def unpack(cls, data: bytes) -> tuple[Params, int]:
        """Decode :meth:`pack` output at the start of ``data``; returns the params and bytes used."""
        head = struct.calcsize(">BBBHHdd B")
        if len(data) < head:
            raise InvalidTable("table header is truncated")
        v, c, ct, t, md, rate, load, n = struct.unpack(">BBBHHdd B", data[:head])
        counts = tuple(data[head : head + n])
        if len(counts) != n:
            raise InvalidTable("table header is truncated")
        return cls(v, c, ct, t, md, rate, counts, load), head + n


def _permutation(view: int) -> list[int]:
    if view == 0:
        return list(range(PDQ_BITS))
    perm = list(range(PDQ_BITS))
    random.Random(hashlib.sha256(b"lifeguard/pm/view/%d" % view).digest()).shuffle(perm)
    return perm


_PERMS = [_permutation(v) for v in range(4)]


def chunk_values(pdq: bytes, params: Params) -> list[bytes]:
    """The ``views * chunks`` chunk values of a 32-byte PDQ hash, in a fixed order."""
    if len(pdq) != PDQ_BYTES:
        raise PrivateMatchingError("a PDQ hash is 32 bytes (64 hex digits)")
    out: list[bytes] = []
    cb = params.chunk_bytes
    for view in range(params.views):
        if view == 0:
            data = pdq
        else:
            bits = int.from_bytes(pdq, "big")
            perm = _PERMS[view]
            v = 0
            for src in perm:
                v = (v << 1) | ((bits >> (PDQ_BITS - 1 - src)) & 1)
            data = v.to_bytes(PDQ_BYTES, "big")
        out.extend(data[i : i + cb] for i in range(0, PDQ_BYTES, cb))
    return out


def element(index: int, value: bytes) -> bytes:
    """The set element for chunk ``index`` (over all views) with value ``value``."""
    return struct.pack(">H", index) + value


def parse_pdq(value: bytes | str) -> bytes:
    """A PDQ hash as 32 bytes from bytes or 64 hex digits."""
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise PrivateMatchingError("PDQ hash must be 64 hex digits") from None
    else:
        raw = bytes(value)
    if len(raw) != PDQ_BYTES:
        raise PrivateMatchingError("a PDQ hash is 32 bytes (64 hex digits)")
    return raw
