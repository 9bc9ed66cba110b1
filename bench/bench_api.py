"""HTTP API throughput and the GIL question, on benign photos.

    python bench/bench_api.py [--images 160] [--clients 4]

1. GIL: ``decode_image`` and ``pdq_from_pixels`` over the same inputs, 1 thread vs 2 threads (a
   ratio near 2 needs a free core as well as a released GIL), and the progress a pure-Python
   thread makes while the call runs, relative to its rate while this thread sleeps (near 0: the
   call holds the GIL; near 1: it releases it). This decides whether the API's hashing threadpool
   can use more than one core and whether hashing blocks the event loop.
2. End to end: ``POST /v1/match`` of each photo through uvicorn + httpx (``--clients`` concurrent
   clients), with ``hash_threads`` = 1 and = CPU count, against the in-process anchor (the same
   ``hash_bytes`` + ``Matcher.match_media`` calls in a loop, no HTTP) in the same run.
3. ``POST /v1/match/signals`` latency (one PDQ hash), p50/p95 over 300 sequential requests.

A 50-entry bank (photos not in the query set) is listed first so matching does real lookups.
Prints a Markdown table (paste into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def _spin_rate(fn: Any) -> float:
    """Iterations/s a pure-Python thread makes while ``fn`` runs in this thread."""
    stop = threading.Event()
    n = [0]

    def spin() -> None:
        while not stop.is_set():
            n[0] += 1

    th = threading.Thread(target=spin)
    th.start()
    t = time.perf_counter()
    fn()
    el = time.perf_counter() - t
    stop.set()
    th.join()
    return n[0] / el


def gil(datas: list[bytes]) -> list[tuple[str, float, float, float]]:
    from lifeguard.settings import Settings
    from lifeguard.signals.image import decode_image
    from lifeguard.signals.pdq import pdq_from_pixels

    s = Settings()
    pix = [decode_image(d, s).pixels for d in datas]
    out = []
    for name, fn, items in (
        ("decode_image", lambda d: decode_image(d, s), datas),
        ("pdq_from_pixels", pdq_from_pixels, pix * 2),
    ):
        fn(items[0])
        t = time.perf_counter()
        for x in items:
            fn(x)
        one = time.perf_counter() - t
        with ThreadPoolExecutor(2) as ex:
            t = time.perf_counter()
            list(ex.map(fn, items))
            two = time.perf_counter() - t
        free = _spin_rate(lambda t1=one: time.sleep(t1))
        busy = _spin_rate(lambda f=fn, xs=items: [f(x) for x in xs])
        out.append((name, len(items) / one, len(items) / two, busy / free))
    return out


def anchor(datas: list[tuple[str, bytes]], settings: Any) -> float:
    from lifeguard.matching import Matcher
    from lifeguard.signals.hasher import hash_bytes
    from lifeguard.store.db import Database

    db = Database.open(settings)
    m = Matcher(db, settings)
    m.load()
    t = time.perf_counter()
    for name, d in datas:
        m.match_media(hash_bytes(d, name, settings, query_variants=True))
    el = time.perf_counter() - t
    db.dispose()
    return len(datas) / el


def http_run(
    datas: list[tuple[str, bytes]], settings: Any, threads: int, clients: int
) -> tuple[float, float]:
    from api_live import live_server
    from lifeguard.api.config import ApiSettings

    api = ApiSettings(hash_threads=threads, rate_limit_per_s=0)
    with live_server(settings, api) as lv:
        token = lv.key("match")
        lock = threading.Lock()
        todo = list(datas)
        lat: list[float] = []

        def worker() -> None:
            with lv.client(token) as c:
                while True:
                    with lock:
                        if not todo:
                            return
                        name, d = todo.pop()
                    t0 = time.perf_counter()
                    r = c.post("/v1/match", files={"file": (name, d, "application/octet-stream")})
                    assert r.status_code == 200, r.text
                    with lock:
                        lat.append(time.perf_counter() - t0)

        t = time.perf_counter()
        ths = [threading.Thread(target=worker) for _ in range(clients)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        el = time.perf_counter() - t
        return len(datas) / el, statistics.median(lat)


def signals_latency(settings: Any, pdq: str) -> tuple[float, float]:
    from api_live import live_server
    from lifeguard.api.config import ApiSettings

    with (
        live_server(settings, ApiSettings(rate_limit_per_s=0)) as lv,
        lv.client(lv.key("match")) as c,
    ):
        body = {"signals": [{"signal_type": "pdq", "value": pdq}]}
        for _ in range(20):
            c.post("/v1/match/signals", json=body)
        lat = []
        for _ in range(300):
            t0 = time.perf_counter()
            assert c.post("/v1/match/signals", json=body).status_code == 200
            lat.append(time.perf_counter() - t0)
    lat.sort()
    return lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.95)] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=160)
    ap.add_argument("--clients", type=int, default=4)
    a = ap.parse_args()

    from lifeguard.banks import Banks
    from lifeguard.banks.media import add_media
    from lifeguard.settings import Settings
    from lifeguard.store.db import Database

    kodak = sorted((PHOTOS / "kodak").glob("*.png"))
    files = kodak + sorted((PHOTOS / "clothing").glob("*.jpg"))[: max(0, a.images - len(kodak))]
    datas = [(p.name, p.read_bytes()) for p in files]
    listed = sorted((PHOTOS / "clothing").glob("*.jpg"))[-50:]

    with tempfile.TemporaryDirectory() as d:
        settings = Settings(data_dir=Path(d))
        banks = Banks(Database.open(settings))
        banks.create_bank("BENCH")
        for p in listed:
            add_media(banks, "BENCH", p, settings)
        banks.close()
        load = os.getloadavg()[0]
        g = gil([x[1] for x in datas[: len(kodak)]])  # the Kodak PNGs
        base = anchor(datas, settings)
        cpus = os.cpu_count() or 1
        runs = [(t, *http_run(datas, settings, t, a.clients)) for t in sorted({1, cpus})]
        from lifeguard.signals.hasher import hash_bytes

        p50, p95 = signals_latency(
            settings, hash_bytes(datas[0][1], datas[0][0], settings).pdq or ""
        )
        load_end = os.getloadavg()[0]

    print(
        f"{len(datas)} photos ({len(kodak)} Kodak PNG 768x512, the rest clothing JPEG ~400x533), "
        f"{cpus} CPUs, load average {load:.1f} -> {load_end:.1f}\n"
    )
    print(
        "| GIL check | 1 thread (calls/s) | 2 threads (calls/s) | ratio | other thread's progress |"
    )
    print("|---|---|---|---|---|")
    for name, one, two, spin in g:
        print(f"| `{name}` | {one:.0f} | {two:.0f} | {two / one:.2f}x | {spin:.2f} |")
    print()
    print(
        f"| `/v1/match` ({a.clients} clients) | photos/s | median latency | vs in-process anchor |"
    )
    print("|---|---|---|---|")
    print(f"| anchor: `hash_bytes` + `match_media` loop, no HTTP | {base:.1f} | - | 1.00x |")
    for t, rate, med in runs:
        print(f"| HTTP, hash_threads={t} | {rate:.1f} | {med * 1000:.0f} ms | {rate / base:.2f}x |")
    print()
    print(f"`/v1/match/signals` (one PDQ hash, sequential): p50 {p50:.1f} ms, p95 {p95:.1f} ms")


if __name__ == "__main__":
    main()
