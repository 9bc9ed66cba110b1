"""vPDQ video signals (Meta's ``vpdq`` bindings): hashing, serialisation, validation and matching.

A vPDQ hash is a list of per-frame PDQ hashes (:class:`VpdqFrame`). Matching follows Meta's reference
(python-threatexchange ``match_VPDQ_hash_brute``): drop repeated frame hashes, drop frames of quality
below 50, then a query frame "matches" when any frame of the other video is within Hamming distance 31.
``query_match_pct`` is the share of the query's frames that match, ``compared_match_pct`` the share of
the listed video's frames that match; a video matches when the first is >= 80 % and the second >= 0 %.

Formats:

* reference text (``vpdq-sample-hashes``): one line per frame, ``frame,quality,pdq_hex,timestamp``;
* compact JSON (the stored signal value, :func:`frames_to_json`): ``[[frame,quality,"pdq_hex",ts],...]``;
* python-threatexchange's ``VPDQSignal`` string (``["pdq_hex,quality,ts", ...]``), accepted on input
  (frame numbers become 0, 1, 2, ...) and produced by :func:`to_threatexchange_json`.

vpdq itself is optional (extra ``video``): only :func:`hash_video` needs it.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import numpy.typing as npt

from lifeguard.errors import InvalidSignal, MediaError
from lifeguard.settings import Settings, get_settings
from lifeguard.signals.base import SignalType, register
from lifeguard.signals.exact import digest_file

#: Reference defaults (python-threatexchange ``vpdq_util``).
VPDQ_DISTANCE_THRESHOLD = 31
VPDQ_QUALITY_THRESHOLD = 50
VPDQ_QUERY_MATCH_THRESHOLD_PERCENT = 80.0
VPDQ_INDEX_MATCH_THRESHOLD_PERCENT = 0.0
VPDQ_TIMESTAMP_PRECISION = 3

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: Rows of query hashes compared at once: bounds the (rows x listed x 4) uint64 work array.
_MATCH_CELLS = 1 << 22


@dataclass(frozen=True, slots=True)
class VpdqFrame:
    """One hashed frame: its number in the video, PDQ quality (0-100), PDQ hex, time in seconds."""

    frame: int
    quality: int
    pdq: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class VideoHash:
    """vPDQ of a video file plus what we learned about the file."""

    frames: tuple[VpdqFrame, ...]
    frame_count: int  # number of hashed frames (== len(frames))
    duration: float | None  # seconds, from the container header when it states it (MP4/MOV)
    md5: str
    sha256: str
    size: int  # bytes
    seconds_per_hash: float
    downsample: int  # 0 = native size, else frames were scaled to downsample x downsample

    @property
    def value(self) -> str:
        """The compact JSON stored as the ``vpdq`` signal value."""
        return frames_to_json(self.frames)


@dataclass(frozen=True, slots=True)
class VideoMatch:
    """Percentages (0-100) as in the reference ``VPDQMatchResult``."""

    query_match_pct: float
    compared_match_pct: float

    def is_match(
        self,
        query_match_pct: float = VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
        index_match_pct: float = VPDQ_INDEX_MATCH_THRESHOLD_PERCENT,
    ) -> bool:
        return is_video_match(self, query_match_pct, index_match_pct)


# --------------------------------------------------------------------------------------------------
# Container sniffing (cheap, before handing the file to libav inside vpdq)

#: ISO-BMFF major brands that are still images, not videos (HEIC/HEIF/AVIF).
_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)
_BMFF_TOP = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp"})


def _sniff(head: bytes) -> tuple[str, str]:
    """(kind, name): kind is "bmff", "video", "image", "other" or "unknown"."""
    if len(head) >= 8 and head[4:8] in _BMFF_TOP:
        if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
            return "image", f"HEIF/AVIF image (brand {head[8:12].decode('latin-1')!r})"
        return "bmff", "MP4/QuickTime"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG image"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG image"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image", "GIF image"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image", "WebP image"
    if head.startswith(b"BM") and len(head) >= 18 and head[14] in (12, 40, 52, 56, 64, 108, 124):
        return "image", "BMP image"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image", "TIFF image"
    if head.startswith(b"%PDF"):
        return "other", "PDF document"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf")):
        return "other", "archive"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "Matroska/WebM"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video", "AVI"
    if head.startswith((b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x30\x26\xb2\x75")):
        return "video", "video container"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "video", "MPEG transport stream"
    return "unknown", "unrecognised data"


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    return data if len(data) == n else b""


def _bmff_scan(path: Path, size: int) -> float | None:
    """Walk the top-level ISO-BMFF boxes: raise ``truncated``/``corrupt``; return mvhd duration (s)."""
    duration: float | None = None
    saw_moov = False
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            f.seek(pos)
            header = f.read(8)
            if len(header) < 8:
                raise MediaError(
                    f"MP4 truncated: {size - pos} stray byte(s) at offset {pos}", code="truncated"
                )
            box_size, box_type = struct.unpack(">I4s", header)
            header_len = 8
            if box_size == 1:
                large = _read_exact(f, 8)
                if not large:
                    raise MediaError("MP4 truncated inside a box header", code="truncated")
                box_size = struct.unpack(">Q", large)[0]
                header_len = 16
            elif box_size == 0:  # box runs to the end of the file
                box_size = size - pos
            if box_size < header_len:
                raise MediaError(
                    f"MP4 corrupt: box {box_type!r} at offset {pos} has impossible size {box_size}",
                    code="corrupt",
                )
            if pos + box_size > size:
                name = box_type.decode("latin-1")
                raise MediaError(
                    f"MP4 truncated: box '{name}' at offset {pos} needs {box_size:,} bytes, "
                    f"only {size - pos:,} present (file is {size:,} bytes)",
                    code="truncated",
                )
            if box_type == b"moov":
                saw_moov = True
                duration = _mvhd_duration(f, pos + header_len, pos + box_size)
            pos += box_size
    if not saw_moov:
        raise MediaError(
            "MP4 has no 'moov' box (the index is missing: incomplete upload or not a video)",
            code="corrupt",
        )
    return duration


def _mvhd_duration(f: BinaryIO, start: int, end: int) -> float | None:
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        hdr = _read_exact(f, 8)
        if not hdr:
            return None
        box_size, box_type = struct.unpack(">I4s", hdr)
        if box_size < 8 or pos + box_size > end:
            return None
        if box_type == b"mvhd":
            body = f.read(min(box_size - 8, 40))
            if len(body) < 20:
                return None
            if body[0] == 1 and len(body) >= 32:
                timescale, dur = struct.unpack(">IQ", body[20:32])
                unknown = dur == 0xFFFFFFFFFFFFFFFF
            else:
                timescale, dur = struct.unpack(">II", body[12:20])
                unknown = dur == 0xFFFFFFFF
            if timescale == 0 or unknown or dur == 0:
                return None
            return round(int(dur) / int(timescale), 3)
        pos += box_size
    return None


# --------------------------------------------------------------------------------------------------
# Hashing


def hash_video(
    path: Path | str,
    seconds_per_hash: float = 1.0,
    downsample: int = 0,
    *,
    settings: Settings | None = None,
    threads: int = 0,
) -> VideoHash:
    """vPDQ-hash the video at ``path`` or raise :class:`MediaError` with a precise ``code``.

    ``seconds_per_hash``: one frame hashed per this many seconds (0 = every frame, as the reference
    sample hashes). ``downsample``: scale frames to ``downsample`` x ``downsample`` before hashing
    (0 = native; the reference ``-128x128`` files use 128). ``threads``: 0 lets vpdq choose.

    Codes: ``not_found``, ``unreadable``, ``not_a_file``, ``empty``, ``too_large``, ``not_video``
    (an image, document or unrecognised data), ``truncated``, ``corrupt`` (a video container libav
    cannot decode), ``no_frames`` (decoded, but no video frames), ``video_unsupported`` (no vpdq).
    """
    settings = settings or get_settings()
    if not math.isfinite(seconds_per_hash) or seconds_per_hash < 0:
        raise ValueError(f"seconds_per_hash must be >= 0, got {seconds_per_hash}")
    if downsample < 0:
        raise ValueError(f"downsample must be >= 0, got {downsample}")
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MediaError(f"no such file: {p}", code="not_found") from None
    except OSError as e:
        raise MediaError(f"cannot read file: {e.strerror or e}", code="unreadable") from None
    if not p.is_file():
        raise MediaError(f"not a regular file: {p}", code="not_a_file")
    size = st.st_size
    if size == 0:
        raise MediaError("empty file (0 bytes)", code="empty")
    if size > settings.max_file_bytes:
        raise MediaError(
            f"file is {size:,} bytes, over the limit of {settings.max_file_bytes:,} "
            "(LIFEGUARD_MAX_FILE_BYTES)",
            code="too_large",
        )
    try:
        with open(p, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise MediaError(f"cannot read file: {e.strerror or e}", code="unreadable") from None
    kind, what = _sniff(head)
    if kind in ("image", "other"):
        raise MediaError(f"not a video: the file is a {what}", code="not_video")
    duration = _bmff_scan(p, size) if kind == "bmff" else None

    try:
        import vpdq
    except ImportError:  # pragma: no cover - vpdq is an optional extra
        raise MediaError(
            "video hashing needs the 'vpdq' package (pip install 'lifeguard[video]')",
            code="video_unsupported",
        ) from None
    try:
        features = vpdq.computeHash(
            str(p),
            seconds_per_hash=float(seconds_per_hash),
            downsample_width=downsample,
            downsample_height=downsample,
            thread_count=threads,
        )
    except Exception as e:  # vpdq raises a bare Exception("Fail to create VPDQ hash")
        if kind == "unknown":
            raise MediaError(
                "not a video: libav cannot open it as any known video format", code="not_video"
            ) from None
        raise MediaError(f"cannot decode {what} video: {e}", code="corrupt") from None
    frames = tuple(
        VpdqFrame(
            frame=int(ft.frame_number),
            quality=int(ft.quality),
            pdq=str(ft.hex).lower(),
            timestamp=round(float(ft.timestamp), VPDQ_TIMESTAMP_PRECISION),
        )
        for ft in features
    )
    if not frames:
        raise MediaError(
            f"no video frames could be decoded from this {what} file", code="no_frames"
        )
    md5, sha256, nbytes = digest_file(p)
    return VideoHash(
        frames=frames,
        frame_count=len(frames),
        duration=duration,
        md5=md5,
        sha256=sha256,
        size=nbytes,
        seconds_per_hash=float(seconds_per_hash),
        downsample=downsample,
    )


# --------------------------------------------------------------------------------------------------
# Serialisation and validation


def _check_frame(frame: Any, quality: Any, pdq: Any, ts: Any, where: str) -> VpdqFrame:
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise InvalidSignal(f"vpdq: {where}: frame number must be an integer >= 0, got {frame!r}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100:
        raise InvalidSignal(f"vpdq: {where}: quality must be an integer 0-100, got {quality!r}")
    if not isinstance(pdq, str):
        raise InvalidSignal(f"vpdq: {where}: PDQ hash must be a string, got {type(pdq).__name__}")
    h = pdq.strip().lower()
    if not _HEX64.match(h):
        raise InvalidSignal(
            f"vpdq: {where}: PDQ hash must be 64 hex digits, got {pdq[:80]!r} ({len(pdq)} chars)"
        )
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise InvalidSignal(f"vpdq: {where}: timestamp must be a number, got {ts!r}")
    t = float(ts)
    if not math.isfinite(t) or t < 0:
        raise InvalidSignal(f"vpdq: {where}: timestamp must be finite and >= 0, got {ts!r}")
    return VpdqFrame(frame, quality, h, round(t, VPDQ_TIMESTAMP_PRECISION))


def _int(s: str, what: str, where: str) -> int:
    try:
        return int(s.strip())
    except ValueError:
        raise InvalidSignal(
            f"vpdq: {where}: {what} is not an integer: {s.strip()[:40]!r}"
        ) from None


def _float(s: str, where: str) -> float:
    try:
        return float(s.strip())
    except ValueError:
        raise InvalidSignal(
            f"vpdq: {where}: timestamp is not a number: {s.strip()[:40]!r}"
        ) from None


def _parse_line(line: str, where: str, index: int) -> VpdqFrame:
    parts = line.split(",")
    if len(parts) == 4:  # reference text: frame,quality,pdq_hex,timestamp
        f, q, h, t = parts
        return _check_frame(
            _int(f, "frame", where), _int(q, "quality", where), h, _float(t, where), where
        )
    if len(parts) == 3:  # python-threatexchange VpdqCompactFeature: pdq_hex,quality,timestamp
        h, q, t = parts
        return _check_frame(index, _int(q, "quality", where), h, _float(t, where), where)
    raise InvalidSignal(
        f"vpdq: {where}: expected 'frame,quality,pdq_hex,timestamp', got {len(parts)} field(s)"
    )


def _check_order(frames: list[VpdqFrame]) -> list[VpdqFrame]:
    if not frames:
        raise InvalidSignal("vpdq: no frames")
    for i in range(1, len(frames)):
        if frames[i].frame <= frames[i - 1].frame:
            raise InvalidSignal(
                f"vpdq: frame numbers must increase: frame {frames[i].frame} follows "
                f"frame {frames[i - 1].frame} (entry {i + 1})"
            )
    return frames


def frames_from_text(text: str) -> list[VpdqFrame]:
    """Parse the reference text format (blank lines and ``#`` comments ignored)."""
    frames: list[VpdqFrame] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.count(",") != 3:
            raise InvalidSignal(
                f"vpdq: line {n}: expected 'frame,quality,pdq_hex,timestamp', got {line[:80]!r}"
            )
        frames.append(_parse_line(line, f"line {n}", len(frames)))
    return _check_order(frames)


def frames_to_text(frames: Iterable[VpdqFrame]) -> str:
    """The reference text format, one ``frame,quality,pdq_hex,timestamp`` line per frame."""
    return "".join(f"{f.frame},{f.quality},{f.pdq},{f.timestamp:.3f}\n" for f in frames)


def read_hash_file(path: Path | str) -> list[VpdqFrame]:
    return frames_from_text(Path(path).read_text(encoding="utf-8"))


def write_hash_file(path: Path | str, frames: Iterable[VpdqFrame]) -> None:
    Path(path).write_text(frames_to_text(frames), encoding="utf-8")


def frames_to_json(frames: Iterable[VpdqFrame]) -> str:
    """Compact JSON, the stored ``vpdq`` value: ``[[frame,quality,"pdq_hex",timestamp],...]``."""
    rows = [
        [f.frame, f.quality, f.pdq, round(f.timestamp, VPDQ_TIMESTAMP_PRECISION)] for f in frames
    ]
    return json.dumps(rows, separators=(",", ":"))


def to_threatexchange_json(frames: Iterable[VpdqFrame]) -> str:
    """python-threatexchange ``VPDQSignal`` form: ``["pdq_hex,quality,timestamp", ...]``."""
    return json.dumps([f"{f.pdq},{f.quality},{f.timestamp:.3f}" for f in frames])


def parse_vpdq(value: str) -> list[VpdqFrame]:
    """Frames from any accepted form (compact JSON, python-threatexchange JSON, its older
    ``{"frame": {"quality", "hash", "timestamp"}}`` JSON, or reference text), or :class:`InvalidSignal`.
    """
    if not isinstance(value, str):
        raise InvalidSignal(f"vpdq: expected a string, got {type(value).__name__}")
    v = value.strip()
    if not v:
        raise InvalidSignal("vpdq: empty value")
    if not v.startswith(("[", "{")):
        return frames_from_text(v)
    try:
        data = json.loads(v)
    except (json.JSONDecodeError, RecursionError) as e:
        msg = getattr(e, "msg", str(e))
        pos = getattr(e, "pos", None)
        raise InvalidSignal(
            f"vpdq: invalid JSON: {msg}" + (f" at char {pos}" if pos else "")
        ) from None
    frames: list[VpdqFrame] = []
    if isinstance(data, dict):  # older python-threatexchange form keyed by frame number
        for key, item in data.items():
            where = f"frame {key!r}"
            if not isinstance(item, dict) or not {"quality", "hash", "timestamp"} <= item.keys():
                raise InvalidSignal(f"vpdq: {where}: expected {{quality, hash, timestamp}}")
            frame = _int(key, "frame key", where) if isinstance(key, str) else key
            frames.append(
                _check_frame(frame, item["quality"], item["hash"], item["timestamp"], where)
            )
        frames.sort(key=lambda fr: fr.frame)
        return _check_order(frames)
    if not isinstance(data, list):
        raise InvalidSignal(f"vpdq: expected a JSON list of frames, got {type(data).__name__}")
    for i, item in enumerate(data):
        where = f"entry {i + 1}"
        if isinstance(item, list):
            if len(item) != 4:
                raise InvalidSignal(
                    f"vpdq: {where}: expected [frame, quality, pdq_hex, timestamp], got {len(item)} items"
                )
            frames.append(_check_frame(item[0], item[1], item[2], item[3], where))
        elif isinstance(item, str):
            frames.append(_parse_line(item, where, i))
        else:
            raise InvalidSignal(
                f"vpdq: {where}: expected a list or string, got {type(item).__name__}"
            )
    return _check_order(frames)


class VpdqSignal(SignalType):
    """vPDQ: a list of frame PDQ hashes; the canonical value is :func:`frames_to_json`.

    ``compare`` returns ``100 - query_match_pct`` rounded up to an integer (0 = every usable frame of
    ``a`` matched a frame of ``b``), using the reference distance 31 and quality 50.
    """

    name: ClassVar[str] = "vpdq"
    is_perceptual: ClassVar[bool] = True

    @classmethod
    def validate(cls, value: str) -> str:
        return frames_to_json(parse_vpdq(value))

    @classmethod
    def compare(cls, a: str, b: str) -> int:
        m = match_videos(parse_vpdq(a), parse_vpdq(b))
        return math.ceil(100.0 - m.query_match_pct - 1e-9)


register(VpdqSignal)


# --------------------------------------------------------------------------------------------------
# Matching

FramesLike = Sequence[VpdqFrame] | VideoHash


def _frames(x: FramesLike) -> Sequence[VpdqFrame]:
    return x.frames if isinstance(x, VideoHash) else x


def prepare_frames(
    frames: FramesLike, quality: int = VPDQ_QUALITY_THRESHOLD
) -> npt.NDArray[np.uint64]:
    """As the reference: drop repeated hashes (first kept), then frames below ``quality``;
    the remaining hashes as an (N, 4) uint64 array (big-endian words of the 256 bits)."""
    seen: set[str] = set()
    kept: list[str] = []
    for f in _frames(frames):
        if f.pdq in seen:
            continue
        seen.add(f.pdq)
        if f.quality >= quality:
            kept.append(f.pdq)
    if not kept:
        return np.zeros((0, 4), dtype=np.uint64)
    return np.frombuffer(bytes.fromhex("".join(kept)), dtype=">u8").reshape(-1, 4).astype(np.uint64)


def _matched(
    q: npt.NDArray[np.uint64], c: npt.NDArray[np.uint64], distance: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(which rows of q have a row of c within ``distance``, and vice versa)."""
    q_hit = np.zeros(len(q), dtype=bool)
    c_hit = np.zeros(len(c), dtype=bool)
    if len(q) == 0 or len(c) == 0:
        return q_hit, c_hit
    step = max(1, _MATCH_CELLS // (len(c) * 4))
    for s in range(0, len(q), step):
        block = q[s : s + step]
        d = np.bitwise_count(block[:, None, :] ^ c[None, :, :]).sum(axis=2, dtype=np.int32)
        close = d <= distance
        q_hit[s : s + step] = close.any(axis=1)
        c_hit |= close.any(axis=0)
    return q_hit, c_hit


def match_videos(
    query: FramesLike,
    listed: FramesLike,
    distance: int = VPDQ_DISTANCE_THRESHOLD,
    quality: int = VPDQ_QUALITY_THRESHOLD,
) -> VideoMatch:
    """Reference vPDQ comparison (``match_VPDQ_hash_brute``), vectorised.

    Unlike the reference (which divides by zero), a side with no usable frame gives 0 %.
    """
    q = prepare_frames(query, quality)
    c = prepare_frames(listed, quality)
    q_hit, c_hit = _matched(q, c, distance)
    return VideoMatch(
        query_match_pct=float(q_hit.sum()) * 100.0 / len(q) if len(q) else 0.0,
        compared_match_pct=float(c_hit.sum()) * 100.0 / len(c) if len(c) else 0.0,
    )


def is_video_match(
    m: VideoMatch,
    query_match_pct: float = VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
    index_match_pct: float = VPDQ_INDEX_MATCH_THRESHOLD_PERCENT,
) -> bool:
    """The reference decision: both percentages at or above their thresholds (80 % / 0 %)."""
    return m.query_match_pct >= query_match_pct and m.compared_match_pct >= index_match_pct
