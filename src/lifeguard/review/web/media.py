"""Wellness-safe previews: a small, blurred, greyscale JPEG made on the server, so the original
bytes never reach the browser until a reviewer reveals the item (an audited POST)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from PIL import Image, ImageDraw, ImageFilter, ImageOps

THUMB_SIDE = 320
BLUR_RADIUS = 14


def _placeholder(label: str) -> bytes:
    img = Image.new("L", (THUMB_SIDE, THUMB_SIDE * 3 // 4), 96)
    d = ImageDraw.Draw(img)
    d.rectangle((8, 8, img.width - 9, img.height - 9), outline=150, width=2)
    d.text((20, img.height // 2 - 6), label, fill=220)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70)
    return buf.getvalue()


def blurred_preview(data: bytes, mime: str) -> bytes:
    """A JPEG at most THUMB_SIDE pixels on its long side, greyscale, Gaussian-blurred. Media that
    is not a decodable still image (video, a corrupt file) gets a neutral placeholder instead."""
    if not mime.startswith("image/"):
        return _placeholder("video: reveal to play" if mime.startswith("video/") else "media")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("L", (THUMB_SIDE, THUMB_SIDE))  # JPEG: decode at reduced scale
            im.thumbnail((THUMB_SIDE * 2, THUMB_SIDE * 2))
            small = ImageOps.exif_transpose(im).convert("L")
    except (OSError, ValueError, Image.DecompressionBombError):
        return _placeholder("image could not be decoded")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    # Pixelate, then blur: nothing recognisable survives, but the overall layout does.
    w, h = small.size
    tiny = small.resize((max(1, w // 16), max(1, h // 16)), Image.Resampling.BILINEAR)
    out = tiny.resize((w, h), Image.Resampling.BILINEAR).filter(
        ImageFilter.GaussianBlur(BLUR_RADIUS)
    )
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=60)
    return buf.getvalue()


class PreviewCache:
    """A small in-process LRU of previews by item id (items' media never change)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._d: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, item_id: int) -> bytes | None:
        with self._lock:
            v = self._d.get(item_id)
            if v is not None:
                self._d.move_to_end(item_id)
            return v

    def put(self, item_id: int, data: bytes) -> None:
        with self._lock:
            self._d[item_id] = data
            self._d.move_to_end(item_id)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
