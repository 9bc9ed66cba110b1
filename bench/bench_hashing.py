"""Hashing throughput: lifeguard's decode (reduced-scale JPEG fast path) + PDQ vs the anchor.

    python bench/bench_hashing.py [--limit N] [--big N] [--repeat R] [--write-docs]

Anchor (a): python-threatexchange's ``pdq_hasher.pdq_from_file`` — Pillow full decode +
``pdqhash.compute`` — run in the same process, on the same files, interleaved image by image.
Lifeguard (b): ``decode_image`` (default settings: fast path, ``fast_decode_min_side`` 512) +
``pdq_from_pixels``. Reference hash for accuracy (c): ``decode_image(fast=False)`` + PDQ, i.e. the
full-resolution pixels with EXIF orientation (bit-identical to the C++ reference on those pixels).

Sets: the photos corpus (/work/shared/data/photos, sorted, first ``--limit``), and >= 12 MP JPEGs: the
four 4032x3024 exif-rotn phone photos plus Kodak photos upscaled (Lanczos) to 12-24 MP JPEGs, written
once into bench/out/big/ (git-ignored). Also: a sweep of ``fast_decode_min_side`` on the big set, MD5 +
SHA-256 of the bytes, and vPDQ hashing + matching of sample videos.

Timings are single-threaded wall clock (perf_counter) per image, file read included; with
``--repeat R`` the median of R runs per image is used. ``--write-docs`` replaces the ``## Hashing``
section of docs/benchmarks.md (only that section).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from lifeguard.settings import Settings
from lifeguard.signals.exact import digest_file
from lifeguard.signals.image import decode_image
from lifeguard.signals.pdq import hamming, pdq_from_pixels

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PHOTOS = SHARED / "photos"
TE = SHARED / "threatexchange"
OUT = ROOT / "bench" / "out"
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Hashing"

# (width, height) of the upscaled Kodak JPEGs: 12.2, 13.7, 16.0, 18.9 and 24.0 MP.
BIG_SIZES = [(4032, 3024), (4536, 3024), (4896, 3264), (5328, 3552), (6000, 4000)]


def _anchor(path: Path) -> tuple[str, int]:
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file

    h, q = pdq_from_file(path)
    return str(h), int(q)


def _lifeguard(settings: Settings, fast: bool) -> Callable[[Path], tuple[str, int]]:
    def run(path: Path) -> tuple[str, int]:
        h = pdq_from_pixels(decode_image(path, settings, fast=fast).pixels)
        return h.hex, h.quality

    return run


def _timed(fn: Callable[[Path], tuple[str, int]], path: Path) -> tuple[float, tuple[str, int]]:
    t = time.perf_counter()
    out = fn(path)
    return time.perf_counter() - t, out


@dataclass
class Series:
    times: list[float] = field(default_factory=list)

    def add(self, t: float) -> None:
        self.times.append(t)

    @property
    def ips(self) -> float:
        return len(self.times) / sum(self.times) if self.times else 0.0

    def pct(self, p: float) -> float:
        if not self.times:
            return 0.0
        return float(np.percentile(np.array(self.times) * 1000.0, p))


@dataclass
class SetResult:
    name: str
    n: int
    anchor: Series
    fast: Series
    full: Series
    distances: list[int]
    reduced: int
    anchor_vs_full_max: int


def make_big_jpegs(count: int) -> list[Path]:
    """The exif-rotn photos plus ``count`` upscaled Kodak JPEGs (created once, cached)."""
    files = sorted((TE / "pdq-data/reg-test-input/exif-rotn").glob("*.jpg"))
    kodak = sorted((PHOTOS / "kodak").glob("*.png"))
    big = OUT / "big"
    big.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        src = kodak[i % len(kodak)]
        w, h = BIG_SIZES[i % len(BIG_SIZES)]
        dst = big / f"{src.stem}-{w}x{h}.jpg"
        if not dst.exists():
            with Image.open(src) as im:
                rgb = im.convert("RGB")
                if rgb.height > rgb.width:  # keep the photo's orientation
                    w, h = h, w
                rgb.resize((w, h), Image.Resampling.LANCZOS).save(dst, quality=90)
        files.append(dst)
    return files


def bench_set(name: str, paths: list[Path], repeat: int, settings: Settings) -> SetResult:
    anchor, fast, full = Series(), Series(), Series()
    dists: list[int] = []
    reduced = 0
    anchor_vs_full = 0
    f_fast, f_full = _lifeguard(settings, True), _lifeguard(settings, False)
    for fn in (_anchor, f_fast, f_full):  # warm-up: imports and first-call costs are not timed
        fn(paths[0])
    for p in paths:
        ta, tb, tc = [], [], []
        ha = hb = hc = ("", 0)
        for _ in range(repeat):  # interleaved: same cache state for each method
            t, ha = _timed(_anchor, p)
            ta.append(t)
            t, hb = _timed(f_fast, p)
            tb.append(t)
            t, hc = _timed(f_full, p)
            tc.append(t)
        anchor.add(statistics.median(ta))
        fast.add(statistics.median(tb))
        full.add(statistics.median(tc))
        dists.append(hamming(hb[0], hc[0]))
        reduced += int(decode_image(p, settings).reduced)
        with Image.open(p) as im:
            upright = im.getexif().get(0x0112, 1) in (0, 1)
        if upright:  # the anchor ignores EXIF orientation; compare only where there is none
            anchor_vs_full = max(anchor_vs_full, hamming(ha[0], hc[0]))
    return SetResult(name, len(paths), anchor, fast, full, dists, reduced, anchor_vs_full)


def sweep_min_side(
    paths: list[Path], sides: list[int], repeat: int
) -> list[tuple[int, Series, list[int], str]]:
    full = _lifeguard(Settings(), False)
    refs = {p: full(p)[0] for p in paths}
    rows = []
    for side in sides:
        s = Settings(fast_decode_min_side=side)
        fn = _lifeguard(s, True)
        series = Series()
        dists = []
        shape = ""
        for p in paths:
            ts = []
            h = ("", 0)
            for _ in range(repeat):
                t, h = _timed(fn, p)
                ts.append(t)
            series.add(statistics.median(ts))
            dists.append(hamming(h[0], refs[p]))
            if not shape:
                px = decode_image(p, s).pixels
                shape = f"{px.shape[1]}x{px.shape[0]}"
        rows.append((side, series, dists, shape))
    return rows


def bench_digests(paths: list[Path]) -> tuple[int, float]:
    total = 0
    t = time.perf_counter()
    for p in paths:
        _, _, n = digest_file(p)
        total += n
    return total, time.perf_counter() - t


def bench_video() -> list[str]:
    from lifeguard.signals.video import hash_video, match_videos, read_hash_file

    lines = [
        "| video | seconds_per_hash | downsample | frames hashed | time (s) | frames/s | × real time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    video = TE / "sample-videos" / "chair-19-sd-bar.mp4"
    for sph, ds in [(1.0, 0), (0.0, 0), (0.0, 128)]:
        t = time.perf_counter()
        vh = hash_video(video, sph, ds)
        dt = time.perf_counter() - t
        dur = vh.duration or 0.0
        lines.append(
            f"| {video.name} ({dur:.1f} s) | {sph:g} | {ds or 'native'} | {vh.frame_count} | "
            f"{dt:.2f} | {vh.frame_count / dt:.0f} | {dur / dt:.1f} |"
        )
    # Matching: vectorised (lifeguard) vs python-threatexchange's brute loop, same inputs.
    from threatexchange.extensions.vpdq.vpdq_brute_matcher import match_VPDQ_hash_brute
    from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature

    ref = TE / "vpdq-sample-hashes"
    a, b = read_hash_file(ref / "chair-19-sd-bar.txt"), read_hash_file(ref / "chair-20-sd-bar.txt")
    t = time.perf_counter()
    mine = match_videos(a, b)
    t_mine = time.perf_counter() - t
    ca = [VpdqCompactFeature(f.pdq, f.quality, f.timestamp) for f in a]
    cb = [VpdqCompactFeature(f.pdq, f.quality, f.timestamp) for f in b]
    t = time.perf_counter()
    theirs = match_VPDQ_hash_brute(ca, cb, 50, 31)
    t_brute = time.perf_counter() - t
    same = (
        abs(mine.query_match_pct - theirs.query_match_percent) < 1e-9
        and abs(mine.compared_match_pct - theirs.compared_match_percent) < 1e-9
    )
    lines += [
        "",
        f"Matching {len(a)} x {len(b)} frames (chair-19 vs chair-20 reference hashes): lifeguard "
        f"vectorised {t_mine * 1000:.1f} ms vs python-threatexchange `match_VPDQ_hash_brute` "
        f"{t_brute * 1000:.0f} ms (**{t_brute / t_mine:.0f}x**); results identical: {same} "
        f"(query {mine.query_match_pct:.1f} %, compared {mine.compared_match_pct:.1f} %).",
    ]
    return lines


def _machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"2-core python-svc ({cpu}, {os.cpu_count()} CPUs visible), Python {platform.python_version()}"


def render(
    args: argparse.Namespace,
    results: list[SetResult],
    sweep: list[tuple[int, Series, list[int], str]],
    digests: tuple[int, float],
    video: list[str],
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
    wall: float,
) -> str:
    cmd = "python bench/bench_hashing.py" + "".join(
        f" --{k.replace('_', '-')} {v}"
        for k, v in [("limit", args.limit), ("big", args.big), ("repeat", args.repeat)]
    )
    out = [
        SECTION,
        "",
        f"Command: `{cmd}` (total {wall:.0f} s)  ",
        f"Machine: {_machine()}  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Load average (1/5/15 min) at start "
        f"{'/'.join(f'{x:.2f}' for x in load[0])}, at end {'/'.join(f'{x:.2f}' for x in load[1])} "
        "(other engineers share the 2 cores; absolute times are noisy, ratios are measured "
        "interleaved image by image in the same run).",
        "",
        "Anchor: python-threatexchange `pdq_hasher.pdq_from_file` (Pillow full decode + `pdqhash.compute`). "
        "Lifeguard: `decode_image` (fast path: JPEGs with a short side >= 2 x `fast_decode_min_side` "
        "decode at 1/2-1/8 scale in libjpeg) + `pdq_from_pixels`. Full: `decode_image(fast=False)` + PDQ, "
        "the reference hash for the distance columns (full pixels, EXIF applied). "
        "Single-threaded, file read included"
        + (f", median of {args.repeat} runs per image." if args.repeat > 1 else "."),
        "",
        "| set | images | anchor img/s | lifeguard img/s | **speed-up** | full img/s | anchor ms p50 / p99 | "
        "lifeguard ms p50 / p99 | reduced decodes | share <= 10 bits | max bits |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        share = 100.0 * sum(d <= 10 for d in r.distances) / max(1, len(r.distances))
        out.append(
            f"| {r.name} | {r.n} | {r.anchor.ips:.1f} | {r.fast.ips:.1f} | "
            f"**{r.fast.ips / r.anchor.ips:.2f}x** | {r.full.ips:.1f} | "
            f"{r.anchor.pct(50):.1f} / {r.anchor.pct(99):.1f} | {r.fast.pct(50):.1f} / {r.fast.pct(99):.1f} | "
            f"{r.reduced} | {share:.1f} % | {max(r.distances, default=0)} |"
        )
    all_d = [d for r in results for d in r.distances]
    big_r = next((r for r in results if r.name.startswith(">=")), None)
    if big_r:
        ratio = big_r.fast.ips / big_r.anchor.ips
        out += [
            "",
            f"Goal >= 5x throughput on >= 12 MP JPEGs: **{'met' if ratio >= 5 else 'missed'}** "
            f"({ratio:.1f}x with the default `fast_decode_min_side` 512). The corpus photos are all "
            "smaller than 1024 px on the short side, so the fast path never applies there (~1x is "
            "expected: both sides decode the same pixels and hash them with the same C++ code). "
            f"p99 over {big_r.n} big images is close to their maximum.",
        ]
    out += [
        "",
        f"All images: {sum(d <= 10 for d in all_d)}/{len(all_d)} "
        f"({100.0 * sum(d <= 10 for d in all_d) / max(1, len(all_d)):.2f} %) fast hashes within 10 bits "
        f"of the full-decode hash; max {max(all_d, default=0)} bits; mean "
        f"{statistics.fmean(all_d) if all_d else 0:.2f}. Anchor vs full decode on images without EXIF "
        f"rotation: max {max((r.anchor_vs_full_max for r in results), default=0)} bits (same pixels "
        "-> same bits; the anchor ignores EXIF orientation, so exif-rotn-3/6/8 hash differently there).",
        "",
        "`fast_decode_min_side` sweep on the >= 12 MP set (lifeguard only; distance to the full decode):",
        "",
        "| fast_decode_min_side | decoded size (first image) | img/s | ms p50 / p99 | vs anchor | "
        "share <= 10 bits | max bits | mean bits |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    big = next((r for r in results if r.name.startswith(">=")), None)
    for side, series, dists, shape in sweep:
        ratio = f"{series.ips / big.anchor.ips:.2f}x" if big else "-"
        out.append(
            f"| {side}{' (default)' if side == 512 else ''} | {shape} | {series.ips:.1f} | "
            f"{series.pct(50):.1f} / {series.pct(99):.1f} | {ratio} | "
            f"{100.0 * sum(d <= 10 for d in dists) / max(1, len(dists)):.1f} % | {max(dists)} | "
            f"{statistics.fmean(dists):.2f} |"
        )
    nbytes, secs = digests
    out += [
        "",
        "libjpeg's smallest scale is 1/8 (see the decoded size column: smaller settings cannot go "
        "below it). Smallest setting that kept every hash within 10 bits of the full decode in this "
        f"run: **{min((sd for sd, _, dd, _ in sweep if all(d <= 10 for d in dd)), default='none')}**; "
        "the default stays 512 unless that is smaller with margin.",
        "",
        f"MD5 + SHA-256 of the bytes (`lifeguard.signals.exact.digest_file`, 1 MiB chunks, both in one "
        f"pass, page cache warm): {nbytes / 1e6:.0f} MB in {secs:.2f} s = **{nbytes / 1e6 / secs:.0f} MB/s**.",
        "",
        "vPDQ (`lifeguard.signals.video.hash_video`, vpdq 0.2.5, thread_count auto):",
        "",
        *video,
        "",
    ]
    return "\n".join(out)


def write_docs(section: str) -> None:
    """Replace (or append) only the ``## Hashing`` section; re-read right before writing."""
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        new = "".join(lines[:start]) + section.rstrip("\n") + "\n\n" + "".join(lines[end:])
        new = new.rstrip("\n") + "\n"
    DOCS.write_text(new, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--limit", type=int, default=0, help="photos from the corpus (0 = all 3,524)")
    ap.add_argument("--big", type=int, default=10, help="upscaled Kodak JPEGs (12-24 MP) to add")
    ap.add_argument("--repeat", type=int, default=3, help="runs per big image (median)")
    ap.add_argument(
        "--sides", default="1024,512,256,128", help="fast_decode_min_side values to sweep"
    )
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument(
        "--write-docs", action="store_true", help="update ## Hashing in docs/benchmarks.md"
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    load0 = os.getloadavg()
    settings = Settings()
    corpus = sorted((PHOTOS / "kodak").glob("*.png")) + sorted((PHOTOS / "clothing").glob("*.jpg"))
    if args.limit:
        corpus = corpus[: args.limit]
    big = make_big_jpegs(args.big)
    print(f"corpus {len(corpus)} images, big {len(big)} JPEGs", file=sys.stderr)
    results = [
        bench_set(
            f"photos corpus (Kodak PNG 768x512 + clothing JPEG ~400x533, first {len(corpus)})",
            corpus,
            1,
            settings,
        ),
        bench_set(
            ">= 12 MP JPEGs (4 exif-rotn 4032x3024 + upscaled Kodak 12-24 MP)",
            big,
            args.repeat,
            settings,
        ),
    ]
    print("sweep", file=sys.stderr)
    sweep = sweep_min_side(big, [int(s) for s in args.sides.split(",")], args.repeat)
    digests = bench_digests(big + corpus)
    video = [] if args.no_video else bench_video()
    section = render(
        args, results, sweep, digests, video, (load0, os.getloadavg()), time.perf_counter() - t0
    )
    print(section)
    if args.write_docs:
        write_docs(section)
        print(f"updated {SECTION} in {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
