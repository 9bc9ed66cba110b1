"""PDQ in numpy: Meta's reference algorithm (``pdq/cpp`` in facebook/ThreatExchange) restated as small
matrix products, for speed on the upload path.

The reference turns RGB into float luma, blurs the full image with a Jarosz tent filter (two passes of
a box filter along rows and columns, window ``ceil(dim / 128)``), keeps 64x64 samples of the blurred
image (``decimateFloat``), computes a quality score on those samples, a 16x16 DCT, and sets each bit
where the DCT coefficient is above the median (Torben's median: the 128th smallest of 256).

The blur and the decimation are linear and only 64 rows and 64 columns of the blurred image are kept,
so they collapse into two small operators built once per dimension::

    buffer64x64 = Ky (64 x H) @ luma (H x W) @ Kx.T (W x 64)

``Ky`` and ``Kx`` are the reference box filter (same windows, same clipped edges, same divisors),
applied twice and then sampled at the reference's decimation positions. The results match the C++ code
up to float rounding (the reference sums in float32 in its own order); see docs/benchmarks.md for the
measured agreement with ``pdqhash``.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from lifeguard.errors import MediaError

__all__ = [
    "MIN_HASHABLE_DIM",
    "axis_operator",
    "dct16",
    "dct16_dihedrals",
    "decimation_indices",
    "downsample64",
    "jarosz_window",
    "luma",
    "pdq_bits",
    "pdq_dihedral_numpy",
    "pdq_numpy",
    "quality_metric",
]

MIN_HASHABLE_DIM = 5
"""Images smaller than this on either side hash to all zeros with quality 0 (as in the reference)."""

_OUT = 64  # side of the downsampled buffer
_DCT = 16  # side of the DCT output kept

# Luma weights x 1000 (see :func:`luma`).
_LUMA_MILLI = np.array([299.0, 587.0, 114.0], dtype=np.float32)

_HEX_ZERO = "0" * 64


def _dct_matrix() -> npt.NDArray[np.float32]:
    """16x64 DCT-II rows 1..16, as ``dct_matrix_64`` in pdqhashing.cpp (float32 scale x double cos)."""
    scale = np.float32(np.sqrt(2.0 / 64.0))
    i = np.arange(1, _DCT + 1, dtype=np.float64)[:, None]
    j = np.arange(64, dtype=np.float64)[None, :]
    return (float(scale) * np.cos((np.pi / 2.0 / 64.0) * i * (2.0 * j + 1.0))).astype(np.float32)


_D = _dct_matrix()
_DT = np.ascontiguousarray(_D.T)


def jarosz_window(old_dim: int, new_dim: int = _OUT) -> int:
    """``computeJaroszFilterWindowSize``: ceil(old / (2 * new))."""
    return (old_dim + 2 * new_dim - 1) // (2 * new_dim)


def _box_bounds(length: int, window: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Inclusive input range [lo, hi] averaged into each output of ``box1DFloat``.

    The reference reads ``half - 1`` values ahead (``half = (window + 2) // 2``) and ``window - half``
    behind, clipped at both ends; it divides by the number of values actually summed."""
    half = (window + 2) // 2
    o = np.arange(length)
    lo = np.maximum(o - (window - half), 0)
    hi = np.minimum(o + half - 1, length - 1)
    return lo, hi


def decimation_indices(length: int, out: int = _OUT) -> npt.NDArray[np.intp]:
    """``decimateFloat`` sample positions: int(((i + 0.5) * length) / out), computed in double."""
    return (((np.arange(out, dtype=np.float64) + 0.5) * length) / out).astype(np.intp)


@functools.lru_cache(maxsize=256)
def axis_operator(length: int) -> npt.NDArray[np.float32]:
    """(64, length) float32 matrix: two box-filter passes along one axis, then the 64 decimation samples.

    Row r is e_s.T @ B @ B (s: the r-th sample position, B: the ``box1DFloat`` matrix, whose row o
    averages inputs lo[o]..hi[o]). e_s.T @ B averages rows lo[s]..hi[s] of B, each a box itself, so a
    row needs only ~window boxes, summed through a difference array: O(64 * (window + length))."""
    window = jarosz_window(length)
    lo, hi = _box_bounds(length, window)
    count = (hi - lo + 1).astype(np.float64)
    s = decimation_indices(length)
    j = lo[s][:, None] + np.arange(window)[None, :]  # (64, window): rows of B averaged by pass one
    inside = j <= hi[s][:, None]
    j = np.minimum(j, length - 1)
    weight = np.where(inside, 1.0 / count[s][:, None], 0.0) / count[j]
    rows = np.broadcast_to(np.arange(_OUT)[:, None], j.shape)
    diff = np.zeros((_OUT, length + 1), dtype=np.float64)
    np.add.at(diff, (rows, lo[j]), weight)
    np.add.at(diff, (rows, hi[j] + 1), -weight)
    op = np.cumsum(diff[:, :length], axis=1).astype(np.float32)
    op.setflags(write=False)
    return op


def _check_pixels(pixels: npt.NDArray[np.uint8]) -> None:
    if not isinstance(pixels, np.ndarray):
        raise MediaError(f"PDQ needs a numpy array of pixels, got {type(pixels).__name__}")
    if pixels.dtype != np.uint8:
        raise MediaError(f"PDQ needs uint8 pixels, got dtype {pixels.dtype}")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise MediaError(f"PDQ needs RGB pixels of shape (H, W, 3), got {pixels.shape}")


def luma(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """(H, W) float32 luma, bit-identical to ``pdqhash``'s bindings, which compute
    0.299 R + 0.587 G + 0.114 B in float64 and round to float32.

    Computed as N / 1000 in float32 with N = 299 R + 587 G + 114 B: N is an integer below 2**24, so the
    uint8 @ float32 product is exact whatever the summation order, and IEEE division rounds N / 1000
    correctly; the float64 sum is within 1e-13 of N / 1000 and no such quotient lies that close to a
    float32 rounding boundary, so both round to the same float32 (checked over all 2**24 RGB triplets
    in tests/test_pdq_numpy.py)."""
    gray = pixels @ _LUMA_MILLI
    gray /= np.float32(1000.0)
    return np.asarray(gray, dtype=np.float32)


def downsample64(gray: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Jarosz tent filter + decimation of (H, W) float32 luma to the reference's 64x64 buffer."""
    g = np.asarray(gray, dtype=np.float32)
    h, w = g.shape
    ky = axis_operator(h)
    kx = axis_operator(w)
    # The big product costs 64 x H x W either way; reducing the longer side first keeps the
    # intermediate small.
    out = (ky @ g) @ kx.T if h <= w else ky @ (g @ kx.T)
    return np.asarray(out, dtype=np.float32)


def quality_metric(buffer64: npt.NDArray[np.float32]) -> int:
    """``pdqImageDomainQualityMetric``: sum of int(((u - v) * 100) / 255) over vertical and
    horizontal neighbours in float32, truncated toward zero, / 90, capped at 100."""
    b = np.asarray(buffer64, dtype=np.float32)
    hundred = np.float32(100.0)
    denom = np.float32(255.0)
    dv = ((b[:-1, :] - b[1:, :]) * hundred) / denom
    dh = ((b[:, :-1] - b[:, 1:]) * hundred) / denom
    total = int(np.abs(dv.astype(np.int32)).sum()) + int(np.abs(dh.astype(np.int32)).sum())
    return min(total // 90, 100)


def dct16(buffer64: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``dct64To16``: D (16x64) @ A @ D.T."""
    return np.asarray((_D @ buffer64) @ _DT, dtype=np.float32)


def pdq_bits(dct: npt.NDArray[np.float32]) -> str:
    """``pdqBuffer16x16ToBits`` + the bindings' bit order, as 64 hex digits.

    Bit i*16+j (counting from the least significant) is set where the coefficient is above the Torben
    median, which for 256 values is the 128th smallest."""
    flat = dct.reshape(-1)
    median = np.partition(flat, 127)[127]
    return np.packbits((flat > median)[::-1]).tobytes().hex()


def dct16_dihedrals(dct: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    """The 8 dihedral variants of a 16x16 DCT, in ``pdqDihedralHash256esFromFloatLuma`` order
    (original, rotate90, rotate180, rotate270, flipX, flipY, flipPlus1, flipMinus1) — the order of
    :data:`lifeguard.signals.pdq.DIHEDRAL_NAMES`.

    DCT row/column k+1 of a mirrored axis changes sign for even k; a rotation by 90 degrees also
    transposes."""
    odd = (np.arange(_DCT) & 1).astype(bool)
    sign = np.where(odd, np.float32(1.0), np.float32(-1.0)).astype(np.float32)  # +1 odd, -1 even
    row_sign = sign[:, None]  # multiply rows i
    col_sign = sign[None, :]  # multiply columns j
    a = dct
    return [
        a,
        (a * col_sign).T,  # rotate90: B[j][i] = A[i][j] * (j odd ? 1 : -1)
        a * (row_sign * col_sign),  # rotate180: sign (-1)^(i+j)
        (a * row_sign).T,  # rotate270: B[j][i] = A[i][j] * (i odd ? 1 : -1)
        a * row_sign,  # flipX
        a * col_sign,  # flipY
        a.T,  # flipPlus1
        (a * (row_sign * col_sign)).T,  # flipMinus1
    ]


def _dct_and_quality(pixels: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], int] | None:
    _check_pixels(pixels)
    h, w, _ = pixels.shape
    if h < MIN_HASHABLE_DIM or w < MIN_HASHABLE_DIM:
        return None
    buffer64 = downsample64(luma(pixels))
    return dct16(buffer64), quality_metric(buffer64)


def pdq_numpy(pixels: npt.NDArray[np.uint8]) -> tuple[str, int]:
    """PDQ (64 hex digits, quality 0..100) of RGB (H, W, 3) uint8 pixels, like ``pdqhash.compute``.

    Any strides are accepted (views, crops, flips)."""
    res = _dct_and_quality(pixels)
    if res is None:
        return _HEX_ZERO, 0
    dct, quality = res
    return pdq_bits(dct), quality


def pdq_dihedral_numpy(pixels: npt.NDArray[np.uint8]) -> tuple[list[str], int]:
    """The 8 dihedral PDQ hashes (order: ``DIHEDRAL_NAMES``) and the quality, from one DCT,
    like ``pdqhash.compute_dihedral``."""
    res = _dct_and_quality(pixels)
    if res is None:
        return [_HEX_ZERO] * 8, 0
    dct, quality = res
    return [pdq_bits(d) for d in dct16_dihedrals(dct)], quality
