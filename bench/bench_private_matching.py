"""Private matching (lifeguard.e2ee.private_matching): cost, sizes, recall by PDQ distance, false opens.

    python bench/bench_private_matching.py [--listed 120] [--distinct 1000] [--table-100k] [--json out]

Photos: /work/shared/data/photos (kodak/*.png, then clothing/*.jpg, sorted). The first ``--listed``
photos are the list (their plain PDQ hashes); each gets every edit in ``lifeguard.edits`` plus JPEG
re-encodes at quality 50 and 70, hashed like uploads; the copy's PDQ distance to its original gives its
bucket. The next ``--distinct`` photos are other photos (never listed).

For every configuration (views x chunks, chunk_threshold m) a table is built over the listed hashes and every copy and
every distinct photo goes through the real protocol (make_voucher -> MatchingServer.receive) with
threshold 1, so each opened voucher is read at once: "outer opened" = a chunk matched and the outer
layer opened; "counted" = inner layer read AND full PDQ distance <= 31 (a match). Distinct photos must
never be counted. Timings: client = make_voucher from a PDQ hash (hashing excluded; PDQ hashing per
image is reported separately), server = receive() per voucher, median and p95.
``--table-100k`` also builds a real table of 100,000 random listed hashes (about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from lifeguard.e2ee.private_matching import (
    AccountState,
    MatchingServer,
    Params,
    ServerKey,
    build_table,
    make_voucher,
)
from lifeguard.edits import EDITS, apply_edit
from lifeguard.signals.hasher import hash_bytes, hash_file

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
CONFIGS = [(1, 8, 1), (2, 8, 1), (2, 8, 2)]  # (views, chunks, chunk_threshold)


def photo_paths() -> list[Path]:
    return sorted(PHOTOS.glob("kodak/*.png")) + sorted(PHOTOS.glob("clothing/*.jpg"))


def jpeg(im: Image.Image, q: int) -> bytes:
    import io

    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=q)
    return buf.getvalue()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def hamming(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listed", type=int, default=120)
    ap.add_argument("--distinct", type=int, default=1000)
    ap.add_argument("--table-100k", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    paths = photo_paths()
    listed_paths, distinct_paths = (
        paths[: a.listed],
        paths[a.listed : a.listed + a.distinct],
    )
    t0 = time.perf_counter()
    hash_ms: list[float] = []
    listed: list[bytes] = []
    copies: list[tuple[int, str, bytes, int]] = []  # (listed index, edit, pdq, distance)
    for i, p in enumerate(listed_paths):
        orig = bytes.fromhex(hash_file(p).pdq or "")
        listed.append(orig)
        im = Image.open(p)
        im.load()
        variants = {name: apply_edit(name, im, i) for name in EDITS}
        variants["jpeg50"] = jpeg(im, 50)
        variants["jpeg70"] = jpeg(im, 70)
        for name, data in variants.items():
            t = time.perf_counter()
            ext = "png" if data.startswith(b"\x89PNG") else "jpg"
            mh = hash_bytes(data, name=f"copy.{ext}")
            hash_ms.append((time.perf_counter() - t) * 1000)
            if mh.pdq:
                pdq = bytes.fromhex(mh.pdq)
                copies.append((i, name, pdq, hamming(pdq, orig)))
    distinct = [bytes.fromhex(hash_file(p).pdq or "") for p in distinct_paths]
    print(
        f"hashed {len(listed)} listed, {len(copies)} copies, {len(distinct)} distinct "
        f"in {time.perf_counter() - t0:.0f}s"
    )

    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores (shared, busy)",
        "listed": len(listed),
        "copies": len(copies),
        "distinct": len(distinct),
        "pdq_hash_ms_median": statistics.median(hash_ms),
        "configs": {},
    }
    for views, chunks, m in CONFIGS:
        params = Params(
            views=views, chunks=chunks, chunk_threshold=m, threshold=1, synthetic_rate=0.0
        )
        key = ServerKey.generate()
        t = time.perf_counter()
        table = build_table(listed, params, key)
        build_s = time.perf_counter() - t
        acct = AccountState.for_table(table)
        client_ms: list[float] = []
        server_ms: list[float] = []
        size = 0
        by_dist: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # total, outer, counted
        opened_hist: dict[int, int] = defaultdict(int)  # chunks opened, for counted copies
        srv = MatchingServer(key, table, listed)
        for n, (_, _, pdq, dist) in enumerate(copies):
            t = time.perf_counter()
            v = make_voucher(pdq, table, acct)
            client_ms.append((time.perf_counter() - t) * 1000)
            size = len(v)
            acct_id = f"copy{n}"
            t = time.perf_counter()
            view = srv.receive(acct_id, v)
            server_ms.append((time.perf_counter() - t) * 1000)
            rep = srv.report(acct_id)
            row = by_dist[dist]
            row[0] += 1
            row[1] += int(view.outer_open)
            row[2] += len(rep.matches)
            if rep.matches:
                opened_hist[len(view.opened_chunks)] += 1
        d_outer = d_readable = d_counted = 0
        for n, pdq in enumerate(distinct):
            v = make_voucher(pdq, table, acct)
            t = time.perf_counter()
            view = srv.receive(f"d{n}", v)
            server_ms.append((time.perf_counter() - t) * 1000)
            rep = srv.report(f"d{n}")
            d_outer += int(view.outer_open)
            d_readable += rep.readable_not_counted + len(rep.matches)
            d_counted += len(rep.matches)
        within10 = [r for d, r in by_dist.items() if d <= 10]
        tot10 = sum(r[0] for r in within10)
        cnt10 = sum(r[2] for r in within10)
        name = f"{views}x{chunks}/m{m}"
        results["configs"][name] = {
            "voucher_bytes": size,
            "table_slots": len(table.slots),
            "table_bytes": table.size_bytes,
            "build_s": build_s,
            "client_ms_median": statistics.median(client_ms),
            "client_ms_p95": pct(client_ms, 0.95),
            "server_ms_median": statistics.median(server_ms),
            "server_ms_p95": pct(server_ms, 0.95),
            "recall_le10": cnt10 / tot10 if tot10 else None,
            "copies_le10": tot10,
            "recall_by_distance": {
                d: {"copies": r[0], "outer_opened": r[1], "counted": r[2]}
                for d, r in sorted(by_dist.items())
                if d <= 40
            },
            "opened_chunks_of_counted_copies": dict(sorted(opened_hist.items())),
            "distinct_outer_opened": d_outer,
            "distinct_readable": d_readable,
            "distinct_counted": d_counted,
            "bytes_per_100k_listed_est": int(100_000 * params.n_chunks / params.load_factor * 32),
        }
        c = results["configs"][name]
        print(
            f"{name}: voucher {size} B, client {c['client_ms_median']:.1f} ms "
            f"(p95 {c['client_ms_p95']:.1f}), server {c['server_ms_median']:.2f} ms "
            f"(p95 {c['server_ms_p95']:.2f}), recall d<=10 {c['recall_le10']:.3f} of {tot10}, "
            f"distinct outer-opened {d_outer} readable {d_readable} counted {d_counted}"
        )
        print("   chunks opened by counted copies:", dict(sorted(opened_hist.items())))
        for lo in range(0, 32, 4):
            rows = [r for d, r in by_dist.items() if lo <= d < lo + 4]
            tot = sum(r[0] for r in rows)
            if tot:
                print(f"   d {lo:2d}-{lo + 3:2d}: {sum(r[2] for r in rows)}/{tot}")

    # Threshold: 10 real matches + 3 synthetic in one account, time of the voucher that crosses it.
    params = Params(threshold=10, synthetic_rate=0.0)
    key = ServerKey.generate()
    table = build_table(listed, params, key)
    acct = AccountState.for_table(table)
    srv = MatchingServer(key, table, listed)
    for k in range(3):
        srv.receive("acct", make_voucher(distinct[k], table, acct, synthetic=True))
    times = []
    for k in range(10):
        v = make_voucher(listed[k], table, acct)
        t = time.perf_counter()
        srv.receive("acct", v)
        times.append((time.perf_counter() - t) * 1000)
    rep = srv.report("acct")
    results["threshold_10_with_3_synthetic"] = {
        "reached": rep.threshold_reached,
        "after_real": rep.opened - 3 if rep.threshold_reached else None,
        "matches": len(rep.matches),
        "synthetic_identified": rep.synthetic_identified,
        "crossing_ms": max(times),
    }
    print("threshold:", results["threshold_10_with_3_synthetic"])

    if a.table_100k:
        for views, chunks, _ in CONFIGS[:1]:
            params = Params(views=views, chunks=chunks)
            t = time.perf_counter()
            big = build_table(
                [os.urandom(32) for _ in range(100_000)], params, ServerKey.generate()
            )
            bs = time.perf_counter() - t
            t = time.perf_counter()
            root = big.root
            rs = time.perf_counter() - t
            results[f"table_100k_{views}x{chunks}"] = {
                "bytes": big.size_bytes,
                "slots": len(big.slots),
                "build_s": bs,
                "root_s": rs,
                "root": root,
            }
            print(
                f"100k table {views}x{chunks}: {big.size_bytes / 1e6:.1f} MB, build {bs:.0f}s, "
                f"root {rs:.2f}s"
            )
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
