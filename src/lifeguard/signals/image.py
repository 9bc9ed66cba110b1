"""Image decoding for hashing: every Pillow format (plus HEIC/HEIF), EXIF orientation applied, bounded
memory, and a fast path that decodes big JPEGs at reduced scale (PDQ only needs 64x64)."""

from __future__ import annotations

import io
import re
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lifeguard.errors import MediaError
from lifeguard.settings import Settings, get_settings

try:  # HEIC/HEIF (phone photos)
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is a pinned dependency
    HEIF_SUPPORTED = False

# We check the declared size ourselves (configurable limit); Pillow's own bomb check stays as a backstop.
ImageFile.LOAD_TRUNCATED_IMAGES = False

RGBArray = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """RGB pixels ready for hashing, with what we learned about the file."""

    pixels: RGBArray  # (H, W, 3) uint8, EXIF orientation applied
    format: str  # Pillow format name, e.g. "JPEG", "HEIF"
    width: int  # full-resolution width, after orientation
    height: int
    mode: str  # the file's Pillow mode before conversion
    reduced: bool  # decoded at reduced scale (fast path)


#: Leading bytes of formats we can name when Pillow cannot parse a file (for precise errors).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive"),
)
_PNG_MIN = 8 + 25  # signature + IHDR chunk


def _sniff(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        return "HEIF/AVIF" if head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif") else "MP4"
    return next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)


def _looks_truncated(head: bytes, size: int, fmt: str | None) -> bool:
    if fmt == "WebP":  # RIFF declares the file size
        return len(head) >= 8 and int.from_bytes(head[4:8], "little") + 8 > size
    if fmt == "PNG":
        return size < _PNG_MIN
    return fmt == "JPEG" and size < 4


def _open_failed(head: bytes, size: int, detail: str) -> MediaError:
    """Say as precisely as we can why Pillow could not open the file."""
    fmt = _sniff(head)
    if "truncat" in detail.lower() or _looks_truncated(head, size, fmt):
        what = f"{fmt} file" if fmt else "file"
        return MediaError(f"{what} is truncated ({size:,} bytes): {detail}", code="truncated")
    if fmt in ("PDF document", "ZIP archive", "MP4"):
        return MediaError(f"not a supported image format: the file is a {fmt}", code="unsupported")
    if fmt:
        return MediaError(f"{fmt} file is corrupt: {detail}", code="corrupt")
    return MediaError("not a supported image format", code="unsupported")


def _open(source: Path | bytes, settings: Settings) -> Image.Image:
    if isinstance(source, bytes):
        size = len(source)
        head = source[:64]
        fp: io.BytesIO | Path = io.BytesIO(source)
    else:
        try:
            st = source.stat()
            if not stat.S_ISREG(st.st_mode):
                raise MediaError(f"not a regular file: {source}", code="not_a_file")
            size = st.st_size
            with open(source, "rb") as f:
                head = f.read(64)
        except FileNotFoundError:
            raise MediaError(f"no such file: {source}", code="not_found") from None
        except OSError as e:
            raise MediaError(f"cannot read file: {e.strerror or e}", code="unreadable") from None
        fp = source
    if size == 0:
        raise MediaError("empty file (0 bytes)", code="empty")
    if size > settings.max_file_bytes:
        raise MediaError(
            f"file is {size:,} bytes, over the limit of {settings.max_file_bytes:,} "
            "(LIFEGUARD_MAX_FILE_BYTES)",
            code="too_large",
        )
    try:
        with warnings.catch_warnings():
            # Our own limit (check_dimensions, right after open) decides; Pillow's warning level
            # (~89 MP) must not refuse what settings.max_image_pixels allows. Pillow's hard error
            # (twice that) stays as a backstop.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)
    except UnidentifiedImageError as e:
        raise _open_failed(head, size, str(e)) from None
    except Image.DecompressionBombError as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        n = int(m.group(1)) if m else 0
        limit = settings.max_image_pixels
        if (
            n and n <= limit
        ):  # only Pillow's own hard ceiling (2 x Image.MAX_IMAGE_PIXELS) refused it
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise MediaError(
            f"image declares {n:,} pixels, over the limit of {limit:,} "
            "(decompression-bomb guard; set LIFEGUARD_MAX_IMAGE_PIXELS)",
            code="too_large",
        ) from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise _open_failed(head, size, str(e) or type(e).__name__) from None


def check_dimensions(width: int, height: int, settings: Settings) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"invalid image dimensions {width}x{height}", code="bad_dimensions")
    if width > settings.max_image_side or height > settings.max_image_side:
        raise MediaError(
            f"image dimensions {width}x{height} exceed the limit of {settings.max_image_side} pixels per side",
            code="too_large",
        )
    if width * height > settings.max_image_pixels:
        raise MediaError(
            f"image has {width * height:,} pixels ({width}x{height}), over the limit of "
            f"{settings.max_image_pixels:,} (decompression-bomb guard; set LIFEGUARD_MAX_IMAGE_PIXELS)",
            code="too_large",
        )


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale wide greyscale to 8 bits rather than letting convert() clip at 255.
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        lo = 0.0 if im.mode.startswith("I;16") else min(float(arr.min()), 0.0)
        scaled = np.clip((arr - lo) * (255.0 / (hi - lo or 1.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    return im.convert("RGB")


def decode_image(
    source: Path | bytes, settings: Settings | None = None, *, fast: bool | None = None
) -> DecodedImage:
    """Decode ``source`` (a path or the file's bytes) to RGB pixels, or raise :class:`MediaError`.

    ``fast`` (default: ``settings.fast_decode``) lets JPEGs decode at 1/2, 1/4 or 1/8 scale while keeping
    at least ``settings.fast_decode_min_side`` pixels on the short side.
    """
    settings = settings or get_settings()
    fast = settings.fast_decode if fast is None else fast
    im = _open(source, settings)
    try:
        fmt = im.format or "unknown"
        mode = im.mode
        w, h = im.size
        check_dimensions(w, h, settings)
        reduced = False
        if fast and fmt == "JPEG":
            short = min(w, h)
            target = settings.fast_decode_min_side
            if short >= 2 * target:
                k = target / short
                im.draft("RGB", (max(1, int(w * k)), max(1, int(h * k))))
                reduced = im.size != (w, h)
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise MediaError(f"image too large: {e}", code="too_large") from None
        except (OSError, SyntaxError, ValueError) as e:
            msg = str(e)
            code = "truncated" if "truncat" in msg.lower() else "corrupt"
            raise MediaError(f"cannot decode image: {msg}", code=code) from None
        except MemoryError:
            raise MediaError("not enough memory to decode image", code="too_large") from None
        try:
            oriented = ImageOps.exif_transpose(im)
        except Exception:  # a broken EXIF block must not lose the image; hash it unrotated
            oriented = im
        rgb = _to_rgb(oriented)
        pixels = np.asarray(rgb, dtype=np.uint8)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise MediaError(f"unexpected pixel layout {pixels.shape}", code="corrupt")
        ow, oh = (
            (h, w)
            if oriented.size != im.size and oriented.size == (im.size[1], im.size[0])
            else (w, h)
        )
        return DecodedImage(
            pixels=np.ascontiguousarray(pixels),
            format=fmt,
            width=ow,
            height=oh,
            mode=mode,
            reduced=reduced,
        )
    finally:
        im.close()
