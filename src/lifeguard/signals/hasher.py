"""One entry point from a media file to every signal lifeguard uses: ``hash_file`` / ``hash_bytes``.

Images get PDQ (+ quality), MD5 and SHA-256; on request the query variants (dihedral, trimmed) or the
listing variants (extra hashes stored for listed media). Videos get vPDQ frames plus MD5/SHA-256.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lifeguard.errors import MediaError
from lifeguard.settings import Settings, get_settings
from lifeguard.signals.exact import digest_bytes, digest_file
from lifeguard.signals.image import DecodedImage, decode_image
from lifeguard.signals.pdq import PdqHash, pdq_from_pixels

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".webm",
        ".mkv",
        ".avi",
        ".3gp",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".flv",
        ".ts",
    }
)
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
    }
)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS

Kind = Literal["image", "video"]


@dataclass(frozen=True, slots=True)
class HashVariant:
    """A PDQ hash of a transformed view of the media: ``name`` says which (``rotate90_ccw``, ``trimmed``...)."""

    name: str
    pdq: str
    quality: int


@dataclass(slots=True)
class MediaHashes:
    """Everything computed for one file. Never holds the pixels or bytes (privacy by design)."""

    path: str
    kind: Kind
    size: int
    md5: str
    sha256: str
    format: str | None = None
    width: int | None = None
    height: int | None = None
    pdq: str | None = None
    quality: int | None = None
    low_quality: bool = False
    reduced_decode: bool = False
    query_variants: list[HashVariant] = field(default_factory=list)
    listing_variants: list[HashVariant] = field(default_factory=list)
    vpdq: list[Any] = field(default_factory=list)  # lifeguard.signals.video.VpdqFrame
    duration: float | None = None

    def signals(self) -> list[tuple[str, str]]:
        """(signal type, value) pairs for exact/plain lookups."""
        out = [("md5", self.md5), ("sha256", self.sha256)]
        if self.pdq:
            out.append(("pdq", self.pdq))
        return out

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "md5": self.md5,
            "sha256": self.sha256,
        }
        if self.kind == "image":
            d.update(
                format=self.format,
                width=self.width,
                height=self.height,
                pdq=self.pdq,
                quality=self.quality,
                low_quality=self.low_quality,
            )
            if self.reduced_decode:
                d["reduced_decode"] = True
            if self.query_variants:
                d["query_variants"] = {v.name: v.pdq for v in self.query_variants}
            if self.listing_variants:
                d["listing_variants"] = {v.name: v.pdq for v in self.listing_variants}
        else:
            from lifeguard.signals.video import frames_to_json

            d.update(
                vpdq=frames_to_json(self.vpdq),
                vpdq_frames=len(self.vpdq),
                duration=self.duration,
                pdq=self.pdq,
                quality=self.quality,
            )
        return d


def sniff_kind(path: Path, head: bytes) -> Kind | None:
    """Decide image vs video from magic bytes, falling back to the extension."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (
            b"heic",
            b"heix",
            b"heim",
            b"heis",
            b"mif1",
            b"msf1",
            b"avif",
            b"avis",
            b"hevc",
            b"hevx",
        ):
            return "image"
        return "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # Matroska / WebM
        return "video"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image"
    ext = path.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def _image_hashes(
    decoded: DecodedImage,
    base: MediaHashes,
    settings: Settings,
    *,
    query_variants: bool,
    listing_variants: bool,
) -> MediaHashes:
    from lifeguard.signals import variants as v

    qv: list[HashVariant] = []
    if query_variants:
        # The dihedral set's "original" (always first) is the plain hash, bit for bit: hash once.
        qv = [HashVariant(x.name, x.pdq, x.quality) for x in v.query_variants(decoded.pixels)]
        plain = PdqHash(qv[0].pdq, qv[0].quality)
    else:
        plain = pdq_from_pixels(decoded.pixels)
    base.format = decoded.format
    base.width, base.height = decoded.width, decoded.height
    base.pdq, base.quality = plain.hex, plain.quality
    base.low_quality = plain.quality < settings.pdq_quality_threshold
    base.reduced_decode = decoded.reduced
    base.query_variants = qv
    if listing_variants:
        base.listing_variants = [
            HashVariant(x.name, x.pdq, x.quality)
            for x in v.listing_variants(
                decoded.pixels, plain=plain.hex, corners=settings.listing_crop_corners
            )
        ]
    return base


def hash_file(
    path: Path | str,
    settings: Settings | None = None,
    *,
    query_variants: bool = False,
    listing_variants: bool = False,
) -> MediaHashes:
    """Hash one media file, or raise :class:`MediaError` with a precise code and message."""
    settings = settings or get_settings()
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MediaError(f"no such file: {p}", code="not_found") from None
    except OSError as e:
        raise MediaError(f"cannot read file: {e.strerror or e}", code="unreadable") from None
    if not p.is_file():
        raise MediaError("not a regular file", code="not_a_file")
    if st.st_size == 0:
        raise MediaError("empty file (0 bytes)", code="empty")
    if st.st_size > settings.max_file_bytes:
        raise MediaError(
            f"file is {st.st_size:,} bytes, over the limit of {settings.max_file_bytes:,} (LIFEGUARD_MAX_FILE_BYTES)",
            code="too_large",
        )
    try:
        with open(p, "rb") as f:
            head = f.read(32)
    except OSError as e:
        raise MediaError(f"cannot read file: {e.strerror or e}", code="unreadable") from None
    kind = sniff_kind(p, head) or "image"
    md5, sha256, size = digest_file(p)
    base = MediaHashes(path=str(p), kind=kind, size=size, md5=md5, sha256=sha256)
    if kind == "video":
        return _video_hashes(p, base, settings)
    decoded = decode_image(p, settings)
    return _image_hashes(
        decoded, base, settings, query_variants=query_variants, listing_variants=listing_variants
    )


def hash_bytes(
    data: bytes,
    name: str = "upload",
    settings: Settings | None = None,
    *,
    query_variants: bool = False,
    listing_variants: bool = False,
) -> MediaHashes:
    """Hash media held in memory (an upload). Videos are spooled to a private temporary file."""
    settings = settings or get_settings()
    if not data:
        raise MediaError("empty file (0 bytes)", code="empty")
    if len(data) > settings.max_file_bytes:
        raise MediaError(
            f"file is {len(data):,} bytes, over the limit of {settings.max_file_bytes:,}",
            code="too_large",
        )
    kind = sniff_kind(Path(name), data[:32]) or "image"
    md5, sha256 = digest_bytes(data)
    base = MediaHashes(path=name, kind=kind, size=len(data), md5=md5, sha256=sha256)
    if kind == "video":
        fd, tmp = tempfile.mkstemp(suffix=Path(name).suffix or ".mp4")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return _video_hashes(Path(tmp), base, settings)
        finally:
            os.unlink(tmp)
    decoded = decode_image(data, settings)
    return _image_hashes(
        decoded, base, settings, query_variants=query_variants, listing_variants=listing_variants
    )


def _video_hashes(path: Path, base: MediaHashes, settings: Settings) -> MediaHashes:
    from lifeguard.signals.video import hash_video

    vh = hash_video(path, seconds_per_hash=settings.vpdq_seconds_per_hash, settings=settings)
    base.vpdq = list(vh.frames)
    base.duration = vh.duration
    good = [f for f in vh.frames if f.quality >= settings.pdq_quality_threshold]
    if good:  # a representative frame hash for plain lookups: the best-quality frame
        best = max(good, key=lambda f: f.quality)
        base.pdq, base.quality = best.pdq, best.quality
    return base


def iter_media(paths: Iterable[Path | str], *, recurse: bool = True) -> Iterator[Path]:
    """Files named, and media files (by extension) under folders named, in a stable order."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            if not recurse:
                continue
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    fp = Path(root) / name
                    if fp.suffix.lower() in MEDIA_EXTENSIONS:
                        yield fp
        else:
            yield p
