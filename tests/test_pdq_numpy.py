"""PDQ in numpy (lifeguard.signals.pdq_numpy) against Meta's C++ code (pdqhash) on the same pixels,
and its parts against literal ports of the reference's loops (downscaling.cpp, pdqhashing.cpp)."""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pdqhash
import pytest

from conftest import PHOTOS, TE_DATA
from lifeguard.errors import MediaError
from lifeguard.signals.image import decode_image
from lifeguard.signals.pdq import DIHEDRAL_NAMES, bits_to_hex, hamming
from lifeguard.signals.pdq_numpy import (
    _band,
    axis_operator,
    dct16,
    dct16_dihedrals,
    decimation_indices,
    downsample64,
    downsample64_rgb,
    jarosz_window,
    luma,
    pdq_bits,
    pdq_dihedral_numpy,
    pdq_numpy,
    quality_metric,
)

Pixels = npt.NDArray[np.uint8]
MAX_BITS = 2  # float rounding may flip a coefficient sitting on the median

KODAK = sorted((PHOTOS / "kodak").glob("*.png"))[:12]
CLOTHING = sorted((PHOTOS / "clothing").glob("*.jpg"))[:24]
REFERENCE = sorted(
    p
    for p in (TE_DATA / "pdq-data").rglob("*")
    if p.suffix.lower() in {".jpg", ".png", ".webp"} and "exif-rotn" not in p.parts
)
# The four 12 MP exif-rotn photos: one is enough to cover big images (and keeps the test fast).
BIG = [TE_DATA / "pdq-data/reg-test-input/exif-rotn/exif-rotn-6.jpg"]


@functools.cache
def _pixels(path: Path) -> Pixels:
    return decode_image(path, fast=False).pixels


def _ref(px: Pixels) -> tuple[str, int]:
    bits, q = pdqhash.compute(np.ascontiguousarray(px))
    return bits_to_hex(bits), int(q)


def _ref_dihedral(px: Pixels) -> tuple[list[str], int]:
    hashes, q = pdqhash.compute_dihedral(np.ascontiguousarray(px))
    return [bits_to_hex(h) for h in hashes], int(q)


def _assert_agrees(px: Pixels, *, dihedral: bool = True) -> None:
    h_ref, q_ref = _ref(px)
    h_np, q_np = pdq_numpy(px)
    assert hamming(h_ref, h_np) <= MAX_BITS, (h_ref, h_np)
    assert q_np == q_ref
    if dihedral:
        d_ref, dq_ref = _ref_dihedral(px)
        d_np, dq_np = pdq_dihedral_numpy(px)
        assert len(d_np) == 8
        for name, a, b in zip(DIHEDRAL_NAMES, d_ref, d_np, strict=True):
            assert hamming(a, b) <= MAX_BITS, name
        assert dq_np == dq_ref
        assert d_np[0] == h_np  # the original comes from the same DCT


# ---------------------------------------------------------------- literal ports of the reference loops


def _box1d_literal(x: npt.NDArray[np.floating], window: int) -> npt.NDArray[np.floating]:
    """``box1DFloat`` along axis 0, phase by phase, in x's dtype (float32 sums like the C++)."""
    n = x.shape[0]
    half = (window + 2) // 2
    out = np.zeros_like(x)
    s = np.zeros(x.shape[1:], dtype=x.dtype)
    cur = li = ri = oi = 0
    for _ in range(half - 1):
        s = s + x[ri]
        cur += 1
        ri += 1
    for _ in range(window - half + 1):
        s = s + x[ri]
        cur += 1
        out[oi] = s / x.dtype.type(cur)
        ri += 1
        oi += 1
    for _ in range(n - window):
        s = s + x[ri]
        s = s - x[li]
        out[oi] = s / x.dtype.type(cur)
        li += 1
        ri += 1
        oi += 1
    for _ in range(half - 1):
        s = s - x[li]
        cur -= 1
        out[oi] = s / x.dtype.type(cur)
        li += 1
        oi += 1
    return out


def _downsample_literal(gray: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``jaroszFilterFloat`` (2 x rows then columns) + ``decimateFloat``, float32 throughout."""
    h, w = gray.shape
    win_rows = (w + 127) // 128  # window along rows, from the number of columns
    win_cols = (h + 127) // 128
    buf = gray.copy()
    for _ in range(2):
        buf = _box1d_literal(buf.T, win_rows).T
        buf = _box1d_literal(buf, win_cols)
    rows = [int(((i + 0.5) * h) / 64) for i in range(64)]
    cols = [int(((j + 0.5) * w) / 64) for j in range(64)]
    return buf[np.ix_(rows, cols)]


def _quality_literal(b: npt.NDArray[np.float32]) -> int:
    total = 0
    f = np.float32
    for i in range(63):
        for j in range(64):
            total += abs(int(((b[i, j] - b[i + 1, j]) * f(100)) / f(255)))
    for i in range(64):
        for j in range(63):
            total += abs(int(((b[i, j] - b[i, j + 1]) * f(100)) / f(255)))
    return min(total // 90, 100)


@pytest.mark.parametrize(
    "length", [5, 6, 7, 63, 64, 65, 127, 128, 129, 130, 255, 256, 257, 333, 400, 533, 768, 1004]
)
def test_axis_operator_is_the_reference_tent_filter_and_decimation(length: int) -> None:
    window = jarosz_window(length)
    assert window == -(-length // 128)
    once = _box1d_literal(np.eye(length), window)
    expected = _box1d_literal(once, window)[decimation_indices(length)]
    op = axis_operator(length)
    assert op.shape == (64, length)
    np.testing.assert_allclose(op, expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(op.sum(axis=1), 1.0, atol=1e-5)  # averages keep brightness


@pytest.mark.parametrize("length", [5, 64, 129, 400, 533, 1600, 4032])
def test_banded_taps_hold_every_nonzero_weight(length: int) -> None:
    idx, weights = _band(length)
    dense = np.zeros((64, length), dtype=np.float32)
    np.add.at(dense, (np.arange(64)[:, None].repeat(idx.shape[1], axis=1), idx), weights)
    np.testing.assert_array_equal(dense, axis_operator(length))
    assert idx.shape[1] <= 2 * jarosz_window(length) + 1  # a tent: two boxes wide, not the image


def test_rgb_downsample_equals_gray_downsample_and_the_dense_product() -> None:
    px = _pixels(KODAK[2])
    gray = luma(px)
    via_rgb = downsample64_rgb(px)
    np.testing.assert_array_equal(via_rgb, downsample64(gray))
    dense = axis_operator(px.shape[0]) @ gray.astype(np.float64) @ axis_operator(px.shape[1]).T
    np.testing.assert_allclose(via_rgb, dense, rtol=0, atol=1e-3)


def test_decimation_positions_are_sample_centres() -> None:
    assert list(decimation_indices(64)) == list(range(64))
    assert list(decimation_indices(128)[:3]) == [1, 3, 5]
    idx = decimation_indices(100)
    assert list(idx) == [int(((i + 0.5) * 100) / 64) for i in range(64)]


@pytest.mark.parametrize("shape", [(70, 90), (131, 257), (300, 41)])
def test_downsample_matches_a_literal_port_of_the_reference(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    # smooth-ish content (a photo-like gradient plus noise) in the luma range
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    gray = (128 + 60 * np.sin(yy / 9.0) * np.cos(xx / 13.0) + rng.normal(0, 20, shape)).astype(
        np.float32
    )
    ours = downsample64(gray)
    literal = _downsample_literal(gray)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, literal, rtol=0, atol=2e-3)
    assert quality_metric(ours) == _quality_literal(literal)


def test_quality_metric_formula() -> None:
    step = np.zeros((64, 64), dtype=np.float32)
    step[:, 32:] = 255.0  # one vertical edge: 64 horizontal differences of int(-100) each
    assert quality_metric(step) == 6400 // 90
    assert quality_metric(step.T) == 6400 // 90
    small = np.zeros((64, 64), dtype=np.float32)
    small[:, 32:] = 2.54  # (2.54 * 100) / 255 = 0.996 -> truncates to 0
    assert quality_metric(small) == 0
    stripes = np.tile(np.array([0.0, 255.0], dtype=np.float32), (64, 32))
    assert quality_metric(stripes) == 100  # capped
    rng = np.random.default_rng(3)
    buf = rng.uniform(0, 40, (64, 64)).astype(np.float32)
    assert quality_metric(buf) == _quality_literal(buf)


def test_luma_is_bit_identical_to_the_bindings_gray_for_every_rgb_triplet() -> None:
    g, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    gb = np.stack([g.ravel(), b.ravel()], axis=1).astype(np.uint8)
    for r in range(256):
        px = np.concatenate([np.full((gb.shape[0], 1), r, dtype=np.uint8), gb], axis=1)
        px = px.reshape(256, 256, 3)
        ref = (px[:, :, 0] * 0.299 + px[:, :, 1] * 0.587 + px[:, :, 2] * 0.114).astype(np.float32)
        got = luma(px)
        assert got.dtype == np.float32
        assert np.array_equal(got, ref), r


def test_luma_of_a_photo_and_of_a_strided_view() -> None:
    px = _pixels(KODAK[0])
    for view in (px, px[::-1, ::2]):
        ref = (view[:, :, 0] * 0.299 + view[:, :, 1] * 0.587 + view[:, :, 2] * 0.114).astype(
            np.float32
        )
        np.testing.assert_array_equal(luma(view), ref)


@pytest.mark.parametrize("path", KODAK[:4] + CLOTHING[:4], ids=lambda p: p.name[:12])
def test_dct_is_close_to_the_reference_float_dct_and_bits_follow_it(path: Path) -> None:
    px = _pixels(path)
    ref_flat, q_ref = pdqhash.compute_float(np.ascontiguousarray(px))
    ref_dct = np.asarray(ref_flat, dtype=np.float32)[::-1].reshape(16, 16)
    buf = downsample64(luma(px))
    ours = dct16(buf)
    scale = float(np.abs(ref_dct).max())
    np.testing.assert_allclose(ours, ref_dct, rtol=0, atol=1e-5 * scale)
    assert quality_metric(buf) == q_ref
    # bit extraction and the dihedral sign tables alone are exact: on the reference's own DCT they
    # give the reference's hashes bit for bit
    assert pdq_bits(ref_dct) == _ref(px)[0]
    assert [pdq_bits(d) for d in dct16_dihedrals(ref_dct)] == _ref_dihedral(px)[0]


@pytest.mark.parametrize("path", KODAK + CLOTHING, ids=lambda p: p.name[:12])
def test_agrees_with_pdqhash_on_photos(path: Path) -> None:
    _assert_agrees(_pixels(path))


@pytest.mark.parametrize("path", REFERENCE, ids=lambda p: str(p.relative_to(TE_DATA / "pdq-data")))
def test_agrees_with_pdqhash_on_meta_reference_images(path: Path) -> None:
    _assert_agrees(_pixels(path))


def test_agrees_with_pdqhash_on_a_12_megapixel_photo() -> None:
    px = _pixels(BIG[0])
    assert px.shape[0] * px.shape[1] >= 12_000_000
    _assert_agrees(px, dihedral=False)


def test_expected_cpp_reference_hashes() -> None:
    with (TE_DATA / "expected-pdq-cpp-reference.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if "exif-rotn" not in r["path"]]
    assert len(rows) >= 40
    for r in rows:
        h, q = pdq_numpy(_pixels(TE_DATA / r["path"]))
        assert hamming(h, r["pdq_hex"]) <= MAX_BITS, r["path"]
        assert q == int(r["quality"]), r["path"]
    bridge = _pixels(TE_DATA / "pdq-data/reg-test-input/dih/bridge-1-original.jpg")
    assert pdq_numpy(bridge) == (
        "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
        100,
    )


def _photo_like(shape: tuple[int, int]) -> Pixels:
    base = _pixels(KODAK[4])
    ys = np.linspace(0, base.shape[0] - 1, shape[0]).astype(int)
    xs = np.linspace(0, base.shape[1] - 1, shape[1]).astype(int)
    return np.ascontiguousarray(base[ys][:, xs])


ODD = [(5, 5), (5, 6), (6, 5), (7, 9), (5, 1000), (1000, 5), (7, 3000), (3000, 9), (64, 64)]
ODD += [(65, 63), (127, 129), (128, 128), (129, 200), (1, 2000), (2000, 1)]


@pytest.mark.parametrize("shape", ODD, ids=lambda s: f"{s[0]}x{s[1]}")
def test_odd_sizes(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 7919 + shape[1])
    _assert_agrees(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    _assert_agrees(_photo_like(shape))


@pytest.mark.parametrize("shape", [(1, 1), (1, 50), (4, 100), (100, 4), (4, 4), (0, 10)])
def test_too_small_hashes_to_zero_with_quality_zero(shape: tuple[int, int]) -> None:
    px = np.full((*shape, 3), 200, dtype=np.uint8)
    assert pdq_numpy(px) == ("0" * 64, 0)
    assert pdq_dihedral_numpy(px) == (["0" * 64] * 8, 0)
    if 0 not in shape:
        assert _ref(px) == ("0" * 64, 0)


NON_CONTIGUOUS: dict[str, Callable[[Pixels], Pixels]] = {
    "strided": lambda a: a[::2, ::3],
    "transposed": lambda a: a.transpose(1, 0, 2),
    "reversed": lambda a: a[::-1, ::-1],
    "fortran": np.asfortranarray,
    "crop": lambda a: a[17:300, 33:701],
    "channel_reversed_bgr": lambda a: a[:, :, ::-1],
}


@pytest.mark.parametrize("name", list(NON_CONTIGUOUS))
def test_non_contiguous_arrays(name: str) -> None:
    px = NON_CONTIGUOUS[name](_pixels(KODAK[1]))
    if name != "fortran":
        assert not px.flags.c_contiguous
    ro = px.view()
    ro.flags.writeable = False
    _assert_agrees(ro)


def test_flat_image_has_quality_zero() -> None:
    # All DCT coefficients are ~0 and the bits are float noise in both implementations; quality 0
    # is what marks such hashes as unusable (lifeguard discards quality < 50).
    px = np.full((100, 120, 3), 128, dtype=np.uint8)
    assert pdq_numpy(px)[1] == 0 == _ref(px)[1]
    assert pdq_numpy(np.zeros((80, 80, 3), dtype=np.uint8)) == _ref(np.zeros((80, 80, 3), np.uint8))


TRANSFORMS: dict[str, Callable[[Pixels], Pixels]] = {
    "original": lambda a: a,
    "rotate90_ccw": lambda a: np.rot90(a, 1),
    "rotate180": lambda a: np.rot90(a, 2),
    "rotate90_cw": lambda a: np.rot90(a, -1),
    "flip_top_bottom": lambda a: a[::-1],
    "flip_left_right": lambda a: a[:, ::-1],
    "transpose": lambda a: a.transpose(1, 0, 2),
    "transverse": lambda a: np.rot90(a, 2).transpose(1, 0, 2),
}


@pytest.mark.parametrize("path", KODAK[:3] + CLOTHING[:3], ids=lambda p: p.name[:12])
def test_dihedral_order_matches_the_transformed_pixels(path: Path) -> None:
    assert tuple(TRANSFORMS) == DIHEDRAL_NAMES
    px = _pixels(path)
    variants, _ = pdq_dihedral_numpy(px)
    ref_variants, _ = _ref_dihedral(px)
    for i, (name, transform) in enumerate(TRANSFORMS.items()):
        moved = transform(px)
        direct, _ = pdq_numpy(moved)
        assert hamming(direct, _ref(moved)[0]) <= MAX_BITS, name
        dists = [hamming(direct, v) for v in variants]
        # the variant derived from the DCT is the hash of the moved pixels up to the filter's
        # asymmetry (pdqhash shows the same gap), and far from every other variant
        assert dists.index(min(dists)) == i, (name, dists)
        assert dists[i] <= 40, (name, dists)
        assert abs(dists[i] - hamming(direct, ref_variants[i])) <= 2 * MAX_BITS, name
        assert min(d for j, d in enumerate(dists) if j != i) >= 64, (name, dists)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10, 3), dtype=np.float32),
        np.zeros((10, 10), dtype=np.uint8),
        np.zeros((10, 10, 4), dtype=np.uint8),
        np.zeros((2, 10, 10, 3), dtype=np.uint8),
        [[[0, 0, 0]]],
    ],
    ids=["float", "grey", "rgba", "4d", "list"],
)
def test_bad_input_raises_media_error(bad: object) -> None:
    with pytest.raises(MediaError):
        pdq_numpy(bad)  # type: ignore[arg-type]
    with pytest.raises(MediaError):
        pdq_dihedral_numpy(bad)  # type: ignore[arg-type]
