"""Bad image input gets a precise :class:`MediaError` (code + message), never a crash, and oversized
images are refused from their header, before any pixel memory is allocated."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import TE_DATA
from lifeguard.errors import MediaError
from lifeguard.settings import Settings
from lifeguard.signals.image import DecodedImage, decode_image

JPEG = (TE_DATA / "pdq-data/misc-images/b.jpg").read_bytes()  # 1600x1004 benign bridge photo
PNG = (TE_DATA / "pdq-data/misc-images/c.png").read_bytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that *declares* width x height but holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def png_bomb(width: int, height: int) -> bytes:
    """A valid, fully decodable all-black RGB PNG: a few hundred KB that inflate to w*h*3 bytes."""
    co = zlib.compressobj(9)
    row = b"\x00" * (1 + width * 3)
    data = b"".join(co.compress(row) for _ in range(height)) + co.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """The benign JPEG with its SOF header rewritten to declare another size."""
    i = 2
    while i < len(JPEG):
        marker, seg_len = JPEG[i + 1], int.from_bytes(JPEG[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            head = JPEG[: i + 5] + struct.pack(">HH", height, width)
            return head + JPEG[i + 9 :]
        i += 2 + seg_len
    raise AssertionError("no SOF marker")


def _saved(fmt: str) -> bytes:
    buf = io.BytesIO()
    with Image.open(io.BytesIO(JPEG)) as im:
        im.convert("RGB").save(buf, fmt)
    return buf.getvalue()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _png_corrupt_idat() -> bytes:
    i = PNG.index(b"IDAT") + 4 + 100
    return PNG[:i] + bytes((b * 7 + 13) % 256 for b in range(4000)) + PNG[i + 4000 :]


def _png_bad_ihdr_crc() -> bytes:
    return PNG[:29] + b"\x00\x00\x00\x00" + PNG[33:]


CASES: list[tuple[str, Callable[[], bytes], str, str]] = [
    # (id, bytes, code, text in message)
    ("zero-bytes", lambda: b"", "empty", "0 bytes"),
    (
        "text",
        lambda: b"just some notes, not an image\n" * 10,
        "unsupported",
        "not a supported image",
    ),
    (
        "pdf-header",
        lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n",
        "unsupported",
        "PDF",
    ),
    (
        "svg",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        "unsupported",
        "",
    ),
    ("html", lambda: b"<!doctype html><html><body>hi</body></html>", "unsupported", ""),
    ("random-bytes", lambda: bytes((i * 131 + 7) % 251 for i in range(5000)), "unsupported", ""),
    ("zip", lambda: b"PK\x03\x04" + b"\x00" * 100, "unsupported", "archive"),
    ("half-jpeg", lambda: _half(JPEG), "truncated", "truncated"),
    ("jpeg-headers-only", lambda: JPEG[:300], "truncated", "truncated"),
    ("jpeg-missing-end", lambda: JPEG[:-2], "truncated", "truncated"),
    ("half-png", lambda: _half(PNG), "truncated", "truncated"),
    ("png-signature-only", lambda: PNG[:8], "truncated", "PNG"),
    ("png-100-bytes", lambda: PNG[:100], "truncated", "truncated"),
    ("half-gif", lambda: _half(_saved("GIF")), "truncated", "truncated"),
    ("half-tiff", lambda: _half(_saved("TIFF")), "truncated", "truncated"),
    ("half-bmp", lambda: _half(_saved("BMP")), "truncated", "truncated"),
    ("half-webp", lambda: _half(_saved("WEBP")), "truncated", "WebP"),
    ("png-corrupt-pixel-data", _png_corrupt_idat, "corrupt", "cannot decode"),
    ("png-bad-header-checksum", _png_bad_ihdr_crc, "corrupt", "PNG"),
    ("png-zero-size", lambda: png_header_only(0, 0), "corrupt", "PNG"),
    (
        "bomb-header-20000x20000",
        lambda: png_header_only(20_000, 20_000),
        "too_large",
        "400,000,000",
    ),
    ("bomb-8000x8000-real-data", lambda: png_bomb(8000, 8000), "too_large", "64,000,000"),
    ("jpeg-claims-60000x60000", lambda: jpeg_claiming(60_000, 60_000), "too_large", "pixels"),
    ("absurd-1x70000", lambda: png_header_only(1, 70_000), "too_large", "1x70000"),
    ("absurd-70000x1", lambda: png_header_only(70_000, 1), "too_large", "70000x1"),
]


@pytest.mark.parametrize(
    ("make", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_bytes_precise_error(make: Callable[[], bytes], code: str, text: str) -> None:
    data = make()
    with pytest.raises(MediaError) as exc:
        decode_image(data)
    assert exc.value.code == code, exc.value.message
    assert text in exc.value.message


@pytest.mark.parametrize(
    ("make", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_files_same_errors_as_bytes(
    make: Callable[[], bytes], code: str, text: str, tmp_path: Path
) -> None:
    path = tmp_path / "upload.jpg"
    path.write_bytes(make())
    with pytest.raises(MediaError) as exc:
        decode_image(path)
    assert exc.value.code == code, exc.value.message
    assert text in exc.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as exc:
        decode_image(tmp_path / "nope.jpg")
    assert exc.value.code == "not_found"
    assert "nope.jpg" in exc.value.message


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as exc:
        decode_image(tmp_path)
    assert exc.value.code == "not_a_file"


def test_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "b.jpg"
    path.write_bytes(JPEG)
    with pytest.raises(MediaError) as exc:
        decode_image(path, Settings(max_file_bytes=10_000))
    assert exc.value.code == "too_large" and "10,000" in exc.value.message
    with pytest.raises(MediaError) as exc:
        decode_image(JPEG, Settings(max_file_bytes=10_000))
    assert exc.value.code == "too_large"


# ---------------------------------------------------------------------------------------------
# Limits are configurable


def test_pixel_limit_default_is_50_megapixels() -> None:
    assert Settings().max_image_pixels == 50_000_000
    with pytest.raises(MediaError, match="LIFEGUARD_MAX_IMAGE_PIXELS") as exc:
        decode_image(png_header_only(7072, 7072))  # 50.01 MP
    assert exc.value.code == "too_large"
    # 49.9 MP passes the size check (then fails only because there is no pixel data).
    with pytest.raises(MediaError) as exc:
        decode_image(png_header_only(7000, 7000))
    assert exc.value.code != "too_large"


def test_pixel_limit_lowered() -> None:
    assert decode_image(JPEG).width == 1600
    with pytest.raises(MediaError) as exc:
        decode_image(JPEG, Settings(max_image_pixels=1_000_000))  # the photo has 1.6 MP
    assert exc.value.code == "too_large" and "1,000,000" in exc.value.message


def test_pixel_limit_raised_above_pillows_warning_level() -> None:
    """Pillow warns above ~89 MP; lifeguard's own limit decides, so 95 MP is accepted at 100 MP."""
    settings = Settings(max_image_pixels=100_000_000)
    with pytest.raises(MediaError) as exc:
        decode_image(png_header_only(10_000, 9_500), settings)
    assert exc.value.code != "too_large", exc.value.message  # no pixel data: truncated/corrupt


def test_side_limit_configurable() -> None:
    with pytest.raises(MediaError) as exc:
        decode_image(JPEG, Settings(max_image_side=1000))
    assert exc.value.code == "too_large" and "1600x1004" in exc.value.message


def test_bomb_decodes_when_allowed() -> None:
    """The 8000x8000 bomb is a valid image: allowed by a higher limit, it decodes (to black)."""
    d = decode_image(png_bomb(8000, 8000), Settings(max_image_pixels=64_000_000))
    assert isinstance(d, DecodedImage) and (d.width, d.height) == (8000, 8000)
    assert int(d.pixels.max()) == 0


# ---------------------------------------------------------------------------------------------
# Memory: the bomb is refused before allocating its pixels

_RSS_PROBE = """
import json, sys
from pathlib import Path
from lifeguard.errors import MediaError
from lifeguard.settings import Settings
from lifeguard.signals.image import decode_image

def peak_kib():
    # VmHWM: this process's peak resident memory. (ru_maxrss is inherited across fork+exec on
    # Linux, so in a child of a big pytest process it would already be high.)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM")

data = Path(sys.argv[1]).read_bytes()
limit = int(sys.argv[2])
before = peak_kib()
try:
    decode_image(data, Settings(max_image_pixels=limit))
    outcome = "decoded"
except MediaError as e:
    outcome = e.code
print(json.dumps({"outcome": outcome, "grew_kib": peak_kib() - before}))
"""


def _probe(path: Path, limit: int) -> dict[str, int | str]:
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(path), str(limit)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, int | str] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_bomb_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(8000, 8000))  # ~190 KB on disk, 192 MB as RGB pixels
    refused = _probe(path, 50_000_000)
    assert refused["outcome"] == "too_large"
    assert int(refused["grew_kib"]) < 20 * 1024, refused  # peak RSS grew < 20 MiB
    # Control: the same probe sees the allocation when the image is allowed to decode.
    allowed = _probe(path, 64_000_000)
    assert allowed["outcome"] == "decoded"
    assert int(allowed["grew_kib"]) > 150 * 1024, allowed


def test_header_bomb_uses_no_memory_in_process() -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(MediaError):
            decode_image(png_header_only(20_000, 20_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # Python-side allocations; the RSS probe above covers native memory


# ---------------------------------------------------------------------------------------------
# Never a crash: arbitrary damage to real files gives an image or a MediaError

SEEDS = {"jpeg": JPEG[:6000] + JPEG[-2000:], "png": _saved("PNG")[:20000], "gif": _saved("GIF")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(SEEDS)),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8),
)
def test_damaged_files_never_crash(kind: str, cut: float, flips: list[tuple[float, int]]) -> None:
    data = bytearray(SEEDS[kind][: max(1, int(len(SEEDS[kind]) * cut))])
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    try:
        d = decode_image(bytes(data))
    except MediaError as e:
        assert e.code in {
            "empty",
            "unsupported",
            "truncated",
            "corrupt",
            "too_large",
            "bad_dimensions",
        }
        assert e.message
    else:
        assert d.pixels.dtype == np.uint8 and d.pixels.ndim == 3 and d.pixels.shape[2] == 3
