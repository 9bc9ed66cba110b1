"""vPDQ: hashing agrees with Meta's reference hash files, serialisation round-trips, validation is
precise, and matching equals python-threatexchange's brute-force matcher (vectorised here)."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

import pytest

from conftest import TE_DATA
from lifeguard.errors import InvalidSignal, MediaError
from lifeguard.signals.base import get_signal_type, normalise
from lifeguard.signals.pdq import hamming
from lifeguard.signals.video import (
    VideoHash,
    VideoMatch,
    VpdqFrame,
    VpdqSignal,
    frames_from_text,
    frames_to_json,
    frames_to_text,
    hash_video,
    is_video_match,
    match_videos,
    parse_vpdq,
    read_hash_file,
    to_threatexchange_json,
    write_hash_file,
)

HAVE_VPDQ = importlib.util.find_spec("vpdq") is not None
HAVE_TE = importlib.util.find_spec("threatexchange") is not None and HAVE_VPDQ


F = TypeVar("F")


def video(f: F) -> F:
    """Marks a test ``video`` and skips it where vpdq (the ``video`` extra) is not installed."""
    return pytest.mark.video(pytest.mark.skipif(not HAVE_VPDQ, reason="vpdq not installed")(f))


needs_threatexchange = pytest.mark.skipif(
    not HAVE_TE, reason="python-threatexchange (bench extra) not installed"
)

VIDEOS = TE_DATA / "sample-videos"
REF = TE_DATA / "vpdq-sample-hashes"
WASM_CSV = TE_DATA / "expected-pdq-wasm-reference.csv"

# Videos present with a -128x128 reference (hashed downsampled: ~0.6 s each on 2 cores).
DOWNSAMPLED = sorted(
    p.stem for p in VIDEOS.glob("*.mp4") if (REF / f"{p.stem}-128x128.txt").exists()
)
# Native-size checks on a few short videos (full-size hashing costs ~3 s per video).
NATIVE = ["test-padded-dimensions", "doorknob-hd-no-bar", "pattern-sd-grey-bar"]

CHAIR_FAMILY = [
    "chair-19-sd-bar",
    "chair-20-sd-bar",
    "chair-22-sd-grey-bar",
    "chair-22-sd-sepia-bar",
    "chair-22-with-small-logo-bar",
    "chair-orig-22-sd-bar",
]
PATTERN_FAMILY = ["pattern-sd-grey-bar", "pattern-sd-with-small-logo-bar"]


@cache
def _hashed(stem: str, downsample: int, seconds_per_hash: float = 0.0) -> VideoHash:
    return hash_video(VIDEOS / f"{stem}.mp4", seconds_per_hash, downsample)


def _reference(stem: str, downsample: int) -> list[VpdqFrame]:
    suffix = f"-{downsample}x{downsample}" if downsample else ""
    return read_hash_file(REF / f"{stem}{suffix}.txt")


def test_sample_data_present() -> None:
    assert len(DOWNSAMPLED) >= 12, DOWNSAMPLED
    for stem in NATIVE:
        assert (VIDEOS / f"{stem}.mp4").exists() and (REF / f"{stem}.txt").exists()


def _assert_conforms(ours: VideoHash, ref: list[VpdqFrame]) -> None:
    assert [f.frame for f in ours.frames] == [f.frame for f in ref]
    checked = 0
    for mine, theirs in zip(ours.frames, ref, strict=True):
        assert mine.timestamp == pytest.approx(theirs.timestamp, abs=0.0011)
        if mine.quality >= 50 and theirs.quality >= 50:
            d = hamming(mine.pdq, theirs.pdq)
            assert d < 31, f"frame {mine.frame}: distance {d}"
            checked += 1
    # Quality is recomputed from our decode: near 50 it may fall either side; most frames compare.
    assert checked >= 0.9 * sum(f.quality >= 50 for f in ref)


@video
@pytest.mark.parametrize("stem", DOWNSAMPLED)
def test_downsampled_hash_matches_reference(stem: str) -> None:
    _assert_conforms(_hashed(stem, 128), _reference(stem, 128))


@video
@pytest.mark.parametrize("stem", NATIVE)
def test_native_hash_matches_reference(stem: str) -> None:
    _assert_conforms(_hashed(stem, 0), _reference(stem, 0))


@video
def test_seconds_per_hash_samples_about_one_frame_per_second() -> None:
    every = _hashed("chair-19-sd-bar", 128)
    sparse = _hashed("chair-19-sd-bar", 128, 1.0)
    by_frame = {f.frame: f for f in every.frames}
    assert 15 <= sparse.frame_count <= 22  # an 18.8 s video
    assert sparse.frames[0].frame == 0
    gaps = [
        b.timestamp - a.timestamp for a, b in zip(sparse.frames, sparse.frames[1:], strict=False)
    ]
    assert all(0.9 <= g <= 1.1 for g in gaps), gaps
    for f in sparse.frames:  # the sampled frames are frames of the every-frame hash
        assert hamming(f.pdq, by_frame[f.frame].pdq) == 0


@video
def test_video_hash_metadata() -> None:
    vh = _hashed("chair-19-sd-bar", 128)
    assert vh.frame_count == len(vh.frames) == 564
    assert vh.size == (VIDEOS / "chair-19-sd-bar.mp4").stat().st_size
    # MD5 published by the WASM reference for this video.
    with WASM_CSV.open(newline="") as f:
        expected_md5 = {row["path"]: row["hash"] for row in csv.DictReader(f)}[
            "sample-videos/chair-19-sd-bar.mp4"
        ]
    assert vh.md5 == expected_md5
    assert len(vh.sha256) == 64
    # Duration from the MP4 header: the last frame's time plus one frame (30 fps).
    assert vh.duration is not None
    assert vh.duration == pytest.approx(vh.frames[-1].timestamp + 1 / 30, abs=0.05)
    assert json.loads(vh.value)[0][2] == vh.frames[0].pdq


# ---------------------------------------------------------------------------------------------
# Matching semantics


@video
@pytest.mark.parametrize("query", CHAIR_FAMILY)
def test_chair_variants_match_each_other(query: str) -> None:
    for listed in CHAIR_FAMILY:
        m = match_videos(_hashed(query, 128), _hashed(listed, 128))
        assert m.is_match(), (query, listed, m)


@video
def test_pattern_variants_match_and_distinct_videos_do_not() -> None:
    a, b = (_hashed(s, 128) for s in PATTERN_FAMILY)
    assert match_videos(a, b).is_match() and match_videos(b, a).is_match()
    for chair in CHAIR_FAMILY[:2]:
        for other in [*PATTERN_FAMILY, "doorknob-hd-no-bar"]:
            m = match_videos(_hashed(chair, 128), _hashed(other, 128))
            assert m.query_match_pct < 5 and m.compared_match_pct < 5, (chair, other, m)
            assert not m.is_match()


@video
@pytest.mark.parametrize("stem", DOWNSAMPLED)
def test_our_hash_matches_the_reference_file(stem: str) -> None:
    m = match_videos(_hashed(stem, 128), _reference(stem, 128))
    assert m.query_match_pct >= 95 and m.compared_match_pct >= 95, m


def test_reference_files_cross_matches() -> None:
    """From the reference hash files alone (no decoding): the published families match."""
    native = {s: _reference(s, 0) for s in [*CHAIR_FAMILY, "chair-orig-22-hd-no-bar"]}
    for q in CHAIR_FAMILY:
        for c in CHAIR_FAMILY:
            assert match_videos(native[q], native[c]).is_match()
    # Pattern, longer edit: all of the short one is in the long one, not the other way round at 100%.
    short, long_ = _reference("pattern-hd-no-bar", 0), _reference("pattern-longer-no-bar", 0)
    m = match_videos(short, long_)
    assert m.query_match_pct == 100.0 and m.compared_match_pct < 100.0
    assert not match_videos(native["chair-19-sd-bar"], short).is_match()


def _brute(
    query: list[VpdqFrame], listed: list[VpdqFrame], distance: int, quality: int
) -> VideoMatch:
    from threatexchange.extensions.vpdq.vpdq_brute_matcher import match_VPDQ_hash_brute
    from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature

    def conv(fs: list[VpdqFrame]) -> list[VpdqCompactFeature]:
        return [VpdqCompactFeature(f.pdq, f.quality, f.timestamp) for f in fs]

    r = match_VPDQ_hash_brute(conv(query), conv(listed), quality, distance)
    return VideoMatch(r.query_match_percent, r.compared_match_percent)


def _flip(hex_: str, bits: int, rng: random.Random) -> str:
    v = int(hex_, 16)
    for b in rng.sample(range(256), bits):
        v ^= 1 << b
    return f"{v:064x}"


def _synthetic(rng: random.Random, n: int, base: list[str], q_low: float) -> list[VpdqFrame]:
    frames = []
    for i in range(n):
        if base and rng.random() < 0.6:
            h = _flip(rng.choice(base), rng.choice([0, 5, 29, 30, 31, 32, 33, 60]), rng)
        else:
            h = f"{rng.getrandbits(256):064x}"
        if frames and rng.random() < 0.1:
            h = frames[-1].pdq  # a repeated frame (deduplicated by both)
        quality = rng.choice([10, 49, 50, 51, 100]) if rng.random() < q_low else 100
        frames.append(VpdqFrame(i, quality, h, i / 30))
    return frames


@pytest.mark.parametrize("seed", range(25))
@needs_threatexchange
def test_vectorised_match_equals_reference_brute_synthetic(seed: int) -> None:
    """Boundary-heavy synthetic videos: distances 29-33 around the threshold, low qualities,
    repeated frames; several thresholds."""
    rng = random.Random(seed)
    base = [f"{rng.getrandbits(256):064x}" for _ in range(20)]
    query = _synthetic(rng, rng.randint(1, 60), base, 0.3)
    listed = _synthetic(rng, rng.randint(1, 60), base, 0.3)
    for distance, quality in [(31, 50), (30, 50), (32, 0), (0, 100)]:
        try:
            want = _brute(query, listed, distance, quality)
        except ZeroDivisionError:  # the reference divides by zero when no frame is usable
            got = match_videos(query, listed, distance, quality)
            assert got.query_match_pct == 0.0 or got.compared_match_pct == 0.0
            continue
        got = match_videos(query, listed, distance, quality)
        assert got.query_match_pct == pytest.approx(want.query_match_pct)
        assert got.compared_match_pct == pytest.approx(want.compared_match_pct)


@pytest.mark.parametrize(
    ("q", "c"),
    [
        ("chair-19-sd-bar", "chair-22-with-large-logo-bar"),
        ("pattern-hd-no-bar", "pattern-longer-no-bar"),
        ("chair-20-sd-bar", "pattern-sd-grey-bar"),
    ],
)
@needs_threatexchange
def test_vectorised_match_equals_reference_brute_on_real_hashes(q: str, c: str) -> None:
    query, listed = _reference(q, 0)[::4], _reference(c, 0)[::4]  # a subset: the brute loop is slow
    want, got = _brute(query, listed, 31, 50), match_videos(query, listed)
    assert got.query_match_pct == pytest.approx(want.query_match_pct)
    assert got.compared_match_pct == pytest.approx(want.compared_match_pct)


def test_decision_thresholds() -> None:
    assert is_video_match(VideoMatch(80.0, 0.0))
    assert not is_video_match(VideoMatch(79.9, 100.0))
    assert not is_video_match(VideoMatch(90.0, 10.0), index_match_pct=20.0)
    assert VideoMatch(90.0, 30.0).is_match(query_match_pct=90.0, index_match_pct=30.0)


def test_no_usable_frames_is_zero_not_a_crash() -> None:
    low = [VpdqFrame(0, 10, "0" * 64, 0.0)]
    good = [VpdqFrame(0, 100, "0" * 64, 0.0)]
    assert match_videos(low, good) == VideoMatch(0.0, 0.0)
    assert match_videos(good, low) == VideoMatch(0.0, 0.0)
    assert not match_videos(low, low).is_match()


def test_large_inputs_are_processed_in_blocks() -> None:
    rng = random.Random(7)
    listed = [VpdqFrame(i, 100, f"{rng.getrandbits(256):064x}", float(i)) for i in range(3000)]
    query = [VpdqFrame(i, 100, _flip(f.pdq, 20, rng), float(i)) for i, f in enumerate(listed[::2])]
    query += [VpdqFrame(2000 + i, 100, f"{rng.getrandbits(256):064x}", 0.0) for i in range(1500)]
    m = match_videos(query, listed)
    assert m.query_match_pct == pytest.approx(50.0)
    assert m.compared_match_pct == pytest.approx(50.0)


# ---------------------------------------------------------------------------------------------
# Serialisation and validation


@pytest.mark.parametrize("name", ["chair-19-sd-bar.txt", "test-padded-dimensions.txt"])
def test_reference_text_round_trips_byte_for_byte(name: str, tmp_path: Path) -> None:
    text = (REF / name).read_text()
    frames = frames_from_text(text)
    assert frames_to_text(frames) == text
    write_hash_file(tmp_path / "x.txt", frames)
    assert read_hash_file(tmp_path / "x.txt") == frames
    assert parse_vpdq(frames_to_json(frames)) == frames


def test_signal_registered_with_aliases() -> None:
    assert get_signal_type("vpdq") is VpdqSignal
    assert get_signal_type("video_vpdq") is VpdqSignal
    frames = _reference("doorknob-hd-no-bar", 0)
    name, value = normalise("VPDQ", frames_to_text(frames))
    assert name == "vpdq" and value == frames_to_json(frames)
    assert VpdqSignal.compare(value, value) == 0
    other = frames_to_json(_reference("pattern-hd-no-bar", 0))
    assert VpdqSignal.compare(value, other) == 100


def test_validate_normalises_every_accepted_form() -> None:
    frames = _reference("doorknob-hd-no-bar", 0)[:5]
    canonical = frames_to_json(frames)
    upper = frames_to_text(frames).upper()
    assert VpdqSignal.validate(upper) == canonical
    assert VpdqSignal.validate(canonical) == canonical
    assert VpdqSignal.validate("  " + canonical + "\n") == canonical
    # python-threatexchange's VPDQSignal string: no frame numbers, so they become 0..n-1.
    te = to_threatexchange_json(frames)
    renumbered = [VpdqFrame(i, f.quality, f.pdq, f.timestamp) for i, f in enumerate(frames)]
    assert parse_vpdq(te) == renumbered
    # Older python-threatexchange form keyed by frame number.
    old = json.dumps(
        {
            str(f.frame): {"quality": f.quality, "hash": f.pdq, "timestamp": f.timestamp}
            for f in frames
        }
    )
    assert parse_vpdq(old) == frames


@needs_threatexchange
def test_threatexchange_reads_our_export() -> None:
    from threatexchange.extensions.vpdq.vpdq import VPDQSignal
    from threatexchange.extensions.vpdq.vpdq_util import json_to_vpdq

    frames = _reference("doorknob-hd-no-bar", 0)
    te = to_threatexchange_json(frames)
    assert VPDQSignal.validate_signal_str(te) == te
    parsed = json_to_vpdq(te)
    assert [(p.pdq_hex, p.quality) for p in parsed] == [(f.pdq, f.quality) for f in frames]
    assert VPDQSignal.compare_hash(te, te).match


H = "a" * 64


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty value"),
        ("   ", "empty value"),
        ("[]", "no frames"),
        ("{}", "no frames"),
        ("[[0,100,", "invalid JSON"),
        ('"abc"', "expected 'frame,quality,pdq_hex,timestamp'"),
        ("[1]", "expected a list or string"),
        (f'[[0,100,"{H}"]]', "got 3 items"),
        (f'[[-1,100,"{H}",0]]', "frame number must be an integer >= 0"),
        (f'[[true,100,"{H}",0]]', "frame number must be an integer"),
        (f'[[0,101,"{H}",0]]', "quality must be an integer 0-100"),
        (f'[[0,50.5,"{H}",0]]', "quality must be an integer 0-100"),
        ('[[0,100,"abc",0]]', "64 hex digits"),
        (f'[[0,100,"{"g" * 64}",0]]', "64 hex digits"),
        ("[[0,100,12,0]]", "must be a string"),
        (f'[[0,100,"{H}",-1]]', "finite and >= 0"),
        (f'[[0,100,"{H}",NaN]]', "finite and >= 0"),
        (f'[[0,100,"{H}","x"]]', "timestamp must be a number"),
        (f'[[1,100,"{H}",0],[1,100,"{H}",0]]', "frame numbers must increase"),
        (f"0,100,{H},0.000\nnot a line", "line 2"),
        (f"x,100,{H},0.000", "frame is not an integer"),
        (f"0,100,{H},abc", "timestamp is not a number"),
        (f'["{H},100"]', "got 2 field(s)"),
        ('{"0": {"quality": 100}}', "expected {quality, hash, timestamp}"),
    ],
)
def test_validate_rejects_garbage_precisely(value: str, message: str) -> None:
    with pytest.raises(InvalidSignal, match=r"^vpdq: ") as exc:
        VpdqSignal.validate(value)
    assert message in str(exc.value)
    assert exc.value.code == "invalid_signal"


def test_validate_rejects_non_string() -> None:
    with pytest.raises(InvalidSignal, match="expected a string"):
        VpdqSignal.validate(123)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Bad inputs


def _jpeg_as_mp4(tmp: Path) -> Path:
    p = tmp / "photo.mp4"
    shutil.copy(TE_DATA / "pdq-data/misc-images/b.jpg", p)
    return p


def _png_as_mp4(tmp: Path) -> Path:
    p = tmp / "image.mp4"
    shutil.copy(TE_DATA / "pdq-data/misc-images/c.png", p)
    return p


def _empty(tmp: Path) -> Path:
    p = tmp / "empty.mp4"
    p.write_bytes(b"")
    return p


def _truncated(tmp: Path) -> Path:
    p = tmp / "truncated.mp4"
    p.write_bytes((VIDEOS / "chair-19-sd-bar.mp4").read_bytes()[:1024])
    return p


def _half(tmp: Path) -> Path:
    p = tmp / "half.mp4"
    data = (VIDEOS / "doorknob-hd-no-bar.mp4").read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _text(tmp: Path) -> Path:
    p = tmp / "notes.mp4"
    p.write_text("this is a text file, not a video\n" * 20)
    return p


def _pdf(tmp: Path) -> Path:
    p = tmp / "doc.mp4"
    p.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    return p


def _no_moov(tmp: Path) -> Path:
    p = tmp / "nomoov.mp4"
    data = (VIDEOS / "doorknob-hd-no-bar.mp4").read_bytes()
    ftyp_len = int.from_bytes(data[:4], "big")
    p.write_bytes(data[:ftyp_len] + (16).to_bytes(4, "big") + b"free" + b"\0" * 8)
    return p


def _missing(tmp: Path) -> Path:
    return tmp / "missing.mp4"


def _directory(tmp: Path) -> Path:
    (tmp / "dir.mp4").mkdir()
    return tmp / "dir.mp4"


@video
@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (_empty, "empty", "0 bytes"),
        (_jpeg_as_mp4, "not_video", "JPEG image"),
        (_png_as_mp4, "not_video", "PNG image"),
        (_truncated, "truncated", "box 'moov'"),
        (_half, "truncated", "box 'mdat'"),
        (_text, "not_video", "cannot open it as any known video format"),
        (_pdf, "not_video", "PDF document"),
        (_no_moov, "corrupt", "no 'moov' box"),
        (_missing, "not_found", "no such file"),
        (_directory, "not_a_file", "not a regular file"),
    ],
)
def test_bad_video_inputs(
    make: Callable[[Path], Path], code: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(MediaError) as exc:
        hash_video(make(tmp_path), downsample=128)
    assert exc.value.code == code, exc.value
    assert message in exc.value.message


@video
def test_file_size_limit(tmp_path: Path) -> None:
    from lifeguard.settings import Settings

    with pytest.raises(MediaError) as exc:
        hash_video(VIDEOS / "doorknob-hd-no-bar.mp4", settings=Settings(max_file_bytes=1000))
    assert exc.value.code == "too_large"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="seconds_per_hash"):
        hash_video(VIDEOS / "doorknob-hd-no-bar.mp4", seconds_per_hash=-1)
    with pytest.raises(ValueError, match="downsample"):
        hash_video(VIDEOS / "doorknob-hd-no-bar.mp4", downsample=-5)
