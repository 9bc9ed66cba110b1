"""lifeguard.signals.variants: dihedral, trimming, region and deskew variants on real (benign) photos."""

from __future__ import annotations

import io
import itertools
import random

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw

from conftest import PHOTOS
from lifeguard import edits
from lifeguard.errors import MediaError
from lifeguard.matching.matcher import LISTED_VARIANTS, _variant_kind
from lifeguard.signals.image import decode_image
from lifeguard.signals.pdq import DIHEDRAL_NAMES, hamming, pdq_from_pixels
from lifeguard.signals.variants import (
    Variant,
    deskew_angle,
    listing_variants,
    query_variants,
    trim_box,
)

THRESHOLD = 31
KODAK = PHOTOS / "kodak"


def _pixels(name: str) -> npt.NDArray[np.uint8]:
    return decode_image(KODAK / name).pixels


def _edited(name: str, edit: str, seed: int = 0) -> npt.NDArray[np.uint8]:
    return decode_image(edits.apply_edit(edit, Image.fromarray(_pixels(name)), seed)).pixels


def _listed(pixels: npt.NDArray[np.uint8]) -> list[Variant]:
    plain = pdq_from_pixels(pixels)
    return [Variant("plain", plain.hex, plain.quality), *listing_variants(pixels, plain.hex)]


def _best(query: list[Variant], listed: list[Variant]) -> tuple[int, str, str]:
    """(distance, query variant name, listed variant name) of the closest pair."""
    return min(
        (hamming(q.pdq, lv.pdq), q.name, lv.name)
        for q in query
        for lv in listed
        if q.quality >= 50 and lv.quality >= 50
    )


def _jpeg(im: Image.Image) -> npt.NDArray[np.uint8]:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return decode_image(buf.getvalue()).pixels


# ---------------------------------------------------------------- dihedral


def test_query_variants_plain_hash_is_original() -> None:
    px = _pixels("05.png")
    qv = query_variants(px)
    assert qv[0].name == "original"
    assert qv[0].pdq == pdq_from_pixels(px).hex
    assert len({v.pdq for v in qv}) == len(qv)  # no duplicate hashes
    assert {v.name for v in qv} >= set(DIHEDRAL_NAMES)


@pytest.mark.parametrize("edit", ["flip_h", "flip_v", "rotate90", "rotate180"])
def test_flips_and_right_angle_rotations_match_via_dihedral(edit: str) -> None:
    listed = _listed(_pixels("07.png"))
    query = query_variants(_edited("07.png", edit))
    plain_distance = hamming(query[0].pdq, listed[0].pdq)
    assert plain_distance > THRESHOLD  # plain PDQ misses it ...
    dist, qname, lname = _best(query, listed)
    assert dist <= THRESHOLD  # ... a dihedral variant finds it
    assert qname in DIHEDRAL_NAMES and qname != "original"
    assert lname == "plain"


# ---------------------------------------------------------------- trimming


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (40, 160, 90)])
def test_trim_box_recovers_padded_photo(colour: tuple[int, int, int]) -> None:
    px = _pixels("13.png")
    h, w = px.shape[:2]
    canvas = Image.new("RGB", (w + 150, h + 90), colour)
    canvas.paste(Image.fromarray(px), (100, 30))
    padded = _jpeg(canvas)
    box = trim_box(padded)
    assert box is not None
    expected = (100, 30, 100 + w, 30 + h)
    # within a few pixels (JPEG chroma bleeding at a coloured border), cutting at most 3 px into the photo
    assert all(abs(a - b) <= 5 for a, b in zip(box, expected, strict=True)), (box, expected)
    assert box[0] <= 103 and box[1] <= 33 and box[2] >= 97 + w and box[3] >= 27 + h, box
    dist, qname, _lname = _best(query_variants(padded), _listed(px))
    assert dist <= THRESHOLD
    assert qname == "trimmed"


def test_trim_strips_bars_of_different_colours_with_text() -> None:
    """Status bar + app bar + letterbox + nav bar, each its own colour, text and icons on them."""
    px = _pixels("21.png")
    h, w = px.shape[:2]
    canvas = Image.new("RGB", (w, h + 400), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, w, 40), fill=(250, 250, 250))
    draw.text((10, 10), "9:41", fill=(0, 0, 0))
    draw.rectangle((0, 40, w, 110), fill=(33, 150, 243))
    draw.text((w // 2 - 30, 60), "Gallery", fill=(255, 255, 255))
    canvas.paste(Image.fromarray(px), (0, 200))
    draw.rectangle((0, h + 340, w, h + 400), fill=(230, 230, 230))
    draw.ellipse((w // 2 - 12, h + 358, w // 2 + 12, h + 382), outline=(60, 60, 60), width=2)
    shot = _jpeg(canvas)
    box = trim_box(shot)
    assert box is not None
    assert all(abs(a - b) <= 4 for a, b in zip(box, (0, 200, w, 200 + h), strict=True)), box


@pytest.mark.parametrize(("name", "edit"), [("03.png", "caption"), ("08.png", "screenshot")])
def test_caption_and_screenshot_match_via_trimmed(name: str, edit: str) -> None:
    listed = _listed(_pixels(name))
    query = query_variants(_edited(name, edit, seed=1))
    assert hamming(query[0].pdq, listed[0].pdq) > THRESHOLD
    dist, qname, _ = _best(query, listed)
    assert dist <= THRESHOLD
    assert qname == "trimmed"


def test_listed_media_with_its_own_frame_meets_a_captioned_copy_half_way() -> None:
    """The listed original has a white frame; the query adds a caption bar above that frame. Neither
    plain hash matches; both sides trim to the photo, so trimmed meets trimmed."""
    px = _pixels("16.png")
    h, w = px.shape[:2]
    framed = Image.new("RGB", (w + 120, h + 120), (255, 255, 255))
    framed.paste(Image.fromarray(px), (60, 60))
    listed_px = _jpeg(framed)
    listed = _listed(listed_px)
    assert "trimmed" in {v.name for v in listed}
    query_px = decode_image(edits.apply_edit("caption", Image.fromarray(listed_px), 2)).pixels
    query = query_variants(query_px)
    assert hamming(query[0].pdq, listed[0].pdq) > THRESHOLD
    dist, qname, lname = _best(query, listed)
    assert dist <= THRESHOLD
    assert (qname, lname) == ("trimmed", "trimmed")


def test_all_flat_image_has_no_trimmed_variant() -> None:
    flat = np.full((300, 400, 3), 200, dtype=np.uint8)
    assert trim_box(flat) is None
    assert "trimmed" not in {v.name for v in query_variants(flat)}
    assert listing_variants(flat) == [] or all(v.name != "trimmed" for v in listing_variants(flat))


def test_tiny_photo_in_huge_border_is_not_trimmed_to_nothing() -> None:
    """Keeping less than TRIM_MIN_KEEP of a dimension yields no trimmed box at all."""
    small = np.asarray(Image.fromarray(_pixels("04.png")).resize((60, 90)))
    canvas = np.full((600, 600, 3), 255, dtype=np.uint8)
    canvas[255:345, 270:330] = small
    assert trim_box(canvas) is None


def test_unbordered_photo_is_not_trimmed() -> None:
    assert trim_box(_pixels("05.png")) is None
    assert trim_box(_pixels("14.png")) is None


# ---------------------------------------------------------------- regions and crops


def test_centred_crop_matches_listed_region() -> None:
    px = _pixels("09.png")
    listed = _listed(px)
    assert "region90" in {v.name for v in listed}
    query = query_variants(_edited("09.png", "crop10"))
    assert hamming(query[0].pdq, listed[0].pdq) > THRESHOLD
    dist, qname, lname = _best(query, listed)
    assert dist <= THRESHOLD
    assert (qname, lname) == ("original", "region90")


CORNER_BOXES = {  # name -> which 90% x 90% of a w x h image a user kept (left, top, right, bottom)
    "crop90_tl": lambda w, h: (0, 0, w - round(w * 0.1), h - round(h * 0.1)),
    "crop90_tr": lambda w, h: (round(w * 0.1), 0, w, h - round(h * 0.1)),
    "crop90_bl": lambda w, h: (0, round(h * 0.1), w - round(w * 0.1), h),
    "crop90_br": lambda w, h: (round(w * 0.1), round(h * 0.1), w, h),
}


@pytest.mark.parametrize("corner", sorted(CORNER_BOXES))
@pytest.mark.parametrize("name", ["02.png", "12.png", "19.png"])
def test_off_centre_crop_matches_its_corner_variant(name: str, corner: str) -> None:
    """A copy cropped from two sides (keeping 90% x 90% at one corner) misses by its plain hash and
    by the centred region, and matches the listed crop variant of that corner."""
    px = _pixels(name)
    h, w = px.shape[:2]
    listed = _listed(px)
    query = query_variants(_jpeg(Image.fromarray(px).crop(CORNER_BOXES[corner](w, h))))
    region90 = next(v for v in listed if v.name == "region90")
    assert hamming(query[0].pdq, listed[0].pdq) > THRESHOLD
    assert hamming(query[0].pdq, region90.pdq) > THRESHOLD
    dist, qname, lname = _best(query, listed)
    assert dist <= THRESHOLD
    assert (qname, lname) == ("original", corner)


def test_crop_edits_match_via_corner_and_80_percent_region() -> None:
    listed = _listed(_pixels("10.png"))
    corner = query_variants(_edited("10.png", "crop10_corner"))
    assert _best(corner, listed)[1:] == ("original", "crop90_tl")
    assert _best(corner, listed)[0] <= THRESHOLD
    centred20 = query_variants(_edited("10.png", "crop20"))
    assert hamming(centred20[0].pdq, listed[0].pdq) > THRESHOLD
    dist, qname, lname = _best(centred20, listed)
    assert dist <= THRESHOLD
    assert (qname, lname) == ("original", "region80")


def test_corner_variants_can_be_switched_off() -> None:
    px = _pixels("12.png")
    plain = pdq_from_pixels(px)
    names = [v.name for v in listing_variants(px, plain.hex, corners=False)]
    assert names == ["region90", "region80"]
    listed = [Variant("plain", plain.hex, plain.quality), *listing_variants(px, corners=False)]
    h, w = px.shape[:2]
    query = query_variants(_jpeg(Image.fromarray(px).crop(CORNER_BOXES["crop90_br"](w, h))))
    assert _best(query, listed)[0] > THRESHOLD


def test_every_listing_variant_is_indexed_and_reports_as_region() -> None:
    """The matcher silently skips listing variants whose names it has no slot for."""
    names: set[str] = set()
    for name in ("01.png", "05.png", "16.png"):
        names |= {v.name for v in listing_variants(_pixels(name))}
    framed = np.full((600, 900, 3), 255, dtype=np.uint8)
    framed[50:562, 66:834] = _pixels("16.png")
    names |= {v.name for v in listing_variants(framed)}
    assert {"trimmed", "region90", "region80", *CORNER_BOXES} <= names
    assert names <= set(LISTED_VARIANTS)
    for n in names - {"trimmed"}:
        assert _variant_kind("original", n) == "region"


def test_crop10_random_removes_10_percent_at_seeded_offsets() -> None:
    im = Image.fromarray(_pixels("04.png"))
    w, h = im.size
    offsets = set()
    for seed in range(6):
        data = edits.apply_edit("crop10_random", im, seed)
        assert data == edits.apply_edit("crop10_random", im, seed)  # deterministic
        out = decode_image(data).pixels
        assert out.shape[:2] == (h - round(h * 0.1), w - round(w * 0.1))
        # locate the kept window: the offset with the smallest difference from the original
        ref = _pixels("04.png").astype(np.int16)
        best = min(
            (float(np.abs(ref[y : y + out.shape[0], x : x + out.shape[1]] - out).mean()), x, y)
            for x in range(0, round(w * 0.1) + 1, 7)
            for y in range(0, round(h * 0.1) + 1, 5)
        )
        offsets.add((best[1], best[2]))
    assert len(offsets) >= 4  # the offset varies with the seed


# ---------------------------------------------------------------- deskew


@pytest.mark.parametrize(
    ("angle", "fill"), [(5.0, (0, 0, 0)), (-5.0, (0, 0, 0)), (8.0, (255, 255, 255))]
)
def test_small_rotation_on_flat_background_is_deskewed(
    angle: float, fill: tuple[int, int, int]
) -> None:
    px = _pixels("23.png")
    rotated = _jpeg(
        Image.fromarray(px).rotate(
            angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill
        )
    )
    est = deskew_angle(rotated)
    assert est is not None and abs(est - angle) < 0.5
    dist, qname, _ = _best(query_variants(rotated), _listed(px))
    assert dist <= THRESHOLD
    assert qname == "deskewed"


def test_ordinary_photos_are_not_deskewed() -> None:
    for name in ("01.png", "02.png", "03.png", "15.png"):
        assert deskew_angle(_pixels(name)) is None


# ---------------------------------------------------------------- no false matches


def test_cropped_copies_do_not_match_other_photos() -> None:
    """Off-centre and centred crops of each Kodak photo against the listings (plain + trimmed +
    regions + corner crops) of every other Kodak photo."""
    names = [f"{i:02d}.png" for i in range(1, 25)]
    listed = {n: _listed(_pixels(n)) for n in names}
    for i, a in enumerate(names):
        for edit in ("crop10_corner", "crop10_random", "crop20"):
            query = query_variants(_edited(a, edit, seed=i))
            for b in names:
                if b != a:
                    dist, qname, lname = _best(query, listed[b])
                    assert dist > THRESHOLD, (a, edit, b, dist, qname, lname)


def test_distinct_photos_do_not_match() -> None:
    names = [f"{i:02d}.png" for i in range(1, 25)]
    listed = {n: _listed(_pixels(n)) for n in names}
    queries = {n: query_variants(_pixels(n)) for n in names}
    for a, b in itertools.permutations(names, 2):
        dist, _, _ = _best(queries[a], listed[b])
        assert dist > THRESHOLD, (a, b, dist)
    for n in names:  # and every photo still matches itself
        assert _best(queries[n], listed[n])[0] == 0


# ---------------------------------------------------------------- robustness of the API


@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (5, 3), (31, 40), (40, 31), (33, 900)])
def test_tiny_and_thin_images_do_not_crash(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    px = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    qv = query_variants(px)
    assert qv and qv[0].name == "original"
    assert all(len(v.pdq) == 64 for v in qv)
    lv = listing_variants(px)
    assert all(len(v.pdq) == 64 for v in lv)
    box = trim_box(px)
    assert box is None or (0 <= box[0] < box[2] <= shape[1] and 0 <= box[1] < box[3] <= shape[0])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), dtype=np.uint8),
        np.zeros((10, 10, 4), dtype=np.uint8),
        np.zeros((10, 10, 3), dtype=np.float32),
        np.zeros((0, 10, 3), dtype=np.uint8),
        [[1, 2, 3]],
    ],
)
def test_bad_pixels_raise_media_error(bad: object) -> None:
    for fn in (query_variants, listing_variants, trim_box, deskew_angle):
        with pytest.raises(MediaError) as exc:
            fn(bad)  # type: ignore[operator]
        assert exc.value.code == "bad_pixels"


def test_trim_box_is_deterministic_and_inside_image() -> None:
    rng = random.Random(7)
    px = _pixels("18.png")
    for _ in range(3):
        top, bottom = rng.randrange(10, 120), rng.randrange(10, 120)
        h, w = px.shape[:2]
        canvas = np.zeros((h + top + bottom, w, 3), dtype=np.uint8)
        canvas[top : top + h] = px
        box1, box2 = trim_box(canvas), trim_box(canvas)
        assert box1 == box2 is not None
        assert abs(box1[1] - top) <= 2 and abs(box1[3] - (top + h)) <= 2
