"""Robustness of plain PDQ vs lifeguard's variants (dihedral + trimming + region) on edited copies.

    python bench/bench_robustness.py [--limit N] [--workers 2] [--json out.json]

Photos: /work/shared/data/photos (kodak/*.png first, then clothing/*.jpg, sorted; ``--limit`` takes the
first N). Each photo is "listed" (plain PDQ + :func:`listing_variants`); each of the edits in
``lifeguard.edits`` is applied (seeded by the photo's index) and the edited copy is decoded like an upload
and looked up: plain = its plain hash vs listed plain hashes; lifeguard = :func:`query_variants` vs listed
plain + listing variants. Distance <= 31, hashes with quality < 50 skipped on both sides.

False matches: every query (each original photo's query variants and every edited copy's query variants)
against every listed hash of every *other* photo, numpy brute force (XOR + bitwise_count on uint64
views, chunked). Pairs of distinct photos whose original plain hashes are already within 31 are known
near-duplicates and reported separately.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lifeguard.edits import EDITS, apply_edit
from lifeguard.signals.image import decode_image
from lifeguard.signals.pdq import hexes_to_array, pdq_from_pixels
from lifeguard.signals.variants import listing_variants, query_variants

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
THRESHOLD = 31
MIN_QUALITY = 50

EDIT_NAMES = ["none", *EDITS]  # "none" = the original photo itself


@dataclass
class PhotoResult:
    index: int
    name: str
    listed: list[tuple[str, str, int]]  # (variant, hex, quality); first is "plain"
    queries: dict[str, list[tuple[str, str, int]]]  # edit -> query variants
    ms_listing: float  # CPU ms of listing_variants only (plain hash excluded)
    ms_query: list[float]  # CPU ms of query_variants, one per query image
    error: str | None = None


def photo_paths() -> list[Path]:
    return sorted((PHOTOS / "kodak").glob("*.png")) + sorted((PHOTOS / "clothing").glob("*.jpg"))


def work(item: tuple[int, str]) -> PhotoResult:
    index, path = item
    name = str(Path(path).relative_to(PHOTOS))
    try:
        pixels = decode_image(Path(path)).pixels
        plain = pdq_from_pixels(pixels)
        t0 = time.thread_time()
        lv = listing_variants(pixels, plain.hex)
        ms_listing = (time.thread_time() - t0) * 1000
        listed = [("plain", plain.hex, plain.quality)] + [(v.name, v.pdq, v.quality) for v in lv]
        queries: dict[str, list[tuple[str, str, int]]] = {}
        ms_query: list[float] = []
        im = Image.fromarray(pixels)
        for edit in EDIT_NAMES:
            qpix = pixels if edit == "none" else decode_image(apply_edit(edit, im, index)).pixels
            t0 = time.thread_time()
            qv = query_variants(qpix)
            ms_query.append((time.thread_time() - t0) * 1000)
            queries[edit] = [(v.name, v.pdq, v.quality) for v in qv]
        return PhotoResult(index, name, listed, queries, ms_listing, ms_query)
    except Exception as e:  # report, never drop silently
        return PhotoResult(index, name, [], {}, 0.0, [], error=f"{type(e).__name__}: {e}")


def to_u64(hexes: list[str]) -> npt.NDArray[np.uint64]:
    return hexes_to_array(hexes).view(np.uint64).reshape(-1, 4)


def distances(q: npt.NDArray[np.uint64], lst: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint16]:
    d = np.zeros((q.shape[0], lst.shape[0]), dtype=np.uint16)
    for k in range(4):
        d += np.bitwise_count(q[:, k, None] ^ lst[None, :, k]).astype(np.uint16)
    return d


_BF: dict[str, Any] = {}


def _bf_chunk(bounds: tuple[int, int]) -> list[tuple[int, int, int]]:
    lo, hi = bounds
    d = distances(_BF["q"][lo:hi], _BF["l"])
    qi, li = np.nonzero(d <= THRESHOLD)
    return [(int(a) + lo, int(b), int(d[a, b])) for a, b in zip(qi, li, strict=True)]


def brute_force(
    q: npt.NDArray[np.uint64], lst: npt.NDArray[np.uint64], workers: int, chunk: int = 512
) -> list[tuple[int, int, int]]:
    """All (query row, listed row, distance) with distance <= THRESHOLD."""
    _BF["q"], _BF["l"] = q, lst
    bounds = [(i, min(i + chunk, q.shape[0])) for i in range(0, q.shape[0], chunk)]
    out: list[tuple[int, int, int]] = []
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            for part in pool.imap_unordered(_bf_chunk, bounds, chunksize=4):
                out.extend(part)
    else:
        for b in bounds:
            out.extend(_bf_chunk(b))
    return out


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write all figures as JSON here")
    args = ap.parse_args()

    paths = photo_paths()
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        sys.exit(f"no photos under {PHOTOS}")
    started = time.perf_counter()
    load0 = os.getloadavg()
    items = [(i, str(p)) for i, p in enumerate(paths)]
    results: list[PhotoResult] = []
    with mp.get_context("fork").Pool(args.workers) as pool:
        for n, r in enumerate(pool.imap(work, items, chunksize=4), 1):
            results.append(r)
            if n % 250 == 0:
                print(
                    f"  {n}/{len(items)} photos, {time.perf_counter() - started:.0f}s", flush=True
                )
    t_hash = time.perf_counter() - started
    errors = [r for r in results if r.error]
    ok = [r for r in results if not r.error]

    # ---- flatten into arrays
    l_hex: list[str] = []
    l_photo: list[int] = []
    l_var: list[str] = []
    l_q: list[int] = []
    q_hex: list[str] = []
    q_photo: list[int] = []
    q_edit: list[int] = []
    q_var: list[str] = []
    q_q: list[int] = []
    for pi, r in enumerate(ok):
        for var, h, qual in r.listed:
            l_hex.append(h)
            l_photo.append(pi)
            l_var.append(var)
            l_q.append(qual)
        for ei, edit in enumerate(EDIT_NAMES):
            for var, h, qual in r.queries[edit]:
                q_hex.append(h)
                q_photo.append(pi)
                q_edit.append(ei)
                q_var.append(var)
                q_q.append(qual)
    lp, lq = np.array(l_photo), np.array(l_q)
    qp, qe, qq = np.array(q_photo), np.array(q_edit), np.array(q_q)
    l_ok = lq >= MIN_QUALITY
    q_ok = qq >= MIN_QUALITY
    l_is_plain = np.array([v == "plain" for v in l_var])
    q_is_plain = np.array([v == "original" for v in q_var])
    n_photos = len(ok)
    plain_quality = np.full(n_photos, -1)
    plain_quality[lp[l_is_plain]] = lq[l_is_plain]
    listable = plain_quality >= MIN_QUALITY
    l_u64, q_u64 = to_u64(l_hex), to_u64(q_hex)

    # ---- all matches <= 31 (quality-filtered), brute force
    t0 = time.perf_counter()
    li_ok, qi_ok = np.nonzero(l_ok)[0], np.nonzero(q_ok)[0]
    raw = brute_force(q_u64[qi_ok], l_u64[li_ok], args.workers)
    t_bf = time.perf_counter() - t0
    matches = [(int(qi_ok[a]), int(li_ok[b]), d) for a, b, d in raw]

    # known near-duplicates: distinct photos whose ORIGINAL plain hashes are within 31
    near_dups: set[tuple[int, int]] = set()
    near_dup_dist: dict[tuple[int, int], int] = {}
    for qi, li, d in matches:
        if qe[qi] == 0 and q_is_plain[qi] and l_is_plain[li] and qp[qi] != lp[li]:
            pair = (min(qp[qi], lp[li]), max(qp[qi], lp[li]))
            near_dups.add(pair)
            near_dup_dist[pair] = d

    # ---- recall per edit
    best: dict[tuple[int, int], tuple[int, str, str]] = {}  # (photo, edit) -> (dist, qvar, lvar)
    plain_hit: set[tuple[int, int]] = set()
    false_plain: dict[str, set[tuple[int, int, int]]] = defaultdict(set)
    false_lg: dict[str, set[tuple[int, int, int]]] = defaultdict(set)
    false_lg_var: Counter[tuple[str, str]] = Counter()
    for qi, li, d in matches:
        p, e, lph = int(qp[qi]), int(qe[qi]), int(lp[li])
        if p == lph:
            key = (p, e)
            if key not in best or d < best[key][0]:
                best[key] = (d, q_var[qi], l_var[li])
            if q_is_plain[qi] and l_is_plain[li]:
                plain_hit.add(key)
        else:
            pair = (min(p, lph), max(p, lph))
            kind = "near_dup" if pair in near_dups else "other"
            false_lg[kind].add((p, e, lph))
            if kind == "other":
                false_lg_var[(q_var[qi], l_var[li])] += 1
            if q_is_plain[qi] and l_is_plain[li]:
                false_plain[kind].add((p, e, lph))

    rows: list[dict[str, Any]] = []
    n_listable = int(listable.sum())
    for ei, edit in enumerate(EDIT_NAMES):
        n_plain = sum(1 for p in range(n_photos) if listable[p] and (p, ei) in plain_hit)
        n_lg = sum(1 for p in range(n_photos) if listable[p] and (p, ei) in best)
        via = Counter(
            f"{best[(p, ei)][1]}->{best[(p, ei)][2]}"
            for p in range(n_photos)
            if listable[p] and (p, ei) in best
        )
        rows.append(
            {
                "edit": edit,
                "n": n_listable,
                "plain": n_plain,
                "lifeguard": n_lg,
                "via": via.most_common(3),
            }
        )

    # ---- cost
    ms_list = np.array([r.ms_listing for r in ok])
    ms_query = np.array([m for r in ok for m in r.ms_query])
    n_listed_var = int((~l_is_plain).sum())
    wall = time.perf_counter() - started

    print()
    print(
        f"photos: {n_photos} ({len(errors)} errors), listable (plain quality >= {MIN_QUALITY}): "
        f"{n_listable}; listed hashes: {len(l_hex)} ({n_listed_var} variants, "
        f"{n_listed_var / max(n_photos, 1):.2f}/photo); query hashes: {len(q_hex)} "
        f"({len(q_hex) / max(n_photos * len(EDIT_NAMES), 1):.2f}/query image)"
    )
    print(
        f"low quality (< {MIN_QUALITY}): listed plain {int((~listable).sum())}, listed variants "
        f"{int((~l_ok & ~l_is_plain).sum())}, query hashes {int((~q_ok).sum())}"
    )
    print()
    print(
        "| edit | plain PDQ recall | lifeguard recall | ratio | matched most via (query->listed) |"
    )
    print("|---|---:|---:|---:|---|")
    for row in rows:
        via = ", ".join(f"{k} ({v})" for k, v in row["via"])
        ratio = f"{row['lifeguard'] / row['plain']:.2f}x" if row["plain"] else "-"
        print(
            f"| {row['edit']} | {pct(row['plain'], row['n'])} | {pct(row['lifeguard'], row['n'])} "
            f"| {ratio} | {via} |"
        )
    print()
    print(
        "false matches (distinct query image, listed photo) at <= 31, excluding known near-dups: "
        f"plain {len(false_plain['other'])}, lifeguard {len(false_lg['other'])}"
    )
    print(
        "matches between known near-duplicate photos: "
        f"plain {len(false_plain['near_dup'])}, lifeguard {len(false_lg['near_dup'])}"
    )
    for qv, lv in sorted(false_lg_var, key=lambda k: -false_lg_var[k])[:10]:
        print(f"  false via {qv}->{lv}: {false_lg_var[(qv, lv)]} hash pairs")
    for p, e, lph in sorted(false_lg["other"])[:30]:
        print(f"  FALSE: {ok[p].name} [{EDIT_NAMES[e]}] ~ {ok[lph].name}")
    print(f"known near-duplicate pairs ({len(near_dups)}):")
    for a, b in sorted(near_dups):
        print(f"  {ok[a].name} ~ {ok[b].name} (plain distance {near_dup_dist[(a, b)]})")
    for r in errors:
        print(f"  ERROR {r.name}: {r.error}")
    print()
    print(
        f"CPU cost per image (ms of thread CPU time, in the workers): query_variants "
        f"mean {ms_query.mean():.1f} / p50 {np.median(ms_query):.1f} / p95 "
        f"{np.percentile(ms_query, 95):.1f}; listing_variants mean {ms_list.mean():.1f} / p50 "
        f"{np.median(ms_list):.1f} / p95 {np.percentile(ms_list, 95):.1f}"
    )
    print(
        f"time: hashing+edits {t_hash:.0f}s, brute force {t_bf:.0f}s "
        f"({q_u64[qi_ok].shape[0]} x {l_u64[li_ok].shape[0]}), total {wall:.0f}s; "
        f"load avg at start {load0[0]:.2f}, at end {os.getloadavg()[0]:.2f}; "
        f"{platform.node()} {os.cpu_count()} cpus; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "photos": n_photos,
                    "listable": n_listable,
                    "false_plain": len(false_plain["other"]),
                    "false_lifeguard": len(false_lg["other"]),
                    "false_list": [
                        [ok[p].name, EDIT_NAMES[e], ok[lph].name]
                        for p, e, lph in sorted(false_lg["other"])
                    ],
                    "near_dup_matches_plain": len(false_plain["near_dup"]),
                    "near_dup_matches_lifeguard": len(false_lg["near_dup"]),
                    "near_dups": [
                        [ok[a].name, ok[b].name, near_dup_dist[(a, b)]]
                        for a, b in sorted(near_dups)
                    ],
                    "errors": [[r.name, r.error] for r in errors],
                    "ms_query_mean": float(ms_query.mean()),
                    "ms_listing_mean": float(ms_list.mean()),
                    "listed_hashes": len(l_hex),
                    "query_hashes": len(q_hex),
                    "seconds": wall,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
