"""HTTP load test of ``lifeguard serve`` with wrk, at 1M listed PDQ hashes.

    python bench/bench_load.py [--hashes 1000000] [--duration 15] [--workers 1,2]
                               [--clients 1,4,8,16] [--hit-clients 8]
                               [--backend postgres|sqlite] [--scenarios a,b,...]
    python bench/bench_load.py --report bench/out/bench_load.json   # tables of a saved run

1. A fresh store (PostgreSQL: a new database ``lifeguard_load_<hex>`` on 127.0.0.1:5432, dropped
   at the end; or SQLite in a temporary folder) with one block bank ``LOAD`` of ``--hashes`` PDQ
   hashes: the PDQ hashes of the photos in shared/data/photos (all but ``kodak/01.png``) plus
   seeded random ones, bulk loaded with ``lifeguard.banks.import_entries`` from a generated
   te-format file.
2. ``lifeguard index build`` (snapshot), ``lifeguard key create --scope match --scope hash
   --rate 0`` (no rate limit: we measure the server, not the limiter).
3. Benign uploads: ``kodak/01.png`` (not listed: uploads miss) and ``kodak/02.png`` (listed:
   uploads match) re-encoded as JPEGs of about ``--jpeg-bytes`` (100 KB; quality searched).
4. For each worker count: ``lifeguard serve --workers N`` in a subprocess (uvicorn picks
   uvloop/httptools when installed; recorded), a sanity request per scenario (status and body
   checked), a warm-up, then wrk (``-t1 --latency``, Lua scripts written here) per scenario and
   client count. Scenarios (the ``*_hit`` ones at ``--hit-clients`` only):

   * ``upload``: ``POST /v1/match`` multipart (default: dihedral/trimmed query variants too), miss
   * ``upload_plain``: ``POST /v1/match?variants=false`` (plain PDQ + MD5/SHA-256, as HMA), miss
   * ``h_hash``: HMA's ``POST /h/hash`` (hash only, field ``photo``)
   * ``signals``: ``POST /v1/match/signals`` with one PDQ hash, rotating over 1,000 random
     (unlisted) hashes
   * ``hma_lookup``: HMA's ``GET /m/lookup?signal=<pdq>&signal_type=pdq``, same hashes
   * ``upload_hit``, ``signals_hit``, ``hma_lookup_hit``: the same with listed media / 1,000 listed
     photo hashes, so every request is a match (entry read + match event recorded by
     ``lifeguard.actions``)

5. Per run: requests/s, p50/p99 latency (wrk's HdrHistogram), errors (connect/read/write/timeout
   and non-2xx), CPU seconds used by the server processes and by wrk (they share the cores).
   After the runs: RSS of each worker process (psutil).

6. Open loop (``--open-loop upload:150``, after the wrk runs of each worker count): wrk keeps a fixed
   number of requests in flight (a closed loop: a slow answer delays the next request). Here
   requests arrive as a Poisson process at the given rate whatever the server's pace, over
   keep-alive connections opened as needed, and latency counts from each request's scheduled time
   (no coordinated omission): the p99 a platform sending that rate would see.

Results go to bench/out/bench_load.json and are printed as Markdown tables.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BANK = "LOAD"
SCENARIOS = (
    "upload",
    "upload_plain",
    "h_hash",
    "signals",
    "hma_lookup",
    "upload_hit",
    "signals_hit",
    "hma_lookup_hit",
)
#: The photo uploaded by the miss scenarios: left out of the bank. The hit scenarios upload the
#: next Kodak photo, which is listed.
MISS_PHOTO = "kodak/01.png"
HIT_PHOTO = "kodak/02.png"
LIFEGUARD = str(Path(sys.executable).with_name("lifeguard"))

LUA_COMMON = r"""
local function readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nLGJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout))
end
"""

LUA_UPLOAD = r"""
wrk.method = "POST"
wrk.path = "{path}"
wrk.body = readfile("{body}")
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
wrk.headers["Authorization"] = "Bearer {token}"
"""

LUA_ROTATE = r"""
local reqs = {{}}
local i = 0
init = function(args)
  local headers = {{}}
  headers["Authorization"] = "Bearer {token}"
  {content_type}
  for line in io.lines("{hashes}") do
    {build}
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
"""


# ------------------------------------------------------------------------------------ setup
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_jpeg(target: int, photo: str) -> tuple[bytes, Path]:
    """A photo re-encoded as a JPEG of about ``target`` bytes (quality searched)."""
    from PIL import Image

    src = PHOTOS / photo
    im = Image.open(src).convert("RGB")
    best: bytes = b""
    lo, hi = 30, 98
    while lo <= hi:
        q = (lo + hi) // 2
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        data = buf.getvalue()
        if not best or abs(len(data) - target) < abs(len(best) - target):
            best = data
        if len(data) < target:
            lo = q + 1
        else:
            hi = q - 1
    return best, src


def corpus(n: int, seed: int = 1) -> np.ndarray[Any, np.dtype[np.uint8]]:
    from bench_index import photo_hashes

    photos, files = photo_hashes()
    keep = [i for i, f in enumerate(files) if f != PHOTOS / MISS_PHOTO]
    photos = photos[keep]
    rng = np.random.default_rng(seed)
    extra = rng.integers(0, 256, (max(0, n - len(photos)), 32), dtype=np.uint8)
    return np.concatenate([photos[:n], extra])


def write_te(hashes: np.ndarray[Any, np.dtype[np.uint8]], path: Path) -> None:
    with path.open("w") as f:
        step = 100_000
        for i in range(0, len(hashes), step):
            f.write("".join(f"pdq {h.tobytes().hex()}\n" for h in hashes[i : i + step]))


def query_hashes(
    listed: np.ndarray[Any, np.dtype[np.uint8]], n: int = 1000
) -> tuple[list[str], list[str]]:
    """``n`` listed photo hashes (each a match) and ``n`` fresh random hashes (misses)."""
    rng = np.random.default_rng(7)
    photo_n = min(3523, len(listed))
    hits = listed[rng.choice(photo_n, min(n, photo_n), replace=False)]
    misses = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    return [h.tobytes().hex() for h in hits], [h.tobytes().hex() for h in misses]


class Store:
    def __init__(self, backend: str, work: Path) -> None:
        self.backend = backend
        self.work = work
        self.data_dir = work / "data"
        self.pg_name: str | None = None
        if backend == "postgres":
            from sqlalchemy import create_engine, text

            self.pg_name = f"lifeguard_load_{uuid.uuid4().hex[:10]}"
            eng = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with eng.connect() as c:
                c.execute(text(f'CREATE DATABASE "{self.pg_name}"'))
            eng.dispose()
            self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.pg_name}"
        else:
            self.url = f"sqlite:///{self.data_dir / 'lifeguard.db'}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LIFEGUARD_DATA_DIR"] = str(self.data_dir)
        env["LIFEGUARD_DATABASE_URL"] = self.url
        env.pop("LIFEGUARD_CONFIG", None)
        return env

    def drop(self) -> None:
        if self.pg_name:
            from sqlalchemy import create_engine, text

            eng = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with eng.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))
            eng.dispose()


def load_bank(store: Store, n: int) -> tuple[dict[str, float], tuple[list[str], list[str]]]:
    from lifeguard.banks import Banks, import_entries
    from lifeguard.settings import Settings
    from lifeguard.store.db import Database

    hashes = corpus(n)
    te = store.work / "hashes.te"
    t = time.perf_counter()
    write_te(hashes, te)
    gen_s = time.perf_counter() - t
    settings = Settings(data_dir=store.data_dir, database_url=store.url)
    db = Database.open(settings)
    banks = Banks(db)
    banks.create_bank(BANK, kind="block", description="load test: photo + random hashes")
    t = time.perf_counter()
    r = import_entries(banks, BANK, te, signal_type="pdq", name="hashes.te")
    import_s = time.perf_counter() - t
    banks.close()
    db.dispose()
    print(
        f"imported {r.added:,} hashes ({r.duplicates} duplicates, {r.rejected} rejected) "
        f"in {import_s:.1f}s",
        file=sys.stderr,
    )
    t = time.perf_counter()
    subprocess.run([LIFEGUARD, "index", "build"], env=store.env(), check=True, capture_output=True)
    build_s = time.perf_counter() - t
    print(f"index build (lifeguard index build) {build_s:.1f}s", file=sys.stderr)
    te.unlink()
    times = {"generate_s": gen_s, "import_s": import_s, "index_build_s": build_s}
    return times | {"added": float(r.added)}, query_hashes(hashes)


def create_key(store: Store) -> str:
    p = subprocess.run(
        [LIFEGUARD, "key", "create", "-s", "match", "-s", "hash", "--rate", "0", "--name", "load"],
        env=store.env(),
        check=True,
        capture_output=True,
        text=True,
    )
    token: str = json.loads(p.stdout)["token"]
    return token


# ------------------------------------------------------------------------------------ wrk
def multipart_body(boundary: str, field: str, name: str, jpeg: bytes) -> bytes:
    """A multipart/form-data body with one JPEG file field."""
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        + jpeg
        + f"\r\n--{boundary}--\r\n".encode()
    )


def write_scripts(
    work: Path, token: str, jpegs: dict[str, bytes], queries: tuple[list[str], list[str]]
) -> dict[str, Path]:
    boundary = "lgload" + uuid.uuid4().hex
    scripts: dict[str, Path] = {}

    def multipart(field: str, name: str, jpeg: bytes) -> Path:
        p = work / f"body_{field}_{len(jpeg)}.bin"
        p.write_bytes(multipart_body(boundary, field, name, jpeg))
        return p

    file_body = multipart("file", "photo.jpg", jpegs["miss"])
    hit_body = multipart("file", "photo.jpg", jpegs["hit"])
    photo_body = multipart("photo", "photo.jpg", jpegs["miss"])
    for name, path, body in (
        ("upload", "/v1/match", file_body),
        ("upload_hit", "/v1/match", hit_body),
        ("upload_plain", "/v1/match?variants=false", file_body),
        ("h_hash", "/h/hash", photo_body),
    ):
        p = work / f"{name}.lua"
        p.write_text(
            LUA_COMMON + LUA_UPLOAD.format(path=path, body=body, boundary=boundary, token=token)
        )
        scripts[name] = p
    hits, misses = queries
    for suffix, hashes_list in (("", misses), ("_hit", hits)):
        hashes = work / f"queries{suffix}.txt"
        hashes.write_text("\n".join(hashes_list) + "\n")
        p = work / f"signals{suffix}.lua"
        p.write_text(
            LUA_COMMON
            + LUA_ROTATE.format(
                token=token,
                hashes=hashes,
                content_type='headers["Content-Type"] = "application/json"',
                build='reqs[#reqs + 1] = wrk.format("POST", "/v1/match/signals", headers, '
                '\'{"signals": [{"signal_type": "pdq", "value": "\' .. line .. \'"}]}\')',
            )
        )
        scripts[f"signals{suffix}"] = p
        p = work / f"hma_lookup{suffix}.lua"
        p.write_text(
            LUA_COMMON
            + LUA_ROTATE.format(
                token=token,
                hashes=hashes,
                content_type="",
                build='reqs[#reqs + 1] = wrk.format("GET", "/m/lookup?signal=" .. line .. '
                '"&signal_type=pdq", headers)',
            )
        )
        scripts[f"hma_lookup{suffix}"] = p
    return scripts


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_wrk(
    script: Path, url: str, clients: int, duration: int, server: psutil.Process
) -> dict[str, Any]:
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = tree_cpu(server)
    load0 = os.getloadavg()[0]
    cmd = [
        "wrk",
        "-t1",
        f"-c{clients}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    cpu1 = tree_cpu(server)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(x for x in p.stdout.splitlines() if x.startswith("LGJSON "))
    d: dict[str, Any] = json.loads(line[len("LGJSON ") :])
    secs = d["duration_us"] / 1e6
    d["rps"] = d["requests"] / secs
    d["errors"] = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    d["server_cpu_s"] = cpu1 - cpu0
    d["wrk_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    d["server_cpu_ms_per_req"] = 1000 * d["server_cpu_s"] / max(1, d["requests"])
    d["server_cores"] = d["server_cpu_s"] / secs
    d["wrk_cores"] = d["wrk_cpu_s"] / secs
    d["load_before"] = load0
    return d


# ------------------------------------------------------------------------------------ server
def start_server(store: Store, workers: int, port: int) -> subprocess.Popen[bytes]:
    cmd = [
        LIFEGUARD,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    log = (store.work / f"serve_{workers}.log").open("wb")
    return subprocess.Popen(cmd, env=store.env(), stdout=log, stderr=subprocess.STDOUT)


def wait_ready(
    base: str, proc: subprocess.Popen[bytes], workers: int, timeout: float = 300
) -> float:
    """Seconds until ``/readyz`` answered 200 ``20 * workers`` times in a row (every worker)."""
    t0 = time.perf_counter()
    ok = 0
    with httpx.Client(base_url=base, timeout=5) as c:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"lifeguard serve exited with {proc.returncode}")
            try:
                ok = ok + 1 if c.get("/readyz").status_code == 200 else 0
            except httpx.HTTPError:
                ok = 0
            if ok >= 20 * workers:
                return time.perf_counter() - t0
            time.sleep(0.02 if ok else 0.2)
    raise TimeoutError("server not ready")


def sanity(
    base: str, token: str, jpegs: dict[str, bytes], queries: tuple[list[str], list[str]]
) -> None:
    """One request per scenario, answers checked, before any load."""
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=h, timeout=30) as c:
        for path in ("/v1/match", "/v1/match?variants=false"):
            r = c.post(path, files={"file": ("photo.jpg", jpegs["miss"], "image/jpeg")})
            assert r.status_code == 200 and r.json()["matches"] == [], (path, r.text[:500])
        r = c.post("/v1/match", files={"file": ("photo.jpg", jpegs["hit"], "image/jpeg")})
        assert r.status_code == 200, r.text
        m = r.json()["matches"]
        assert m and m[0]["bank"] == BANK, r.text[:500]
        r = c.post("/h/hash", files={"photo": ("photo.jpg", jpegs["miss"], "image/jpeg")})
        assert r.status_code == 200 and len(r.json()["pdq"]) == 64, r.text
        hit, miss = queries[0][0], queries[1][0]
        r = c.post("/v1/match/signals", json={"signals": [{"signal_type": "pdq", "value": hit}]})
        assert r.status_code == 200 and r.json()["matches"][0]["distance"] == 0, r.text
        r = c.post("/v1/match/signals", json={"signals": [{"signal_type": "pdq", "value": miss}]})
        assert r.status_code == 200 and r.json()["matches"] == [], r.text
        r = c.get("/m/lookup", params={"signal": hit, "signal_type": "pdq"})
        assert r.status_code == 200 and r.json()[BANK][0]["distance"] == "0", r.text
        r = c.get("/m/lookup", params={"signal": miss, "signal_type": "pdq"})
        assert r.status_code == 200 and r.json() == {}, r.text


def worker_rss(proc: subprocess.Popen[bytes], workers: int) -> list[float]:
    """RSS (MiB) of each process serving requests (the supervisor and the multiprocessing
    resource tracker are left out when there are several workers)."""
    p = psutil.Process(proc.pid)
    if workers == 1:
        return [p.memory_info().rss / 2**20]
    out = []
    for c in p.children(recursive=True):
        cmd = " ".join(c.cmdline())
        if "resource_tracker" in cmd or "semaphore_tracker" in cmd:
            continue
        out.append(c.memory_info().rss / 2**20)
    return sorted(out)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------ open loop
OPEN_LOOP_PATHS = {"upload": "/v1/match", "upload_plain": "/v1/match?variants=false"}


def upload_request(path: str, port: int, token: str, jpeg: bytes) -> bytes:
    """One complete HTTP/1.1 request (keep-alive) uploading ``jpeg`` as the ``file`` field."""
    boundary = "lgopen" + uuid.uuid4().hex
    body = multipart_body(boundary, "file", "photo.jpg", jpeg)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _open_loop(
    port: int, request: bytes, rate: float, duration: float, seed: int = 1
) -> dict[str, Any]:
    """Poisson arrivals at ``rate``/s for ``duration`` s, whatever the server's pace (an open loop:
    a slow answer does not delay the next request). Latency counts from the *scheduled* send time,
    so time spent waiting for a free connection is included (no coordinated omission)."""
    import asyncio
    import random
    import re

    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    lat: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    clen = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")

    async def one(t_sched: float) -> None:
        nonlocal errors
        for attempt in (0, 1):
            reused = bool(idle)
            conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
            r, w = conn
            got = b""
            try:
                w.write(request)
                await w.drain()
                got = head = await r.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                m = clen.search(head)
                await r.readexactly(int(m.group(1)) if m else 0)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                w.close()
                # An idle keep-alive connection the server closed (uvicorn: after 5 s): retry once
                # on a new one, as HTTP clients do when nothing came back.
                if attempt == 0 and reused and not got:
                    continue
                errors += 1
                return
            lat.append(loop.time() - t_sched)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 200:
                errors += 1
            idle.append(conn)
            return

    rng = random.Random(seed)
    tasks = []
    t = loop.time() + 0.05
    end = t + duration
    while True:
        t += rng.expovariate(rate)
        if t >= end:
            break
        delay = t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(t)))
    await asyncio.gather(*tasks)
    for _, w in idle:
        w.close()
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {
        "offered_rate": rate,
        "sent": len(tasks),
        "completed": len(lat),
        "achieved_rps": len(lat) / duration,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": lat[-1] * 1000 if lat else float("nan"),
        "errors": errors,
        "statuses": statuses,
        "connections": len(idle),
    }


def run_open_loop(
    port: int, request: bytes, rate: float, duration: float, server: psutil.Process
) -> dict[str, Any]:
    import asyncio

    me = psutil.Process()
    cpu0, me0, t0 = tree_cpu(server), sum(me.cpu_times()[:2]), time.perf_counter()
    d = asyncio.run(_open_loop(port, request, rate, duration))
    secs = time.perf_counter() - t0
    d["server_cores"] = (tree_cpu(server) - cpu0) / secs
    d["client_cores"] = (sum(me.cpu_times()[:2]) - me0) / secs
    return d


# ------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hashes", type=int, default=1_000_000)
    ap.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--hit-clients", default="8", help="client counts for the *_hit scenarios")
    ap.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--jpeg-bytes", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=OUT / "bench_load.json")
    ap.add_argument("--report", type=Path, help="only print the tables of a saved result")
    ap.add_argument(
        "--open-loop",
        default="upload:150",
        help="open-loop runs after the wrk runs, scenario:rate,... (upload, upload_plain; '' for none)",
    )
    args = ap.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        print(pivot(saved) + "\n" + markdown(saved))
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            sys.exit(f"unknown scenario {s!r} (known: {', '.join(SCENARIOS)})")
    workers_list = [int(x) for x in args.workers.split(",")]
    clients_list = [int(x) for x in args.clients.split(",")]
    hit_clients = [int(x) for x in args.hit_clients.split(",")]

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="load-", dir=OUT))
    store = Store(args.backend, work)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result: dict[str, Any] = {
        "started": started,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_at_start": os.getloadavg(),
        },
        "runs": [],
    }
    try:
        setup, queries = load_bank(store, args.hashes)
        result["setup"] = setup
        token = create_key(store)
        jpegs: dict[str, bytes] = {}
        for kind, photo in (("miss", MISS_PHOTO), ("hit", HIT_PHOTO)):
            jpegs[kind], _ = make_jpeg(args.jpeg_bytes, photo)
            result.setdefault("jpeg", {})[kind] = {"source": photo, "bytes": len(jpegs[kind])}
            print(f"upload ({kind}): {photo} as JPEG, {len(jpegs[kind]):,} bytes", file=sys.stderr)
        scripts = write_scripts(work, token, jpegs, queries)
        result["uvicorn"] = uvicorn_impl()
        for workers in workers_list:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = start_server(store, workers, port)
            try:
                ready_s = wait_ready(base, proc, workers)
                sanity(base, token, jpegs, queries)
                server = psutil.Process(proc.pid)
                # Warm-up: every worker sees uploads and lookups before measuring.
                run_wrk(scripts[scenarios[0]], base, 4, 2, server)
                rss_before = worker_rss(proc, workers)
                for scen in scenarios:
                    for clients in hit_clients if scen.endswith("_hit") else clients_list:
                        d = run_wrk(scripts[scen], base, clients, args.duration, server)
                        d |= {"workers": workers, "scenario": scen, "clients": clients}
                        result["runs"].append(d)
                        print(
                            f"workers={workers} {scen:13s} c={clients:2d}: {d['rps']:8.1f}/s "
                            f"p50 {d['p50_us'] / 1000:6.1f} ms p99 {d['p99_us'] / 1000:6.1f} ms "
                            f"errors {d['errors']} server {d['server_cores']:.2f} cores, "
                            f"wrk {d['wrk_cores']:.2f} cores, "
                            f"{d['server_cpu_ms_per_req']:.2f} ms CPU/req",
                            file=sys.stderr,
                        )
                for spec in [x for x in args.open_loop.split(",") if x]:
                    scen, _, rate_s = spec.partition(":")
                    req = upload_request(OPEN_LOOP_PATHS[scen], port, token, jpegs["miss"])
                    d = run_open_loop(port, req, float(rate_s), args.duration, server)
                    d |= {"workers": workers, "scenario": scen}
                    result.setdefault("open_loop", []).append(d)
                    print(
                        f"workers={workers} open-loop {scen} at {float(rate_s):g}/s: "
                        f"{d['achieved_rps']:.1f}/s p50 {d['p50_ms']:.1f} ms p90 {d['p90_ms']:.1f} "
                        f"ms p99 {d['p99_ms']:.1f} ms max {d['max_ms']:.1f} ms errors "
                        f"{d['errors']} server {d['server_cores']:.2f} cores, client "
                        f"{d['client_cores']:.2f} cores, {d['connections']} connections",
                        file=sys.stderr,
                    )
                result.setdefault("servers", []).append(
                    {
                        "workers": workers,
                        "ready_s": ready_s,
                        "rss_mib_after_warmup": rss_before,
                        "rss_mib_after_runs": worker_rss(proc, workers),
                    }
                )
            finally:
                stop(proc)
    finally:
        store.drop()
        result["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        result["machine"]["load_at_end"] = os.getloadavg()
        args.out.write_text(json.dumps(result, indent=2))
        shutil.rmtree(work, ignore_errors=True)
    print(pivot(result) + "\n" + markdown(result))


def uvicorn_impl() -> dict[str, str]:
    """What uvicorn's ``auto`` picks here: uvloop/httptools when installed, else asyncio/h11."""
    import importlib.util

    return {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
    }


def pivot(result: dict[str, Any]) -> str:
    """One table per worker count: a row per scenario, a column per client count, each cell
    ``req/s (p50 / p99 ms)``."""
    out: list[str] = []
    clients = sorted({d["clients"] for d in result["runs"]})
    for w in sorted({d["workers"] for d in result["runs"]}):
        out += [
            f"**{w} worker{'s' if w > 1 else ''}** — req/s (p50 / p99 ms)",
            "",
            "| scenario | "
            + " | ".join(f"{c} client{'s' if c > 1 else ''}" for c in clients)
            + " | server CPU ms/req |",
            "|---|" + "---:|" * (len(clients) + 1),
        ]
        for scen in SCENARIOS:
            runs = {
                c: d
                for c, d in ((d["clients"], d) for d in result["runs"])
                if d["workers"] == w and d["scenario"] == scen
            }
            if not runs:
                continue
            cells = []
            for c in clients:
                d = runs.get(c)
                cells.append(
                    "-"
                    if d is None
                    else f"{d['rps']:,.0f} ({d['p50_us'] / 1000:.1f} / {d['p99_us'] / 1000:.0f})"
                    + ("" if d["errors"] == 0 else f" **{d['errors']} errors**")
                )
            cpu = sum(d["server_cpu_s"] for d in runs.values()) / sum(
                d["requests"] for d in runs.values()
            )
            out.append(f"| {scen} | " + " | ".join(cells) + f" | {1000 * cpu:.2f} |")
        out.append("")
    return "\n".join(out)


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| workers | scenario | clients | req/s | p50 ms | p99 ms | errors | server cores | "
        "wrk cores | server CPU ms/req |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in result["runs"]:
        lines.append(
            f"| {d['workers']} | {d['scenario']} | {d['clients']} | {d['rps']:,.0f} | "
            f"{d['p50_us'] / 1000:.1f} | {d['p99_us'] / 1000:.1f} | {d['errors']} | "
            f"{d['server_cores']:.2f} | {d['wrk_cores']:.2f} | "
            f"{d['server_cpu_ms_per_req']:.2f} |"
        )
    lines.append("")
    for s in result.get("servers", []):
        rss = ", ".join(f"{x:,.0f}" for x in s["rss_mib_after_runs"])
        lines.append(
            f"workers={s['workers']}: ready after {s['ready_s']:.1f}s; RSS per worker after the "
            f"runs {rss} MiB"
        )
    st = result.get("setup", {})
    if st:
        lines.append(
            f"setup: import {st['import_s']:.1f}s ({st['added']:,.0f} added), "
            f"index build {st['index_build_s']:.1f}s"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
