"""PDQ hashing, and hash conversions.

Two engines compute the same algorithm: ``numpy`` (default; :mod:`lifeguard.signals.pdq_numpy`, 4-6x
faster on upload-sized images, 20x on large ones) and ``reference`` (Meta's C++ through the ``pdqhash``
bindings). On the same pixels they agree bit for bit on the plain hash and the quality of all 3,574
test images (photos corpus + Meta's reference set); a derived dihedral variant differs by 2 bits on
~0.1% of images, where two DCT values next to the median swap order (docs/benchmarks.md, "PDQ: numpy
implementation vs pdqhash"). Choose with ``LIFEGUARD_PDQ_ENGINE``; the conformance tests run both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pdqhash

from lifeguard.signals import pdq_numpy

Engine = Literal["numpy", "reference"]

DIHEDRAL_NAMES: tuple[str, ...] = (
    "original",
    "rotate90_ccw",  # the image turned 90 degrees counter-clockwise (numpy rot90 k=1)
    "rotate180",
    "rotate90_cw",  # turned 90 degrees clockwise
    "flip_top_bottom",  # mirrored about the horizontal axis (Meta's "flipX")
    "flip_left_right",  # mirrored about the vertical axis (Meta's "flipY")
    "transpose",  # mirrored about the main diagonal (Meta's "flipPlus1")
    "transverse",  # mirrored about the anti-diagonal (Meta's "flipMinus1")
)
"""Names of the 8 dihedral variants, in the order ``pdqhash.compute_dihedral`` returns them.

Variant *i* is the hash of the image after that transform. As a query variant it means: the query,
so transformed, matched the listed hash (a query that is a listed photo turned clockwise matches through
``rotate90_ccw``)."""

PDQ_BITS = 256


@dataclass(frozen=True, slots=True)
class PdqHash:
    hex: str
    quality: int


def bits_to_hex(bits: npt.NDArray[np.integer]) -> str:
    """256 bits (most significant first, as ``pdqhash`` returns them) -> 64 hex digits."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def hex_to_bytes(hex_str: str) -> bytes:
    return bytes.fromhex(hex_str)


def hexes_to_array(hexes: list[str]) -> npt.NDArray[np.uint8]:
    """Many PDQ hex strings -> (N, 32) uint8 array."""
    if not hexes:
        return np.zeros((0, 32), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(-1, 32).copy()


def array_to_hexes(arr: npt.NDArray[np.uint8]) -> list[str]:
    raw = np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    return [raw[i : i + 32].hex() for i in range(0, len(raw), 32)]


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@functools.cache
def default_engine() -> Engine:
    """The process's engine: ``Settings().pdq_engine`` (``LIFEGUARD_PDQ_ENGINE``), read once."""
    from lifeguard.settings import Settings

    return Settings().pdq_engine


def pdq_from_pixels(pixels: npt.NDArray[np.uint8], engine: Engine | None = None) -> PdqHash:
    """PDQ of RGB (H, W, 3) uint8 pixels (see the module notes on the two engines)."""
    if (engine or default_engine()) == "numpy":
        hx, quality = pdq_numpy.pdq_numpy(pixels)
        return PdqHash(hx, quality)
    bits, q = pdqhash.compute(np.ascontiguousarray(pixels))
    return PdqHash(bits_to_hex(bits), int(q))


def pdq_dihedral_from_pixels(
    pixels: npt.NDArray[np.uint8], engine: Engine | None = None
) -> list[PdqHash]:
    """The 8 dihedral PDQ hashes from one DCT (order: :data:`DIHEDRAL_NAMES`)."""
    if (engine or default_engine()) == "numpy":
        hexes, quality = pdq_numpy.pdq_dihedral_numpy(pixels)
        return [PdqHash(h, quality) for h in hexes]
    hashes, q = pdqhash.compute_dihedral(np.ascontiguousarray(pixels))
    return [PdqHash(bits_to_hex(h), int(q)) for h in hashes]
