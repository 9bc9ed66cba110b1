"""Bank import throughput: 1M ``pdq <hex>`` lines into a bank, on SQLite and PostgreSQL.

    python bench/bench_import.py [--lines 1000000] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Each run is a fresh child process (so peak RSS is its own) on a fresh database. The anchor is the
bare driver loading the same hashes into a table with the same unique index, with no parsing
beyond ``split``, no validation and no bookkeeping (sqlite3 ``executemany`` / psycopg ``COPY``):
the ceiling for the database. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def make_file(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            f.write(f"pdq {hashlib.sha256(i.to_bytes(8, 'little')).hexdigest()}\n")


def child_lifeguard(url: str, path: str) -> dict[str, Any]:
    from lifeguard.banks import Banks, import_entries
    from lifeguard.store.db import Database

    banks = Banks(Database.open(url=url))
    banks.create_bank("BENCH")
    t = time.perf_counter()
    r = import_entries(banks, "BENCH", path)
    dt = time.perf_counter() - t
    return {"seconds": dt, "added": r.added, "lines": r.lines, "rejected": r.rejected}


def child_anchor(url: str, path: str) -> dict[str, Any]:
    ddl = (
        "CREATE TABLE anchor (id INTEGER PRIMARY KEY, bank_id INTEGER, signal_type TEXT, "
        "value TEXT, UNIQUE (bank_id, signal_type, value))"
    )
    t = time.perf_counter()
    if url.startswith("sqlite"):
        import sqlite3

        con = sqlite3.connect(url.split("///", 1)[1])
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(ddl)
        t = time.perf_counter()
        with open(path) as f:
            rows = ((1, *line.split()) for line in f)
            con.executemany(
                "INSERT OR IGNORE INTO anchor (bank_id, signal_type, value) VALUES (?, ?, ?)", rows
            )
        con.commit()
        n = con.execute("SELECT count(*) FROM anchor").fetchone()[0]
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as con:
            con.execute(ddl.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY"))
            con.commit()
            t = time.perf_counter()
            with (
                con.cursor() as cur,
                cur.copy("COPY anchor (bank_id, signal_type, value) FROM STDIN") as cp,
                open(path) as f,
            ):
                for line in f:
                    st, v = line.split()
                    cp.write_row((1, st, v))
            con.commit()
            n = con.execute("SELECT count(*) FROM anchor").fetchone()[0]  # type: ignore[index]
    return {"seconds": time.perf_counter() - t, "added": n}


def run_child(kind: str, url: str, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, url, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--child", nargs=3, metavar=("KIND", "URL", "FILE"))
    args = ap.parse_args()
    if args.child:
        kind, url, file = args.child
        res = child_lifeguard(url, file) if kind == "lifeguard" else child_anchor(url, file)
        res["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    tmp = Path(tempfile.mkdtemp(prefix="bench_import_"))
    data = tmp / "hashes.txt"
    make_file(data, args.lines)
    size_mib = data.stat().st_size / 2**20
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"# {args.lines:,} lines ({size_mib:.1f} MiB), python {platform.python_version()}, "
          f"load average before: {' '.join(load)}")  # fmt: skip
    rows = []
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    for backend in ("sqlite", "postgresql"):
        for kind in ("anchor", "lifeguard"):
            if backend == "sqlite":
                url = f"sqlite:///{tmp / f'{kind}.db'}"
                res = run_child(kind, url, data)
            else:
                name = f"bench_import_{uuid.uuid4().hex[:8]}"
                with admin.connect() as c:
                    c.execute(text(f'CREATE DATABASE "{name}"'))
                url = make_url(args.pg_url).set(database=name).render_as_string(False)
                try:
                    res = run_child(kind, url, data)
                finally:
                    with admin.connect() as c:
                        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            assert res["added"] == args.lines, res
            rows.append((backend, kind, res))
    print()
    print("| backend | loader | seconds | lines/s | peak RSS (MiB) | lifeguard / anchor |")
    print("|---|---|---:|---:|---:|---:|")
    for backend, kind, res in rows:
        anchor = next(r for b, k, r in rows if b == backend and k == "anchor")
        ratio = anchor["seconds"] / res["seconds"]
        print(
            f"| {backend} | {kind} | {res['seconds']:.1f} | {args.lines / res['seconds']:,.0f} | "
            f"{res['max_rss_mib']:.0f} | {'' if kind == 'anchor' else f'{ratio:.2f}x speed'} |"
        )
    with open("/proc/loadavg") as f:
        print(f"\nload average after: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
