"""Robust PDQ matching beyond the plain hash: dihedral, border/bar trimming, deskew and region variants.

Plain PDQ survives photometric edits (JPEG, resize, blur, brightness, greyscale) but not geometric ones.
This module adds a small number of extra hashes on each side of a match:

* **Query side** (:func:`query_variants`): the 8 dihedral hashes of the image (one DCT, so flips and
  90-degree rotations cost almost nothing); ``trimmed``, the hash of the image with flat borders,
  frames and caption/status/app/navigation bars removed (:func:`trim_box`); and ``deskewed``, the hash
  of a photo rotated by a small angle onto a flat background, rotated back (:func:`deskew_angle`).
* **Listing side** (:func:`listing_variants`): besides the plain hash, ``trimmed`` (same trimming, so an
  original with flat borders of its own meets a padded or captioned copy half-way); ``region90``, the
  centred 90% of the (trimmed) image, so that a centrally cropped copy matches by its plain hash;
  ``crop90_tl`` / ``_tr`` / ``_bl`` / ``_br``, the 90% anchored at each corner, for a copy cropped from
  two sides (optional, ``corners=``); and ``region80``, the centred 80%. PDQ tolerates a crop
  offset of only about 1% of the image (measured in docs/robustness.md), so these catch crops at or
  near those positions, not crops at arbitrary offsets.

A match is any query variant within the PDQ threshold of any listed hash (plain or listing variant);
hashes with quality below the caller's minimum are skipped by the caller.

Trimming works on a copy subsampled to at most :data:`TRIM_WORK_SIDE` pixels per side. Lines (rows and
columns) are stripped from each edge inward: first *border* lines (>= :data:`TRIM_BORDER_FRACTION` of
pixels within :data:`TRIM_TOLERANCE` of the line's dominant colour: pads, letterboxes), rows and columns
alternately until stable; then also *bar* lines that continue a border's colour with text or icons on
them (see :func:`_scan_edge`), so the colour may change from bar to bar (status bar, app bar, letterbox,
nav bar) but smooth photo content (sky, a wall) next to a bar is kept. If less than
:data:`TRIM_MIN_KEEP` of either dimension would remain there is no trimmed variant. Each edge is then
refined at full resolution. Measured figures and limits: docs/robustness.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from lifeguard.errors import MediaError
from lifeguard.signals.pdq import DIHEDRAL_NAMES, hamming, pdq_dihedral_from_pixels, pdq_from_pixels

RGBArray = npt.NDArray[np.uint8]

#: Trimming analyses a copy subsampled to at most this many pixels on its long side.
TRIM_WORK_SIDE = 256
#: A pixel is "flat" when every channel is within this many levels of the line's dominant colour.
TRIM_TOLERANCE = 4
#: Phase 1 strips lines with at least this fraction of flat pixels (uniform borders, letterbox).
TRIM_BORDER_FRACTION = 0.97
#: Phase 2 strips bar lines whose smoothed flat fraction reaches this (bars carrying text or icons).
TRIM_BAR_FRACTION = 0.60
#: Phase 2: a line continues a bar only if its dominant colour is within this of the bar colour.
TRIM_BAR_COLOUR = 12
#: Phase 2 smooths line flatness with a running median over this fraction of the long side (each way).
TRIM_SMOOTH = 0.008
#: Never keep less than this fraction of the width or of the height (no trimmed variant then).
TRIM_MIN_KEEP = 0.25
#: A trimmed box must remove at least this fraction of the width or height to be worth a variant.
TRIM_MIN_REMOVED = 0.02
#: Images smaller than this (either side) are hashed plainly: no trimming, no regions.
MIN_SIDE = 32
#: Deskew: corner/background colour tolerance (content = pixels further than this from it).
DESKEW_TOLERANCE = 8
#: Listing-side centred region variants: name -> fraction of the (trimmed) image kept, centred.
REGIONS: tuple[tuple[str, float], ...] = (("region90", 0.90), ("region80", 0.80))
#: Fraction of the (trimmed) image kept by the corner-anchored crop variants.
CORNER_KEEP = 0.90
#: Listing-side corner-anchored crop variants: name -> (anchored at the right?, at the bottom?).
CORNERS: tuple[tuple[str, bool, bool], ...] = (
    ("crop90_tl", False, False),
    ("crop90_tr", True, False),
    ("crop90_bl", False, True),
    ("crop90_br", True, True),
)
#: A listing variant closer than this to an already-kept hash adds nothing and is dropped.
REDUNDANT_DISTANCE = 4


@dataclass(frozen=True, slots=True)
class Variant:
    """One extra (or plain) PDQ hash of an image, named after the transformation that produced it."""

    name: str
    pdq: str
    quality: int


def _check_pixels(pixels: RGBArray) -> RGBArray:
    if not isinstance(pixels, np.ndarray):
        raise MediaError(
            f"pixels must be a numpy array, got {type(pixels).__name__}", code="bad_pixels"
        )
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise MediaError(
            f"pixels must be an (H, W, 3) RGB array, got shape {pixels.shape}", code="bad_pixels"
        )
    if pixels.dtype != np.uint8:
        raise MediaError(f"pixels must be uint8, got {pixels.dtype}", code="bad_pixels")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise MediaError(f"pixels have an empty dimension: {pixels.shape}", code="bad_pixels")
    return pixels


def _channel_max(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``a.max(axis=-1)`` for 3 channels, as two element-wise maxima (numpy reduces a length-3 last
    axis slowly)."""
    out: npt.NDArray[Any] = np.maximum(np.maximum(a[..., 0], a[..., 1]), a[..., 2])
    return out


def _line_stats(
    lines: npt.NDArray[np.int16],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(k, n, 3) lines -> each line's dominant colour (k, 3) and the fraction (k,) of its pixels
    within :data:`TRIM_TOLERANCE` of it.

    The dominant colour is the mean of the pixels in the line's most common 32-level colour bin (a mode,
    not a median: a line through dark text on a light bar is still dominated by the bar colour).
    """
    k = lines.shape[0]
    if k == 0:
        return np.zeros(0, dtype=np.float64), np.zeros((0, 3), dtype=np.float64)
    q = (lines >> 5).astype(np.int32)
    codes = (q[..., 0] << 6) | (q[..., 1] << 3) | q[..., 2]  # (k, n) in [0, 512)
    flat_codes = (codes + (np.arange(k, dtype=np.int32) << 9)[:, None]).ravel()
    counts = np.bincount(flat_codes, minlength=k * 512).reshape(k, 512)
    mode = counts.argmax(axis=1)
    in_mode = codes == mode[:, None]
    n_mode = in_mode.sum(axis=1, keepdims=True)
    colour = (lines * in_mode[..., None]).sum(axis=1) / n_mode  # (k, 3) mean colour of the mode bin
    within = _channel_max(np.abs(lines - colour[:, None, :])) <= TRIM_TOLERANCE
    return within.mean(axis=1), colour


def _flat_fractions(lines: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    return _line_stats(lines)[0]


Colour = npt.NDArray[np.float64]


def _scan_edge(
    lines: npt.NDArray[np.int16], room: int, bars: bool, ref: Colour | None, smooth: int
) -> tuple[int, Colour | None]:
    """How many leading lines (axis 0) to strip, at most ``room``, and the bar colour afterwards.

    A *border* line (>= :data:`TRIM_BORDER_FRACTION` flat) is always stripped and sets the bar colour
    ``ref``. With ``bars``, a line is also stripped when it continues the bar: over a running median of
    ``2*smooth+1`` lines (bridging horizontal text strokes), lines count as flat by their fraction only
    if their dominant colour is the bar colour (border lines count fully); the median must reach
    :data:`TRIM_BAR_FRACTION`. So text and icons on a bar are stripped with it, but photo content next
    to a bar is not, even if it is smooth (sky), unless it is dominated by the bar's own colour.
    Statistics are computed on a growing prefix, so the cost follows what is stripped."""
    total = lines.shape[0]
    limit = min(room, total)
    frac = np.zeros(0, dtype=np.float64)
    col = np.zeros((0, 3), dtype=np.float64)
    history: list[float] = [1.0] * smooth  # lines beyond the edge / already stripped count as flat
    i = 0
    while i < limit:
        need = min(total, i + smooth + 1)
        if frac.size < need:
            end = min(total, max(need, 2 * frac.size, 8))
            f2, c2 = _line_stats(lines[frac.size : end])
            frac, col = np.concatenate([frac, f2]), np.concatenate([col, c2])
        if frac[i] >= TRIM_BORDER_FRACTION:
            ref = col[i]
            history.append(1.0)
            i += 1
            continue
        if not bars or ref is None:
            break
        ahead = [
            1.0
            if frac[j] >= TRIM_BORDER_FRACTION
            else (float(frac[j]) if np.abs(col[j] - ref).max() <= TRIM_BAR_COLOUR else 0.0)
            for j in range(i, need)
        ]
        window = (history[len(history) - smooth :] if smooth else []) + ahead
        if float(np.median(window)) < TRIM_BAR_FRACTION:
            break
        history.append(ahead[0])
        i += 1
    return i, ref


def _trim_small(
    small: npt.NDArray[np.int16], min_h: int, min_w: int
) -> list[tuple[int, int, int, int]]:
    """Trim boxes (top, bottom, left, right) in ``small``'s coordinates after phase 1 (border lines
    only, rows and columns alternately until stable, so pads of any width go first) and after phase 2
    (bars too); the scan stops at ``min_h`` x ``min_w``."""
    h, w = small.shape[:2]
    t, b, lo, hi = 0, h, 0, w
    refs: list[Colour | None] = [None, None, None, None]  # bar colour at top, bottom, left, right
    boxes: list[tuple[int, int, int, int]] = []
    smooth_bar = max(1, round(TRIM_SMOOTH * max(h, w)))
    for bars in (False, True):
        smooth = smooth_bar if bars else 0
        for _ in range(16):  # alternate rows and columns until stable
            before = (t, b, lo, hi)
            rows = small[t:b, lo:hi]
            room = max(0, (b - t) - min_h)
            dt, refs[0] = _scan_edge(rows, room, bars, refs[0], smooth)
            db, refs[1] = _scan_edge(rows[::-1], room - dt, bars, refs[1], smooth)
            t, b = t + dt, b - db
            cols = small[t:b, lo:hi].transpose(1, 0, 2)
            room = max(0, (hi - lo) - min_w)
            dl, refs[2] = _scan_edge(cols, room, bars, refs[2], smooth)
            dr, refs[3] = _scan_edge(cols[::-1], room - dl, bars, refs[3], smooth)
            lo, hi = lo + dl, hi - dr
            if (t, b, lo, hi) == before:
                break
        boxes.append((t, b, lo, hi))
    return boxes


def _refine(
    pixels: RGBArray, box: tuple[int, int, int, int], step: int
) -> tuple[int, int, int, int]:
    """Full-resolution precision for each trimmed edge: of the ``step - 1`` unsampled lines between
    the last stripped sample line and the box, those from the stripped side inward that are
    flat-dominant stay stripped; the rest are given back to the box."""
    left, top, right, bottom = box
    height, width = pixels.shape[:2]

    def flat_run(lines: npt.NDArray[np.uint8]) -> int:
        if lines.shape[0] == 0:
            return 0
        flat = _flat_fractions(lines.astype(np.int16)) >= TRIM_BAR_FRACTION
        return lines.shape[0] if flat.all() else int(np.argmin(flat))

    if top > 0:
        start = max(0, top - step + 1)
        top = start + flat_run(pixels[start:top, left:right])
    if bottom < height:
        end = min(height, bottom + step - 1)
        bottom = end - flat_run(pixels[bottom:end, left:right][::-1])
    if left > 0:
        start = max(0, left - step + 1)
        left = start + flat_run(pixels[top:bottom, start:left].transpose(1, 0, 2))
    if right < width:
        end = min(width, right + step - 1)
        right = end - flat_run(pixels[top:bottom, right:end].transpose(1, 0, 2)[::-1])
    return left, top, right, bottom


def trim_box(pixels: RGBArray) -> tuple[int, int, int, int] | None:
    """The main photo region after stripping flat borders/bars: (left, top, right, bottom), exclusive.

    None when nothing (or almost nothing, < :data:`TRIM_MIN_REMOVED`) would be trimmed, when the image is
    smaller than :data:`MIN_SIDE`, or when trimming would keep less than :data:`TRIM_MIN_KEEP` of the
    width or height (a mostly flat image: no trustworthy region). If only the bar phase would keep
    too little, the box of the border phase alone is returned.
    """
    pixels = _check_pixels(pixels)
    height, width = pixels.shape[:2]
    if height < MIN_SIDE or width < MIN_SIDE:
        return None
    step = max(1, math.ceil(max(height, width) / TRIM_WORK_SIDE))
    small = pixels[::step, ::step].astype(np.int16)
    sh, sw = small.shape[:2]
    # Both phases start at a border line (bars are only followed from one): with none of the four
    # outermost lines a border line, nothing would be trimmed.
    edges = np.stack([small[0], small[-1]]), np.stack([small[:, 0], small[:, -1]])
    if all((_flat_fractions(e) < TRIM_BORDER_FRACTION).all() for e in edges):
        return None
    min_h = max(1, math.ceil(sh * TRIM_MIN_KEEP))
    min_w = max(1, math.ceil(sw * TRIM_MIN_KEEP))
    # Let the scan run one line past the minimum so that "would remove too much" is detectable; if
    # the bar phase removes too much, fall back to the border phase alone.
    ok = [
        box
        for box in _trim_small(small, min_h - 1, min_w - 1)
        if box[1] - box[0] >= min_h and box[3] - box[2] >= min_w
    ]
    if not ok:
        return None
    t, b, lo, hi = ok[-1]
    left, top = lo * step, t * step
    right = width if hi == sw else min(width, hi * step)
    bottom = height if b == sh else min(height, b * step)
    if step > 1:
        left, top, right, bottom = _refine(pixels, (left, top, right, bottom), step)
    removed = max(1.0 - (right - left) / width, 1.0 - (bottom - top) / height)
    if removed < TRIM_MIN_REMOVED:
        return None
    return left, top, right, bottom


def _crop(pixels: RGBArray, box: tuple[int, int, int, int]) -> RGBArray:
    left, top, right, bottom = box
    return np.ascontiguousarray(pixels[top:bottom, left:right])


def _centre(box: tuple[int, int, int, int], keep: float) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    dx = round(w * (1.0 - keep) / 2.0)
    dy = round(h * (1.0 - keep) / 2.0)
    return left + dx, top + dy, right - dx, bottom - dy


def _corner(
    box: tuple[int, int, int, int], keep: float, right: bool, bottom: bool
) -> tuple[int, int, int, int]:
    """The ``keep`` x ``keep`` part of ``box`` anchored at one corner (the rest cut from the other
    two sides, as a user cropping from one side would)."""
    left, top, r, b = box
    dx = round((r - left) * (1.0 - keep))
    dy = round((b - top) * (1.0 - keep))
    return (
        left + dx if right else left,
        top + dy if bottom else top,
        r if right else r - dx,
        b if bottom else b - dy,
    )


def _fit_line(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> tuple[float, float] | None:
    """Least-squares slope of y(x) after one round of outlier rejection, and the RMS residual."""
    if x.size < 8:
        return None
    slope, icpt = np.polyfit(x, y, 1)
    res = np.abs(y - (slope * x + icpt))
    keep = res <= max(2.0, float(np.median(res)) * 3.0)
    if keep.sum() < max(8, x.size // 2):
        return None
    slope, icpt = np.polyfit(x[keep], y[keep], 1)
    rms = float(np.sqrt(np.mean((y[keep] - (slope * x[keep] + icpt)) ** 2)))
    return float(slope), rms


def deskew_angle(pixels: RGBArray) -> float | None:
    """Counter-clockwise angle (degrees) by which a photo was rotated onto a flat background with its
    corners showing (Pillow's ``rotate(angle, expand=True)``), or None when the image does not look
    like that: all four image corners the same flat colour, and the top and bottom boundaries of the
    content straight, parallel lines at 0.5-30 degrees."""
    pixels = _check_pixels(pixels)
    height, width = pixels.shape[:2]
    if height < 2 * MIN_SIDE or width < 2 * MIN_SIDE:
        return None
    step = max(1, math.ceil(max(height, width) / TRIM_WORK_SIDE))
    small = pixels[::step, ::step].astype(np.int16)
    corners = np.stack([small[0, 0], small[0, -1], small[-1, 0], small[-1, -1]])
    # The median of 4 integers is a multiple of 1/2: compare doubled values in int16, exactly.
    bg2 = np.round(2 * np.median(corners, axis=0)).astype(np.int16)
    if np.abs(2 * corners - bg2).max() > 2 * DESKEW_TOLERANCE:
        return None
    mask = _channel_max(np.abs(2 * small - bg2)) > 2 * DESKEW_TOLERANCE
    cols = np.nonzero(mask.any(axis=0))[0]
    if cols.size < 16:
        return None
    top = np.argmax(mask[:, cols], axis=0).astype(np.float64)
    bottom = (mask.shape[0] - 1 - np.argmax(mask[::-1, cols], axis=0)).astype(np.float64)
    xs = cols.astype(np.float64)
    # The longer straight stretch of the top boundary runs from the extreme corner (topmost point)
    # to one side; fit the middle 60% of it, and the parallel stretch of the bottom boundary.
    apex = int(np.argmin(top))
    left_span, right_span = apex, cols.size - 1 - apex
    if max(left_span, right_span) < 16:
        return None
    lo, hi = (0, apex) if left_span >= right_span else (apex, cols.size - 1)
    a, b = lo + (hi - lo) // 5, hi - (hi - lo) // 5
    low = int(np.argmax(bottom))
    blo, bhi = (low, cols.size - 1) if left_span >= right_span else (0, low)
    c, d = blo + (bhi - blo) // 5, bhi - (bhi - blo) // 5
    fit_top = _fit_line(xs[a:b], top[a:b])
    fit_bottom = _fit_line(xs[c:d], bottom[c:d])
    if fit_top is None or fit_bottom is None:
        return None
    angle_top = math.degrees(math.atan(-fit_top[0]))
    angle_bottom = math.degrees(math.atan(-fit_bottom[0]))
    if abs(angle_top - angle_bottom) > 1.0 or max(fit_top[1], fit_bottom[1]) > 1.5:
        return None
    angle = (angle_top + angle_bottom) / 2.0
    if not 0.5 <= abs(angle) <= 30.0:
        return None
    return angle


def _deskew(pixels: RGBArray, angle: float) -> RGBArray | None:
    """Undo a rotation by ``angle`` (CCW degrees, canvas expanded) and crop the original rectangle."""
    height, width = pixels.shape[:2]
    rad = math.radians(abs(angle))
    cos, sin = math.cos(rad), math.sin(rad)
    det = cos * cos - sin * sin
    w0 = (width * cos - height * sin) / det
    h0 = (height * cos - width * sin) / det
    if w0 < MIN_SIDE or h0 < MIN_SIDE:
        return None
    w0i, h0i = round(w0), round(h0)
    sn = math.sin(math.radians(angle))
    # output (x, y) -> input: centre_in + R(angle) (p - centre_out)
    data = (
        cos,
        sn,
        width / 2 - (w0i / 2) * cos - (h0i / 2) * sn,
        -sn,
        cos,
        height / 2 + (w0i / 2) * sn - (h0i / 2) * cos,
    )
    im = Image.fromarray(pixels).transform(
        (w0i, h0i), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(im, dtype=np.uint8)


def query_variants(pixels: RGBArray) -> list[Variant]:
    """Hashes a query looks up: the 8 dihedral hashes (``original`` is the plain PDQ hash) and
    ``trimmed`` (flat borders/bars removed), without duplicate hashes.

    Raises :class:`MediaError` if ``pixels`` is not an (H, W, 3) uint8 array.
    """
    pixels = _check_pixels(pixels)
    out: list[Variant] = []
    seen: set[str] = set()
    for name, h in zip(DIHEDRAL_NAMES, pdq_dihedral_from_pixels(pixels), strict=True):
        if h.hex not in seen:
            seen.add(h.hex)
            out.append(Variant(name, h.hex, h.quality))
    box = trim_box(pixels)
    if box is not None:
        h = pdq_from_pixels(_crop(pixels, box))
        if h.hex not in seen:
            seen.add(h.hex)
            out.append(Variant("trimmed", h.hex, h.quality))
    angle = deskew_angle(pixels)
    if angle is not None:
        straight = _deskew(pixels, angle)
        if straight is not None:
            h = pdq_from_pixels(straight)
            if h.hex not in seen:
                seen.add(h.hex)
                out.append(Variant("deskewed", h.hex, h.quality))
    return out


def listing_variants(
    pixels: RGBArray, plain: str | None = None, *, corners: bool = True
) -> list[Variant]:
    """Extra hashes stored for a listed image besides its plain hash, in this order: ``trimmed`` (if
    trimming applies); ``region90``, the centred 90% x 90% of the trimmed (else whole) image; with
    ``corners``, ``crop90_tl`` / ``crop90_tr`` / ``crop90_bl`` / ``crop90_br``, its 90% x 90% anchored at
    each corner (a copy cropped from two sides); and ``region80``, the centred 80% x 80%. Variants
    within :data:`REDUNDANT_DISTANCE` of the plain hash or of an earlier variant are dropped.

    ``plain`` is the image's plain PDQ hex if the caller already has it (saves one hash computation).
    Raises :class:`MediaError` if ``pixels`` is not an (H, W, 3) uint8 array.
    """
    pixels = _check_pixels(pixels)
    height, width = pixels.shape[:2]
    if height < MIN_SIDE or width < MIN_SIDE:
        return []
    kept: list[str] = [plain if plain is not None else pdq_from_pixels(pixels).hex]
    out: list[Variant] = []

    def add(name: str, box: tuple[int, int, int, int]) -> None:
        h = pdq_from_pixels(_crop(pixels, box))
        if all(hamming(h.hex, k) > REDUNDANT_DISTANCE for k in kept):
            kept.append(h.hex)
            out.append(Variant(name, h.hex, h.quality))

    trimmed = trim_box(pixels)
    if trimmed is not None:
        add("trimmed", trimmed)
    base = trimmed if trimmed is not None else (0, 0, width, height)
    regions = dict(REGIONS)
    add("region90", _centre(base, regions["region90"]))
    if corners:
        for name, right, bottom in CORNERS:
            add(name, _corner(base, CORNER_KEEP, right, bottom))
    for name, keep in REGIONS:
        if name != "region90":
            add(name, _centre(base, keep))
    return out
