"""Benchmark lifeguard's PdqIndex against python-threatexchange's PDQIndex (the index HMA uses).

    python bench/bench_index.py [--sizes 1000000,10000000] [--queries 1000] [--skip-theirs-above N]

Corpus: PDQ hashes of the 3.5k photos in shared/data/photos (hashed once with lifeguard.signals,
cached in bench/out/) plus seeded random hashes up to each size. Queries: half are PDQ hashes of
*edited* copies of corpus photos (lifeguard/edits.py: jpeg30, resize40, bright30, crop10, caption,
blur, text -> real near matches), half random (no match). Threshold 31.

Each (index, size) runs in its own subprocess so RSS is clean: build time, single-query lookups/s
with p50/p99 latency, batched lookups/s, save + load time, RSS after build (input freed) and peak,
recall vs a brute-force scan (computed in another subprocess). Ours also reports compaction time
and peak memory after 1,000 adds + 1,000 removes. Results: JSON in bench/out/, table on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

THRESHOLD = 31
EDIT_NAMES = ("jpeg30", "resize40", "bright30", "crop10", "caption", "blur", "text")
U8 = npt.NDArray[np.uint8]


# --------------------------------------------------------------------------- corpus


def photo_hashes() -> tuple[U8, list[Path]]:
    cache = OUT / "index_photo_pdq.npy"
    names = OUT / "index_photo_pdq.txt"
    files = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if cache.exists() and names.exists():
        listed = names.read_text().splitlines()
        if listed == [str(p.relative_to(PHOTOS)) for p in files]:
            return np.load(cache, allow_pickle=False), files
    from lifeguard.signals.image import decode_image
    from lifeguard.signals.pdq import pdq_from_pixels

    out = np.empty((len(files), 32), dtype=np.uint8)
    t0 = time.perf_counter()
    for i, p in enumerate(files):
        out[i] = np.frombuffer(
            bytes.fromhex(pdq_from_pixels(decode_image(p).pixels).hex), dtype=np.uint8
        )
    print(f"hashed {len(files)} photos in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    names.write_text("\n".join(str(p.relative_to(PHOTOS)) for p in files) + "\n")
    return out, files


def edited_queries(n: int, files: list[Path]) -> U8:
    cache = OUT / f"index_edited_queries_{n}.npy"
    if cache.exists():
        return np.load(cache, allow_pickle=False)
    from PIL import Image

    from lifeguard.edits import EDITS
    from lifeguard.signals.image import decode_image
    from lifeguard.signals.pdq import pdq_from_pixels

    rng = random.Random(1234)
    picks = rng.sample(range(len(files)), n)
    out = np.empty((n, 32), dtype=np.uint8)
    for k, i in enumerate(picks):
        with Image.open(files[i]) as im:
            rgb = im.convert("RGB")
        data = EDITS[EDIT_NAMES[k % len(EDIT_NAMES)]](rgb, random.Random(k))
        h = pdq_from_pixels(decode_image(data).pixels).hex
        out[k] = np.frombuffer(bytes.fromhex(h), dtype=np.uint8)
    np.save(cache, out)
    return out


def corpus(size: int) -> U8:
    photos, _ = photo_hashes()
    rng = np.random.default_rng(size)
    extra = rng.integers(0, 256, (max(0, size - len(photos)), 32), dtype=np.uint8)
    return np.concatenate([photos[:size], extra])


def queries(nq: int) -> U8:
    _, files = photo_hashes()
    edited = edited_queries(nq // 2, files)
    rnd = np.random.default_rng(99).integers(0, 256, (nq - nq // 2, 32), dtype=np.uint8)
    return np.concatenate([edited, rnd])


# --------------------------------------------------------------------------- measurement helpers


class MemWatch:
    """Samples this process's RSS every 10 ms; ``peak()`` since the last ``reset()``."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self._peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def reset(self) -> None:
        self._peak = self.rss()

    def peak(self) -> int:
        self._peak = max(self._peak, self.rss())
        return self._peak


def lat_stats(lat: list[float]) -> dict[str, float]:
    a = np.array(lat)
    return {
        "qps": len(a) / float(a.sum()),
        "p50_ms": float(np.percentile(a, 50) * 1e3),
        "p99_ms": float(np.percentile(a, 99) * 1e3),
    }


def recall(results: list[set[tuple[int, int]]], truth_path: Path) -> dict[str, Any]:
    t = np.load(truth_path, allow_pickle=False)
    truth: list[set[tuple[int, int]]] = [set() for _ in results]
    for q, i, d in t:
        truth[int(q)].add((int(i), int(d)))
    n_true = sum(len(s) for s in truth)
    found = sum(len(a & b) for a, b in zip(results, truth, strict=True))
    wrong = sum(len(a - b) for a, b in zip(results, truth, strict=True))
    exact = sum(a == b for a, b in zip(results, truth, strict=True))
    return {
        "true_matches": n_true,
        "recall": found / n_true if n_true else 1.0,
        "false_matches": wrong,
        "queries_exact": exact,
    }


# --------------------------------------------------------------------------- workers


def worker_truth(size: int, nq: int) -> dict[str, Any]:
    from lifeguard.index.pdq import _cols, _scan, _words

    h = corpus(size)
    q = queries(nq)
    t0 = time.perf_counter()
    qi, rows, d = _scan(_words(q), _cols(h), THRESHOLD, 1 << 22)
    np.save(OUT / f"index_truth_{size}_{nq}.npy", np.stack([qi, rows, d], axis=1))
    return {"brute_force_s": time.perf_counter() - t0, "true_matches": int(qi.size)}


def worker_ours(size: int, nq: int) -> dict[str, Any]:
    from lifeguard.index import PdqIndex

    mw = MemWatch()
    r: dict[str, Any] = {"index": "lifeguard PdqIndex", "size": size}
    h = corpus(size)
    q = queries(nq)
    gc.collect()
    r["rss_before_build_mb"] = mw.rss() / 2**20
    mw.reset()
    t0 = time.perf_counter()
    idx = PdqIndex()
    idx.add(np.arange(size, dtype=np.int64), h)
    r["build_s"] = time.perf_counter() - t0
    r["build_peak_rss_mb"] = mw.peak() / 2**20
    del h
    gc.collect()
    r["rss_after_build_mb"] = mw.rss() / 2**20
    mw.reset()
    lat = []
    results: list[set[tuple[int, int]]] = []
    for row in q:
        t1 = time.perf_counter()
        res = idx.query(row, THRESHOLD)
        lat.append(time.perf_counter() - t1)
        results.append(set(res))
    r["single"] = lat_stats(lat)
    t1 = time.perf_counter()
    batch = idx.query_batch(q, THRESHOLD)
    r["batch_qps"] = nq / (time.perf_counter() - t1)
    assert [set(b) for b in batch] == results
    r["query_peak_rss_mb"] = mw.peak() / 2**20
    r.update(recall(results, OUT / f"index_truth_{size}_{nq}.npy"))
    path = OUT / f"index_ours_{size}.lgx"
    t1 = time.perf_counter()
    idx.save(path)
    r["save_s"] = time.perf_counter() - t1
    r["file_mb"] = path.stat().st_size / 2**20
    # compaction after 1,000 adds (500 new ids, 500 replacements) and 1,000 removes
    rng = np.random.default_rng(5)
    idx.add(
        np.concatenate([np.arange(size, size + 500), rng.choice(size, 500, replace=False)]),
        rng.integers(0, 256, (1000, 32), dtype=np.uint8),
    )
    idx.remove(rng.choice(size, 1000, replace=False))
    t1 = time.perf_counter()
    lat_d = [0.0]
    for row in q[:100]:
        t2 = time.perf_counter()
        idx.query(row, THRESHOLD)
        lat_d.append(time.perf_counter() - t2)
    r["single_with_delta_p50_ms"] = float(np.percentile(lat_d[1:], 50) * 1e3)
    mw.reset()
    base = mw.rss()
    t1 = time.perf_counter()
    idx.compact()
    r["compact_s"] = time.perf_counter() - t1
    r["compact_extra_peak_mb"] = (mw.peak() - base) / 2**20
    del idx
    gc.collect()
    for mmap in (False, True):
        t1 = time.perf_counter()
        loaded = PdqIndex.load(path, mmap=mmap)
        r[f"load{'_mmap' if mmap else ''}_s"] = time.perf_counter() - t1
        assert len(loaded) == size
        del loaded
        gc.collect()
    t1 = time.perf_counter()
    PdqIndex.load(path, verify=False)
    r["load_noverify_s"] = time.perf_counter() - t1
    path.unlink()
    return r


def worker_theirs(size: int, nq: int) -> dict[str, Any]:
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex

    mw = MemWatch()
    r: dict[str, Any] = {"index": "threatexchange PDQIndex (faiss MIH)", "size": size}
    h = corpus(size)
    raw = h.tobytes()
    del h
    hexes = [raw[i * 32 : (i + 1) * 32].hex() for i in range(size)]
    del raw
    q = queries(nq)
    qhex = [row.tobytes().hex() for row in q]
    gc.collect()
    r["rss_before_build_mb"] = mw.rss() / 2**20
    mw.reset()
    t0 = time.perf_counter()
    idx = PDQIndex.build([(hx, i) for i, hx in enumerate(hexes)])
    r["build_s"] = time.perf_counter() - t0
    r["build_peak_rss_mb"] = mw.peak() / 2**20
    del hexes  # the index keeps its own references to the hex strings
    gc.collect()
    r["rss_after_build_mb"] = mw.rss() / 2**20
    mw.reset()
    lat = []
    results: list[set[tuple[int, int]]] = []
    for hx in qhex:
        t1 = time.perf_counter()
        res = idx.query(hx)
        lat.append(time.perf_counter() - t1)
        results.append({(int(m.metadata), int(m.similarity_info.distance)) for m in res})
    r["single"] = lat_stats(lat)
    t1 = time.perf_counter()
    idx.index.search_with_distance_in_result(qhex, THRESHOLD)  # its underlying batch search
    r["batch_qps"] = nq / (time.perf_counter() - t1)
    r["query_peak_rss_mb"] = mw.peak() / 2**20
    r.update(recall(results, OUT / f"index_truth_{size}_{nq}.npy"))
    path = OUT / f"index_theirs_{size}.pickle"
    t1 = time.perf_counter()
    with open(path, "wb") as f:
        idx.serialize(f)  # pickle: its only persistence
    r["save_s"] = time.perf_counter() - t1
    r["file_mb"] = path.stat().st_size / 2**20
    del idx
    gc.collect()
    t1 = time.perf_counter()
    with open(path, "rb") as f:  # our own file written a moment ago
        PDQIndex.deserialize(f)
    r["load_s"] = time.perf_counter() - t1
    path.unlink()
    return r


WORKERS = {"truth": worker_truth, "ours": worker_ours, "theirs": worker_theirs}


def run_worker(name: str, size: int, nq: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", name, "--sizes", str(size), "--queries", str(nq)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}: {p.stderr[-2000:]}", "size": size, "index": name}
    res: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--worker", choices=sorted(WORKERS))
    ap.add_argument(
        "--skip-theirs-above",
        type=int,
        default=0,
        help="do not run threatexchange above this size (0: always run it)",
    )
    ap.add_argument("--min-free-gb", type=float, default=9.0, help="for threatexchange at >= 5M")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.worker:
        print(json.dumps(WORKERS[args.worker](sizes[0], args.queries)))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    photo_hashes()
    queries(args.queries)  # build the caches once, before the timed workers
    all_res: list[dict[str, Any]] = []
    for size in sizes:
        truth = run_worker("truth", size, args.queries)
        print(f"[{size}] truth: {truth}", file=sys.stderr, flush=True)
        for name in ("ours", "theirs"):
            if name == "theirs":
                if args.skip_theirs_above and size > args.skip_theirs_above:
                    continue
                free = psutil.virtual_memory().available / 2**30
                if size >= 5_000_000 and free < args.min_free_gb:
                    all_res.append(
                        {"index": name, "size": size, "error": f"skipped: {free:.1f} GiB free"}
                    )
                    continue
            res = run_worker(name, size, args.queries)
            res["truth"] = truth
            all_res.append(res)
            print(f"[{size}] {name}: {json.dumps(res)}", file=sys.stderr, flush=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()} {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.processor() or platform.machine()}",
        "load_avg": os.getloadavg(),
        "command": "python bench/bench_index.py " + " ".join(sys.argv[1:]),
    }
    (OUT / "bench_index.json").write_text(json.dumps({"meta": meta, "results": all_res}, indent=1))
    print(json.dumps(meta))
    print(table(all_res))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| size | index | build s | single q/s | p50 ms | p99 ms | batch q/s | RSS MB | build peak MB "
        "| query peak MB "
        "| save s | load s | recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']:,} | {r['index']} | {r['error'][:80]} |")
            continue
        lines.append(
            f"| {r['size']:,} | {r['index']} | {r['build_s']:.1f} | {r['single']['qps']:,.0f} "
            f"| {r['single']['p50_ms']:.2f} | {r['single']['p99_ms']:.2f} | {r['batch_qps']:,.0f} "
            f"| {r['rss_after_build_mb']:,.0f} | {r['build_peak_rss_mb']:,.0f} | {r['query_peak_rss_mb']:,.0f} "
            f"| {r['save_s']:.1f} | {r['load_s']:.2f} | {100 * r['recall']:.2f}% |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
