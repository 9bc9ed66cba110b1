"""Deterministic image edits for the demo, robustness benchmarks and tests (Pillow only, benign text).

Every edit takes an RGB :class:`PIL.Image.Image` and a seed and returns the *encoded file bytes* of the
edited copy, as it would be shared (JPEG quality 90 unless stated, PNG or JPEG for screenshots). Decode
them with :func:`lifeguard.signals.image.decode_image` to hash them like real uploads.

Definitions (w x h is the original size; all random choices come from ``random.Random(seed)``):

* ``flip_h`` / ``flip_v``: mirror left-right / upside-down.
* ``rotate90`` / ``rotate180``: rotate 90 degrees counter-clockwise / 180 degrees (lossless transpose).
* ``rotate5``: rotate 5 degrees counter-clockwise, bicubic, canvas expanded, black corners.
* ``crop10``: remove 10% of the width and 10% of the height, centred (5% from each side).
* ``crop10_corner``: remove 10% of the width and height from the right and bottom only (keeps the
  top-left 90% x 90%: the most off-centre 10% crop).
* ``crop10_random``: remove 10% of the width and 10% of the height, each split between the two opposite
  sides at a random ratio (uniform in [0, 1], drawn separately for x and y): a crop at an arbitrary
  offset.
* ``crop20``: remove 20% of the width and height, centred (10% from each side).
* ``crop20_corner``: remove 20% of the width and height from the right and bottom only (keeps the
  top-left 80% x 80%).
* ``pad20``: add a uniform border of 10% of w left and right and 10% of h top and bottom (canvas
  1.2w x 1.2h), colour chosen from black, white, mid grey or a random RGB colour.
* ``caption``: meme-style bar of height 0.22 h above the photo (white, or black 1 time in 4), one line of
  benign text in Pillow's default font (size 0.4 x bar height), contrasting colour, centred.
* ``screenshot``: a 390 x 844 phone screen: 44 px status bar (time "9:41", battery outline), 56 px app
  bar (colour + title text), the photo scaled to the screen width (or to the content height if taller),
  letterboxed on black/white, 48 px bottom navigation bar with a triangle, circle and square outline;
  saved as PNG (even seeds) or JPEG quality 85 (odd seeds).
* ``jpeg30``: re-encoded as JPEG quality 30.
* ``resize40``: resized to 40% of each side (bilinear).
* ``blur``: Gaussian blur radius 2.
* ``bright30``: brightness +30% (``ImageEnhance.Brightness(1.3)``).
* ``grey``: converted to greyscale (stored as RGB).
* ``text``: benign text (font size 0.08 h, white with black outline) drawn across the lower third.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

PHRASES = (
    "WHEN THE WEEKEND FINALLY ARRIVES",
    "ME AFTER ONE CUP OF COFFEE",
    "NOBODY: ABSOLUTELY NOBODY:",
    "MONDAY MOOD",
    "LAUNDRY DAY AGAIN",
    "NEW OUTFIT WHO DIS",
)


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _text_centred(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    text: str,
    size: int,
    fill: tuple[int, int, int],
    stroke: tuple[int, int, int] | None = None,
) -> None:
    font = _font(size)
    # shrink until it fits the box width
    while True:
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font, stroke_width=2 if stroke else 0)
        if x1 - x0 <= (box[2] - box[0]) * 0.95 or size <= 8:
            break
        size = int(size * 0.9)
        font = _font(size)
    x = box[0] + ((box[2] - box[0]) - (x1 - x0)) // 2 - x0
    y = box[1] + ((box[3] - box[1]) - (y1 - y0)) // 2 - y0
    if stroke:
        draw.text((x, y), text, font=font, fill=fill, stroke_width=2, stroke_fill=stroke)
    else:
        draw.text((x, y), text, font=font, fill=fill)


def flip_h(im: Image.Image, rng: random.Random) -> bytes:
    return _jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def flip_v(im: Image.Image, rng: random.Random) -> bytes:
    return _jpeg(im.transpose(Image.Transpose.FLIP_TOP_BOTTOM))


def rotate90(im: Image.Image, rng: random.Random) -> bytes:
    return _jpeg(im.transpose(Image.Transpose.ROTATE_90))


def rotate180(im: Image.Image, rng: random.Random) -> bytes:
    return _jpeg(im.transpose(Image.Transpose.ROTATE_180))


def rotate5(im: Image.Image, rng: random.Random) -> bytes:
    return _jpeg(im.rotate(5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0)))


def crop10(im: Image.Image, rng: random.Random) -> bytes:
    w, h = im.size
    dx, dy = round(w * 0.05), round(h * 0.05)
    return _jpeg(im.crop((dx, dy, w - dx, h - dy)))


def crop10_corner(im: Image.Image, rng: random.Random) -> bytes:
    w, h = im.size
    return _jpeg(im.crop((0, 0, w - round(w * 0.10), h - round(h * 0.10))))


def crop10_random(im: Image.Image, rng: random.Random) -> bytes:
    w, h = im.size
    dx, dy = round(w * 0.10), round(h * 0.10)
    left, top = round(dx * rng.random()), round(dy * rng.random())
    return _jpeg(im.crop((left, top, w - (dx - left), h - (dy - top))))


def crop20(im: Image.Image, rng: random.Random) -> bytes:
    w, h = im.size
    dx, dy = round(w * 0.10), round(h * 0.10)
    return _jpeg(im.crop((dx, dy, w - dx, h - dy)))


def crop20_corner(im: Image.Image, rng: random.Random) -> bytes:
    w, h = im.size
    return _jpeg(im.crop((0, 0, w - round(w * 0.20), h - round(h * 0.20))))


def pad20(im: Image.Image, rng: random.Random) -> bytes:
    w, h = im.size
    colour = rng.choice(
        [(0, 0, 0), (255, 255, 255), (128, 128, 128), tuple(rng.randrange(256) for _ in range(3))]
    )
    dx, dy = round(w * 0.10), round(h * 0.10)
    canvas = Image.new("RGB", (w + 2 * dx, h + 2 * dy), colour)
    canvas.paste(im, (dx, dy))
    return _jpeg(canvas)


def caption(im: Image.Image, rng: random.Random) -> bytes:
    w, h = im.size
    bar = max(24, round(h * 0.22))
    dark = rng.random() < 0.25
    bg, fg = ((0, 0, 0), (255, 255, 255)) if dark else ((255, 255, 255), (0, 0, 0))
    canvas = Image.new("RGB", (w, h + bar), bg)
    canvas.paste(im, (0, bar))
    draw = ImageDraw.Draw(canvas)
    _text_centred(draw, (0, 0, w, bar), rng.choice(PHRASES), round(bar * 0.4), fg)
    return _jpeg(canvas)


def screenshot(im: Image.Image, rng: random.Random) -> bytes:
    sw, sh = 390, 844
    status_h, app_h, nav_h = 44, 56, 48
    dark = rng.random() < 0.5
    screen_bg = (0, 0, 0) if dark else (255, 255, 255)
    ink = (255, 255, 255) if dark else (0, 0, 0)
    canvas = Image.new("RGB", (sw, sh), screen_bg)
    draw = ImageDraw.Draw(canvas)
    # status bar
    draw.rectangle((0, 0, sw, status_h - 1), fill=screen_bg)
    _text_centred(draw, (10, 0, 80, status_h), "9:41", 16, ink)
    draw.rectangle((sw - 44, 15, sw - 16, 28), outline=ink, width=2)
    draw.rectangle((sw - 41, 18, sw - 24, 25), fill=ink)
    # app bar
    app_bg = rng.choice([(33, 150, 243), (245, 245, 245), (48, 48, 48), (76, 175, 80)])
    app_ink = (0, 0, 0) if sum(app_bg) > 500 else (255, 255, 255)
    draw.rectangle((0, status_h, sw, status_h + app_h - 1), fill=app_bg)
    _text_centred(
        draw, (0, status_h, sw, status_h + app_h), rng.choice(["Photos", "Gallery"]), 20, app_ink
    )
    # content: the photo scaled to the width (or to the content height), letterboxed
    top, bottom = status_h + app_h, sh - nav_h
    avail_h = bottom - top
    w, h = im.size
    scale = min(sw / w, avail_h / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    photo = im.resize((nw, nh), Image.Resampling.BILINEAR)
    canvas.paste(photo, ((sw - nw) // 2, top + (avail_h - nh) // 2))
    # navigation bar with simple icon shapes
    nav_bg = (20, 20, 20) if dark else (235, 235, 235)
    nav_ink = (230, 230, 230) if dark else (60, 60, 60)
    draw.rectangle((0, bottom, sw, sh), fill=nav_bg)
    cy = bottom + nav_h // 2
    draw.polygon([(90, cy), (104, cy - 9), (104, cy + 9)], outline=nav_ink, width=2)
    draw.ellipse((186, cy - 9, 204, cy + 9), outline=nav_ink, width=2)
    draw.rectangle((286, cy - 8, 302, cy + 8), outline=nav_ink, width=2)
    return _png(canvas) if rng.random() < 0.5 else _jpeg(canvas, 85)


def jpeg30(im: Image.Image, rng: random.Random) -> bytes:
    return _jpeg(im, 30)


def resize40(im: Image.Image, rng: random.Random) -> bytes:
    w, h = im.size
    return _jpeg(
        im.resize((max(1, round(w * 0.4)), max(1, round(h * 0.4))), Image.Resampling.BILINEAR)
    )


def blur(im: Image.Image, rng: random.Random) -> bytes:
    return _jpeg(im.filter(ImageFilter.GaussianBlur(2)))


def bright30(im: Image.Image, rng: random.Random) -> bytes:
    return _jpeg(ImageEnhance.Brightness(im).enhance(1.3))


def grey(im: Image.Image, rng: random.Random) -> bytes:
    return _jpeg(im.convert("L").convert("RGB"))


def text(im: Image.Image, rng: random.Random) -> bytes:
    w, h = im.size
    out = im.copy()
    draw = ImageDraw.Draw(out)
    _text_centred(
        draw,
        (0, round(h * 0.70), w, round(h * 0.90)),
        rng.choice(PHRASES),
        round(h * 0.08),
        (255, 255, 255),
        stroke=(0, 0, 0),
    )
    return _jpeg(out)


EditFn = Callable[[Image.Image, random.Random], bytes]

#: Geometric edits first, then photometric ones; names are stable (used in docs tables).
EDITS: dict[str, EditFn] = {
    "flip_h": flip_h,
    "flip_v": flip_v,
    "rotate90": rotate90,
    "rotate180": rotate180,
    "rotate5": rotate5,
    "crop10": crop10,
    "crop10_corner": crop10_corner,
    "crop10_random": crop10_random,
    "crop20": crop20,
    "crop20_corner": crop20_corner,
    "pad20": pad20,
    "caption": caption,
    "screenshot": screenshot,
    "jpeg30": jpeg30,
    "resize40": resize40,
    "blur": blur,
    "bright30": bright30,
    "grey": grey,
    "text": text,
}


def apply_edit(name: str, im: Image.Image, seed: int) -> bytes:
    """Apply edit ``name`` to ``im`` deterministically (``seed`` drives every random choice)."""
    try:
        fn = EDITS[name]
    except KeyError:
        raise ValueError(f"unknown edit {name!r}; known: {', '.join(EDITS)}") from None
    rng = random.Random(f"{name}:{seed}")
    return fn(im.convert("RGB"), rng)
