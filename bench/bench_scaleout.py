"""Scale-out: how fast a bank change made by one process reaches another process's index.

    python bench/bench_scaleout.py [--changes 50] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

A writer process (this one) makes ``--changes`` entry changes (add / disable / enable, spaced by a
random 0.1..0.3 s so a poller's phase is random) on a fresh database; a replica in another process
(``multiprocessing`` spawn) holds a loaded ``Matcher`` with ``start_background_sync()`` and records
the monotonic time (system-wide clock) at which its index first reflects each revision. Latency =
applied time - the writer's time right after its commit returned. Modes, in the same run:

* ``pg-notify``: PostgreSQL, LISTEN/NOTIFY (the default for ``lifeguard serve`` on PostgreSQL);
* ``pg-poll``: PostgreSQL, poll thread every ``index_sync_interval_s`` (0.25 s) — the anchor: what
  a busy replica got before (request-driven polls at most every 0.25 s), now also when idle;
* ``sqlite-poll``: SQLite file database (same host), poll thread every 0.25 s.

Also counts the replica's revision checks (database reads) during ``--idle-s`` seconds without
changes. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def replica(
    url: str, data_dir: str, listen: bool, idle_s: float, conn: Any, ready: Any, done: Any
) -> None:
    """Child process: a loaded matcher with background sync; reports (revision, time) pairs."""
    from lifeguard.matching import Matcher
    from lifeguard.settings import Settings
    from lifeguard.store.db import Database

    applied: list[tuple[int, float]] = []

    class Recording(Matcher):
        def sync(self, *, force: bool = False) -> int:
            before = self.revision
            n = super().sync(force=force)
            if self.revision != before:
                applied.append((self.revision, time.monotonic()))
            return n

    settings = Settings(data_dir=Path(data_dir), database_url=url)
    db = Database.open(settings, run_migrations=False)
    m = Recording(db, settings)
    m.load(use_snapshot=False)
    bg = m.start_background_sync(listen=listen)
    if listen:
        bg.wait_listening(10)
    ready.set()
    done.wait()
    # Idle window: no changes; count revision checks.
    syncs0 = bg.stats.syncs
    time.sleep(idle_s)
    idle_syncs = bg.stats.syncs - syncs0
    mode = bg.stats.mode
    m.stop()
    db.dispose()
    conn.send({"applied": applied, "idle_syncs": idle_syncs, "mode": mode})
    conn.close()


def run_mode(name: str, url: str, listen: bool, changes: int, idle_s: float, photos: list[Path]):
    from lifeguard.banks import Banks
    from lifeguard.signals.hasher import hash_file
    from lifeguard.store.db import Database

    db = Database.open(url=url)
    banks = Banks(db)
    bank = f"BENCH_{uuid.uuid4().hex[:6].upper()}"
    banks.create_bank(bank)
    hashes = [hash_file(p).pdq for p in photos]
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    ready, done = ctx.Event(), ctx.Event()
    with tempfile.TemporaryDirectory() as d:
        proc = ctx.Process(
            target=replica, args=(url, d, listen, idle_s, child, ready, done), daemon=True
        )
        proc.start()
        if not ready.wait(60):
            raise RuntimeError("replica did not start")
        time.sleep(0.5)
        committed: dict[int, float] = {}
        rng = random.Random(7)
        ids: list[int] = []
        for i in range(changes):
            time.sleep(rng.uniform(0.1, 0.3))
            step = i % 3
            if step == 0 or not ids:
                e = banks.add_entry(bank, "pdq", hashes[len(ids) % len(hashes)])
                ids.append(e.entry.id)
            elif step == 1:
                banks.disable_entry(ids[-1])
            else:
                banks.enable_entry(ids[-1])
            t = time.monotonic()
            rev = banks.current_revision()
            if rev in committed:
                raise RuntimeError(f"change {i} did not bump the revision")
            committed[rev] = t
        time.sleep(1.0)  # let the last change arrive
        done.set()
        res = parent.recv()
        proc.join(30)
    banks.close()
    db.dispose()
    applied: list[tuple[int, float]] = res["applied"]
    lat = []
    for rev, t in committed.items():
        seen = [at for r, at in applied if r >= rev]
        lat.append((min(seen) - t) if seen else float("inf"))
    lat.sort()
    return {
        "mode": name,
        "sync": res["mode"],
        "n": len(lat),
        "p50": statistics.median(lat) * 1000,
        "p99": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] * 1000,
        "max": lat[-1] * 1000,
        "idle_checks_per_s": res["idle_syncs"] / idle_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--idle-s", type=float, default=6.0)
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "LIFEGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = ap.parse_args()
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    photos = sorted((PHOTOS / "clothing").glob("*.jpg"))[: args.changes // 3 + 2]
    name = f"lifeguard_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    pg = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as d:
            sqlite = f"sqlite:///{d}/lifeguard.db"
            from lifeguard.store.db import Database

            for url in (pg, sqlite):
                Database.open(url=url).dispose()  # migrate once, before the replica starts
            for mode, url, listen in (
                ("pg-notify", pg, True),
                ("pg-poll", pg, False),
                ("sqlite-poll", sqlite, True),
            ):
                rows.append(run_mode(mode, url, listen, args.changes, args.idle_s, photos))
                print(rows[-1], file=sys.stderr)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    anchor = next(r for r in rows if r["mode"] == "pg-poll")
    print(
        "| mode | sync thread | changes | p50 ms | p99 ms | max ms | p50 vs pg-poll | idle revision checks/s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['sync']} | {r['n']} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['max']:.1f} | {r['p50'] / anchor['p50']:.2f}x | {r['idle_checks_per_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
