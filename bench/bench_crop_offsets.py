"""How far off a listed crop position can a cropped copy be and still match by PDQ? And what would a
query-side offset search cost? (Evidence for the crop limits in docs/robustness.md.)

    python bench/bench_crop_offsets.py [--every 35] [--json out.json]

Photos: every ``--every``-th photo of /work/shared/data/photos (kodak/*.png, then clothing/*.jpg,
sorted), single process.

1. **Shift tolerance.** Listed: the top-left 90% x 90% of the photo (``crop90_tl``). Query: a 90% x 90%
   crop shifted right by s (a fraction of the photo width), JPEG quality 90, decoded like an upload.
   Reported per s: median / p90 PDQ distance and the fraction within 31.
2. **Query-side offset search (not in lifeguard; a possible follow-up).** Query: the ``crop10_random``
   copy (10% of width and height removed, split at a random ratio). Listed: ``region80`` (centred 80%).
   The query hashes n x n windows of 8/9 of its size (where region80 lies if exactly 10% was removed)
   on an even grid of offsets, optionally on a copy downscaled (BOX) to ``side`` px on its long side;
   reported: recall (best window within 31), the extra query hashes (n^2) and thread CPU ms per query.
   The search is fitted to a 10% crop (the window size follows from it); a crop of another amount
   needs another window size.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lifeguard.edits import apply_edit
from lifeguard.signals.image import decode_image
from lifeguard.signals.pdq import hamming, pdq_from_pixels
from lifeguard.signals.variants import listing_variants

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
THRESHOLD = 31
SHIFTS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05)
SEARCH = ((None, 5), (None, 7), (None, 9), (192, 5), (192, 7), (192, 9), (128, 7), (128, 9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--every", type=int, default=35, help="take every N-th photo")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    paths = sorted((PHOTOS / "kodak").glob("*.png")) + sorted((PHOTOS / "clothing").glob("*.jpg"))
    paths = paths[:: args.every]
    shift_d: dict[float, list[int]] = {s: [] for s in SHIFTS}
    search_d: dict[tuple[int | None, int], list[int]] = {k: [] for k in SEARCH}
    search_ms: dict[tuple[int | None, int], list[float]] = {k: [] for k in SEARCH}
    for i, p in enumerate(paths):
        px = decode_image(p).pixels
        h, w = px.shape[:2]
        kw, kh = w - round(w * 0.1), h - round(h * 0.1)
        ref = pdq_from_pixels(np.ascontiguousarray(px[:kh, :kw])).hex
        for s in SHIFTS:
            dx = round(w * s)
            buf = io.BytesIO()
            Image.fromarray(px).crop((dx, 0, dx + kw, kh)).save(buf, "JPEG", quality=90)
            q = pdq_from_pixels(decode_image(buf.getvalue()).pixels).hex
            shift_d[s].append(hamming(q, ref))
        r80 = next(v.pdq for v in listing_variants(px, corners=False) if v.name == "region80")
        query = decode_image(apply_edit("crop10_random", Image.fromarray(px), i)).pixels
        for side, n in SEARCH:
            t0 = time.thread_time()
            im = Image.fromarray(query)
            if side is not None:
                f = side / max(im.size)
                im = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.BOX)
            a = np.asarray(im)
            qh, qw = a.shape[:2]
            cw, ch = round(qw * 8 / 9), round(qh * 8 / 9)
            best = 256
            for gx in np.linspace(0, qw - cw, n):
                for gy in np.linspace(0, qh - ch, n):
                    x, y = round(gx), round(gy)
                    win = np.ascontiguousarray(a[y : y + ch, x : x + cw])
                    best = min(best, hamming(pdq_from_pixels(win).hex, r80))
            search_ms[(side, n)].append((time.thread_time() - t0) * 1000)
            search_d[(side, n)].append(best)
    out: dict[str, Any] = {"photos": len(paths), "shift": [], "search": []}
    print(f"photos: {len(paths)} (every {args.every}th)")
    print("| shift (fraction of width) | median distance | p90 | within 31 |")
    print("|---:|---:|---:|---:|")
    for s in SHIFTS:
        d = np.array(shift_d[s])
        row = [s, float(np.median(d)), float(np.percentile(d, 90)), float(np.mean(d <= THRESHOLD))]
        out["shift"].append(row)
        print(f"| {s * 100:.1f}% | {row[1]:.0f} | {row[2]:.0f} | {row[3] * 100:.1f}% |")
    print()
    print("| search (long side, n x n) | crop10_random recall | median best | extra hashes | ms |")
    print("|---|---:|---:|---:|---:|")
    for side, n in SEARCH:
        d = np.array(search_d[(side, n)])
        ms = float(np.mean(search_ms[(side, n)]))
        rec = float(np.mean(d <= THRESHOLD))
        out["search"].append([side, n, rec, float(np.median(d)), ms])
        label = "full size" if side is None else f"{side} px"
        print(
            f"| {label}, {n} x {n} | {rec * 100:.1f}% | {np.median(d):.0f} | {n * n} | {ms:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
