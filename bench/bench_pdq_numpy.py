"""PDQ in numpy (lifeguard.signals.pdq_numpy) vs Meta's C++ code (pdqhash 0.2.8): agreement and speed.

    python bench/bench_pdq_numpy.py [--limit N] [--blas-threads N]

Every image of /work/shared/data/photos (sorted; first ``--limit``, 0 = all) and every image of Meta's
reference set (/work/shared/data/threatexchange/pdq-data) is decoded once with
``decode_image(fast=False)`` (full pixels, EXIF orientation applied). On those same pixels, interleaved
image by image in one process, we time and compare:

* ``pdqhash.compute`` vs ``pdq_numpy``;
* ``pdqhash.compute_dihedral`` vs ``pdq_dihedral_numpy`` (all 8 hashes).

Reported: the distribution of Hamming distances, quality equality, whether the float32 luma is
bit-identical to the bindings' gray (it should be on every pixel), ms per image (p50 / p99 / mean) and the speed-up. The
reference rows of expected-pdq-cpp-reference.csv are also checked against the numpy hashes.

``--blas-threads N`` sets OPENBLAS_NUM_THREADS before numpy is imported (default: left as it is).
pdq_numpy does not use BLAS for its heavy work (only the tiny 16x64 DCT products), so the setting
should not matter; an earlier dense-matrix version was up to 10x slower on a busy machine with
OpenBLAS's default threads.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PHOTOS = SHARED / "photos"
TE = SHARED / "threatexchange"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _ms_row(label: str, ts: list[float]) -> str:
    return (
        f"| {label} | {_pct(ts, 0.5) * 1e3:.2f} | {_pct(ts, 0.99) * 1e3:.2f} | "
        f"{statistics.fmean(ts) * 1e3:.2f} |"
    )


def _hist(counter: Counter[int]) -> str:
    return ", ".join(f"{d} bits: {n}" for d, n in sorted(counter.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="photos to use (0 = all)")
    ap.add_argument("--blas-threads", type=int, default=0, help="OPENBLAS_NUM_THREADS (0 = leave)")
    args = ap.parse_args()
    if args.blas_threads > 0:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)

    import numpy as np
    import pdqhash

    from lifeguard.errors import MediaError
    from lifeguard.signals.image import decode_image
    from lifeguard.signals.pdq import bits_to_hex, hamming
    from lifeguard.signals.pdq_numpy import luma, pdq_dihedral_numpy, pdq_numpy

    photos = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.limit:
        photos = photos[: args.limit]
    refs = sorted(p for p in (TE / "pdq-data").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    expected = {}
    with (TE / "expected-pdq-cpp-reference.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            expected[TE / row["path"]] = (row["pdq_hex"], int(row["quality"]))

    started = datetime.now(UTC)
    load0 = os.getloadavg()
    t_all = time.perf_counter()
    kodak = [p for p in photos if p.parent.name == "kodak"]
    sets: dict[str, list[Path]] = {
        "photos": photos,
        "Kodak 768x512 (a subset of photos)": kodak,
        "reference images": refs,
    }
    summary: list[str] = []
    for name, files in sets.items():
        if not files:
            continue
        d_fast: Counter[int] = Counter()
        d_dih: Counter[int] = Counter()  # max over the 8 variants, per image
        q_fast = q_dih = 0
        luma_same = luma_total = 0
        t_ref: list[float] = []
        t_np: list[float] = []
        t_dref: list[float] = []
        t_dnp: list[float] = []
        csv_checked = csv_max = 0
        skipped: list[str] = []
        notes: list[str] = []  # every image where anything differs
        shapes: Counter[tuple[int, int]] = Counter()
        for path in files:
            try:
                px = decode_image(path, fast=False).pixels
            except MediaError as exc:
                skipped.append(f"{path.name} ({exc})")
                continue
            shapes[px.shape[:2]] += 1
            t0 = time.perf_counter()
            bits, q_ref = pdqhash.compute(px)
            t1 = time.perf_counter()
            h_np, q_np = pdq_numpy(px)
            t2 = time.perf_counter()
            t3 = time.perf_counter()
            dbits, dq_ref = pdqhash.compute_dihedral(px)
            t4 = time.perf_counter()
            dh_np, dq_np = pdq_dihedral_numpy(px)
            t5 = time.perf_counter()
            t_ref.append(t1 - t0)
            t_np.append(t2 - t1)
            t_dref.append(t4 - t3)
            t_dnp.append(t5 - t4)
            h_ref = bits_to_hex(bits)
            d_fast[hamming(h_ref, h_np)] += 1
            dih_d = [hamming(bits_to_hex(a), b) for a, b in zip(dbits, dh_np, strict=True)]
            d_dih[max(dih_d)] += 1
            d_main = hamming(h_ref, h_np)
            if d_main or max(dih_d) or q_np != q_ref or dq_np != dq_ref:
                notes.append(
                    f"{path.relative_to(path.parents[1])}: hash {d_main} bits, dihedral {dih_d}, "
                    f"quality ref {q_ref} / numpy {q_np}"
                )
            q_fast += int(q_ref) == q_np
            q_dih += int(dq_ref) == dq_np
            gray_ref = (px[:, :, 0] * 0.299 + px[:, :, 1] * 0.587 + px[:, :, 2] * 0.114).astype(
                np.float32
            )
            luma_same += int(np.count_nonzero(luma(px) == gray_ref))
            luma_total += gray_ref.size
            if path in expected:
                csv_checked += 1
                csv_max = max(csv_max, hamming(expected[path][0], h_np))
        n = len(t_ref)

        top = ", ".join(f"{w}x{h}: {c}" for (h, w), c in shapes.most_common(3))
        lines = [
            f"### {name}: {n} images (most common sizes {top})",
            "",
            f"- pdq_numpy vs pdqhash.compute, bit distance: {_hist(d_fast)}; "
            f"quality equal {q_fast}/{n}",
            f"- pdq_dihedral_numpy vs pdqhash.compute_dihedral (max over the 8): {_hist(d_dih)}; "
            f"quality equal {q_dih}/{n}",
            f"- luma bit-identical to the bindings' gray: {luma_same}/{luma_total} pixels",
        ]
        if csv_checked:
            lines.append(
                f"- expected-pdq-cpp-reference.csv: {csv_checked} rows, max distance {csv_max} bits"
            )
        if notes:
            lines.append("- images with any difference: " + "; ".join(notes))
        if skipped:
            lines.append(f"- not decodable (skipped): {'; '.join(skipped)}")
        lines += [
            "",
            "| ms per image | p50 | p99 | mean |",
            "|---|---:|---:|---:|",
            _ms_row("pdqhash.compute", t_ref),
            _ms_row("pdq_numpy", t_np),
            _ms_row("pdqhash.compute_dihedral", t_dref),
            _ms_row("pdq_dihedral_numpy", t_dnp),
            "",
            f"Speed-up (mean): hash {statistics.fmean(t_ref) / statistics.fmean(t_np):.1f}x, "
            f"dihedral {statistics.fmean(t_dref) / statistics.fmean(t_dnp):.1f}x.",
            "",
        ]
        summary += lines
        print("\n".join(lines), flush=True)

    load1 = os.getloadavg()
    print(
        f"Command: python bench/bench_pdq_numpy.py {' '.join(sys.argv[1:])}".rstrip()
        + f" (total {time.perf_counter() - t_all:.0f} s)\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs visible, Python "
        f"{platform.python_version()}, numpy {np.__version__}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}\n"
        f"Date: {started:%Y-%m-%d %H:%M} UTC. Load average (1/5/15 min) at start "
        f"{'/'.join(f'{x:.2f}' for x in load0)}, at end {'/'.join(f'{x:.2f}' for x in load1)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
