"""The blinded table: every chunk of every listed PDQ hash, blinded by the server and placed by cuckoo
hashing, plus a commitment (root hash) that clients compare with the published one.

Layout of :meth:`BlindedTable.to_bytes`: ``b"LGPMT1"``, the packed :class:`Params`, a 16-byte seed (for
the two cuckoo position functions), the server's public point ``L = alpha * G`` (32 bytes), the slot
count (4 bytes, big-endian), then the slots (32-byte ristretto255 points). A slot holds
``alpha * H(element)`` for one listed chunk element, or a random point.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from . import group
from .params import (
    CommitmentMismatch,
    InvalidTable,
    Params,
    PrivateMatchingError,
    chunk_values,
    element,
    parse_pdq,
)

MAGIC = b"LGPMT1"
ELEMENT_LABEL = b"lifeguard/pm/v1/element"
LEAF_SLOTS = 1024
_MAX_KICKS = 2000


def position(seed: bytes, which: int, elem: bytes, size: int) -> int:
    """Cuckoo position ``which`` (0 or 1) of an element in a table of ``size`` slots."""
    d = hashlib.sha256(seed + bytes([which]) + elem).digest()
    return int.from_bytes(d[:8], "big") % size


def element_point(elem: bytes) -> bytes:
    return group.hash_to_point(ELEMENT_LABEL, elem)


@dataclass(frozen=True)
class ServerKey:
    """The server's blinding scalar ``alpha`` (secret) and public point ``L = alpha * G``."""

    alpha: bytes

    @classmethod
    def generate(cls) -> ServerKey:
        return cls(group.random_scalar())

    @property
    def public(self) -> bytes:
        return group.mul_base(self.alpha)


def _merkle_root(slots: list[bytes]) -> bytes:
    level = [
        hashlib.sha256(b"\x00" + b"".join(slots[i : i + LEAF_SLOTS])).digest()
        for i in range(0, len(slots), LEAF_SLOTS)
    ] or [hashlib.sha256(b"\x00").digest()]
    while len(level) > 1:
        nxt = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


@dataclass
class BlindedTable:
    """What every client downloads. Holds no secret; :attr:`root` is its commitment."""

    params: Params
    seed: bytes
    server_public: bytes
    slots: list[bytes]

    @property
    def header(self) -> bytes:
        return (
            MAGIC
            + self.params.pack()
            + self.seed
            + self.server_public
            + struct.pack(">I", len(self.slots))
        )

    @cached_property
    def root(self) -> str:
        """Hex commitment: SHA-256 over the header digest and a Merkle root of 1,024-slot leaves."""
        h = hashlib.sha256(
            b"lifeguard/pm/v1/root"
            + hashlib.sha256(self.header).digest()
            + _merkle_root(self.slots)
        )
        return h.hexdigest()

    def to_bytes(self) -> bytes:
        return self.header + b"".join(self.slots)

    @property
    def size_bytes(self) -> int:
        return len(self.header) + group.POINT_BYTES * len(self.slots)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, expected_root: str | None = None, validate_points: bool = True
    ) -> BlindedTable:
        """Parse a table; with ``expected_root``, refuse it unless it matches the published commitment.

        ``validate_points`` checks every slot is a canonical ristretto255 encoding (about 10 us a slot).
        """
        if not data.startswith(MAGIC):
            raise InvalidTable("not a lifeguard blinded table (bad magic)")
        params, used = Params.unpack(data[len(MAGIC) :])
        off = len(MAGIC) + used
        if len(data) < off + 16 + 32 + 4:
            raise InvalidTable("table header is truncated")
        seed = data[off : off + 16]
        public = data[off + 16 : off + 48]
        (size,) = struct.unpack(">I", data[off + 48 : off + 52])
        body = data[off + 52 :]
        if size == 0 or len(body) != size * group.POINT_BYTES:
            raise InvalidTable(f"table body is {len(body)} bytes; the header says {size} slots")
        slots = [body[i : i + 32] for i in range(0, len(body), 32)]
        if not group.is_valid_point(public):
            raise InvalidTable("server public point is not a valid ristretto255 point")
        if validate_points:
            for i, s in enumerate(slots):
                if not group.is_valid_point(s):
                    raise InvalidTable(f"slot {i} is not a valid ristretto255 point")
        table = cls(params, seed, public, slots)
        if expected_root is not None and table.root != expected_root.lower():
            raise CommitmentMismatch(
                f"table root {table.root} differs from the published root {expected_root}"
            )
        return table


def listed_elements(pdqs: Iterable[bytes | str], params: Params) -> list[bytes]:
    """The distinct chunk elements of the listed hashes (what the table stores, blinded)."""
    seen: dict[bytes, None] = {}
    for p in pdqs:
        for i, v in enumerate(chunk_values(parse_pdq(p), params)):
            seen.setdefault(element(i, v), None)
    return list(seen)


def _place(elements: list[bytes], size: int, seed: bytes, rng: random.Random) -> list[int] | None:
    """Cuckoo placement: slot -> element index (or -1); None when an insertion fails."""
    slots = [-1] * size
    pos = [(position(seed, 0, e, size), position(seed, 1, e, size)) for e in elements]
    for idx in range(len(elements)):
        cur = idx
        which = 0
        for _ in range(_MAX_KICKS):
            a, b = pos[cur]
            if slots[a] == -1:
                slots[a] = cur
                break
            if slots[b] == -1:
                slots[b] = cur
                break
            target = (a, b)[which]
            slots[target], cur = cur, slots[target]
            which = rng.randrange(2)
        else:
            return None
    return slots


def build_table(
    pdqs: Iterable[bytes | str], params: Params, key: ServerKey, *, max_attempts: int = 8
) -> BlindedTable:
    """Blind and place every chunk element of ``pdqs`` (server side; cost ~ one scalar mult each)."""
    elements = listed_elements(pdqs, params)
    if not elements:
        raise PrivateMatchingError("the list is empty")
    size = max(8, math.ceil(len(elements) / params.load_factor))
    rng = random.Random(os.urandom(16))
    for _ in range(max_attempts):
        seed = os.urandom(16)
        placement = _place(elements, size, seed, rng)
        if placement is not None:
            break
    else:  # pragma: no cover - vanishingly rare at load <= 0.49
        raise PrivateMatchingError("cuckoo placement failed; lower load_factor")
    slots = [
        group.mul(key.alpha, element_point(elements[i])) if i >= 0 else group.random_point()
        for i in placement
    ]
    return BlindedTable(params, seed, key.public, slots)
