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
from typing import cast

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
    "downsample64_rgb",
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

_ZERO = 1e-9  # tent weights are >= 1 / window**2; below this is float residue
# Values per block of gathered rows (1 MiB of float32): stays in cache. 2 MiB blocks measured 3x slower
# on 1600x1004 (fresh pages from the allocator on every call).
_BLOCK = 1 << 18

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


@functools.lru_cache(maxsize=16)  # 64 x length floats each; only _band is used per image
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
    full = np.cumsum(diff[:, :length], axis=1)
    full[np.abs(full) < _ZERO] = 0.0  # cancellation residue outside the tent: exact zeros
    op = full.astype(np.float32)
    op.setflags(write=False)
    return op


@functools.lru_cache(maxsize=1024)  # ~12 x length bytes each
def _band(length: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """The nonzero part of :func:`axis_operator`: each row's tent covers at most ``span`` consecutive
    inputs (~ length / 64). Returns (64, span) input indices and (64, span) weights, so that
    ``axis_operator(length) @ x == einsum('rl,rl...->r...', weights, x[indices])``."""
    op = axis_operator(length)
    nonzero = op != 0
    first = nonzero.argmax(axis=1)
    last = length - 1 - nonzero[:, ::-1].argmax(axis=1)
    span = int((last - first + 1).max())
    start = np.minimum(first, length - span)  # the window stays inside; extra taps weigh 0
    idx = start[:, None] + np.arange(span)[None, :]
    weights = np.ascontiguousarray(np.take_along_axis(op, idx, axis=1))
    idx.setflags(write=False)
    weights.setflags(write=False)
    return idx, weights


def _check_pixels(pixels: npt.NDArray[np.uint8]) -> None:
    if not isinstance(pixels, np.ndarray):
        raise MediaError(f"PDQ needs a numpy array of pixels, got {type(pixels).__name__}")
    if pixels.dtype != np.uint8:
        raise MediaError(f"PDQ needs uint8 pixels, got dtype {pixels.dtype}")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise MediaError(f"PDQ needs RGB pixels of shape (H, W, 3), got {pixels.shape}")


def luma(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """(..., 3) uint8 RGB -> (...) float32 luma, bit-identical to ``pdqhash``'s bindings, which compute
    0.299 R + 0.587 G + 0.114 B in float64 and round to float32.

    Computed as N / 1000 in float32 with N = 299 R + 587 G + 114 B: N is an integer below 2**24, so the
    uint8 @ float32 product is exact whatever the summation order, and IEEE division rounds N / 1000
    correctly; the float64 sum is within 1e-13 of N / 1000 and no such quotient lies that close to a
    float32 rounding boundary, so both round to the same float32 (checked over all 2**24 RGB triplets
    in tests/test_pdq_numpy.py)."""
    gray = pixels @ _LUMA_MILLI
    gray /= np.float32(1000.0)
    return np.asarray(gray, dtype=np.float32)


def _filter_rows(
    src: npt.NDArray[np.uint8] | npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """(64, W): the tent filter + decimation along the rows of ``src`` (H, W) float32 luma, or of
    (H, W, 3) uint8 pixels whose luma is computed only for the rows the tents read, block by block."""
    idx, weights = _band(src.shape[0])
    width = src.shape[1]
    out = np.empty((_OUT, width), dtype=np.float32)
    step = max(1, _BLOCK // (idx.shape[1] * width))
    for r in range(0, _OUT, step):
        rows = src[idx[r : r + step]]  # (k, span, W) or (k, span, W, 3)
        block = luma(cast("npt.NDArray[np.uint8]", rows)) if rows.ndim == 4 else rows
        out[r : r + step] = np.einsum("rl,rlw->rw", weights[r : r + step], block)
    return out


def _filter_cols(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(64, 64): the tent filter + decimation along the columns of the (64, W) row pass."""
    idx, weights = _band(rows.shape[1])
    return np.asarray(np.einsum("rcl,cl->rc", rows[:, idx], weights), dtype=np.float32)


def downsample64(gray: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Jarosz tent filter + decimation of (H, W) float32 luma to the reference's 64x64 buffer, i.e.
    ``axis_operator(H) @ gray @ axis_operator(W).T`` computed on the tents' nonzero taps only
    (no BLAS: no thread pool to contend with, ~H x W x 2 multiply-adds instead of 64 x H x W)."""
    return _filter_cols(_filter_rows(np.asarray(gray, dtype=np.float32)))


def downsample64_rgb(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """:func:`downsample64` of :func:`luma` of (H, W, 3) uint8 pixels, luma computed block by block."""
    return _filter_cols(_filter_rows(pixels))


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
    buffer64 = downsample64_rgb(pixels)
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
