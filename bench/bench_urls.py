"""URL and keyword lists: matching throughput against a 100k-URL list, list import time.

    python bench/bench_urls.py [--urls 100000] [--keywords 1000] [--messages 50000] [--seed 7]
                               [--pg-url postgresql+psycopg://...]

List (seeded, synthetic hosts such as ``w123-lake.example``): ``--urls`` entries, 1% whole
``domain`` entries, 30% image URLs, the rest pages, half with a query string. Messages: 8-30
words of benign filler; 40% carry one URL, 10% two. Of the URLs, 10% are listed ones written
differently from the list (upper-case host, ``www.``, trailing slash, reordered query, ``https``),
2% of those spelled out (``host dot example/path``), the rest unlisted. Keywords: ``--keywords``
words and 2-3-word phrases from the same vocabulary as the filler, some as prefixes.

Measured: canonicalisations/s; matcher build time; URL matching messages/s (find URLs, including
the de-obfuscation pass, canonicalise, look up) and how many listed URLs were found (must equal
the number planted); keyword matching messages/s (folding with lifeguard.safety.normalize
dominates); list import into SQLite (and PostgreSQL with --pg-url) and matcher load from the
database. JSON in bench/out/bench_urls.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "src"))

from lifeguard.errors import NotFound  # noqa: E402
from lifeguard.safety.keywords import KeywordMatcher, parse_keyword  # noqa: E402
from lifeguard.safety.lists import SafetyLists  # noqa: E402
from lifeguard.safety.urls import UrlMatcher, canonicalize, parse_entry  # noqa: E402
from lifeguard.store.db import Database  # noqa: E402

WORDS = (  # noqa: SIM905
    "the a to and of in is it you that was for on are with as this be at have from or one had "
    "by word but not what all were we when your can said there use an each which she do how "
    "their if will up other about out many then them these so some her would make like him "
    "into time has look two more write go see number no way could people my than first water "
    "been call who oil its now find long down day did get come made may part lake river hill "
    "school game football weekend homework dinner music movie picture garden holiday train"
).split()
TLDS = ["example", "test", "invalid", "example.org", "example.net"]


def make_list(n: int, rng: random.Random) -> list[tuple[str, str]]:
    hosts = [f"w{i}-{rng.choice(WORDS)}.{rng.choice(TLDS)}" for i in range(max(100, n // 5))]
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(out) < n:
        h = rng.choice(hosts)
        r = rng.random()
        if r < 0.01:
            v, k = f"d{len(out)}.{h}", "domain"
        else:
            path = "/".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
            ext = ".jpg" if r < 0.31 else ""
            q = f"?id={rng.randint(1, 10**6)}&p={rng.randint(1, 99)}" if rng.random() < 0.5 else ""
            v, k = f"http://{h}/{path}{len(out)}{ext}{q}", "image" if ext else "page"
        if v not in seen:
            seen.add(v)
            out.append((v, k))
    return out


def variant(url: str, rng: random.Random) -> str:
    """The same resource, written differently."""
    rest = url.split("://", 1)[1]
    host, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    if query and rng.random() < 0.5:
        query = "&".join(reversed(query.split("&")))
    host = ("www." if rng.random() < 0.5 else "") + (host.upper() if rng.random() < 0.5 else host)
    scheme = rng.choice(["http://", "https://", "HTTPS://", ""])
    slash = "/" if rng.random() < 0.3 and not query else ""
    return f"{scheme}{host}/{path}{slash}" + (f"?{query}" if query else "")


def make_messages(
    n: int, entries: list[tuple[str, str]], rng: random.Random
) -> tuple[list[str], int]:
    pages = [v for v, k in entries if k != "domain"]
    planted = 0
    msgs = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 30))]
        r = rng.random()
        n_urls = 2 if r < 0.10 else 1 if r < 0.40 else 0
        for _ in range(n_urls):
            if rng.random() < 0.10:
                u = variant(rng.choice(pages), rng)
                if rng.random() < 0.02:
                    u = u.split("://")[-1].replace(".", " dot ", 1)
                planted += 1
            else:
                u = f"https://site{rng.randint(1, 10**6)}.example.com/{rng.choice(WORDS)}"
            words.insert(rng.randint(0, len(words)), u)
        msgs.append(" ".join(words))
    return msgs, planted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--urls", type=int, default=100_000)
    ap.add_argument("--keywords", type=int, default=1_000)
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--pg-url", default="")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    entries = make_list(args.urls, rng)
    msgs, planted = make_messages(args.messages, entries, rng)

    t0 = time.perf_counter()
    for v, _ in entries:
        canonicalize(v)
    canon_per_s = len(entries) / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    um = UrlMatcher()
    for v, k in entries:
        e = parse_entry(v, k)
        um.add("bench", e.kind, e.key)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    found = 0
    for m in msgs:
        found += len(um.match_text(m))
    url_s = time.perf_counter() - t0

    kws = set()
    while len(kws) < args.keywords:
        k = " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(rng.randint(1, 3)))
        kws.add(k + ("*" if rng.random() < 0.1 else ""))
    km = KeywordMatcher()
    for k in kws:
        km.add("bench", parse_keyword(k).key)
    t0 = time.perf_counter()
    kw_hits = 0
    for m in msgs:
        kw_hits += len(km.match_text(m))
    kw_s = time.perf_counter() - t0

    text = "".join(f"{v}\t{k}\n" for v, k in entries)
    db_results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        urls = [("sqlite", f"sqlite:///{d}/bench.db")]
        if args.pg_url:
            urls.append(("postgresql", args.pg_url))
        for name, url in urls:
            db = Database.open(url=url)
            lists = SafetyLists(db)
            with contextlib.suppress(NotFound):
                lists.delete("bench")
            t0 = time.perf_counter()
            r = lists.import_file("bench", io.StringIO(text), kind="url", source_name="bench.txt")
            imp_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            r2 = lists.import_file("bench", io.StringIO(text), source_name="bench.txt")
            again_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            lists.load_matchers()
            load_s = time.perf_counter() - t0
            db_results[name] = {
                "import_s": round(imp_s, 2),
                "import_lines_per_s": round(len(entries) / imp_s),
                "added": r.added,
                "reimport_s": round(again_s, 2),
                "reimport_duplicates": r2.duplicates,
                "load_matchers_s": round(load_s, 2),
            }
            lists.delete("bench")
            db.dispose()

    res = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "list_urls": len(entries),
        "messages": len(msgs),
        "canonicalize_per_s": round(canon_per_s),
        "matcher_build_s": round(build_s, 2),
        "url_match_messages_per_s": round(len(msgs) / url_s),
        "url_matches_found": found,
        "url_matches_planted": planted,
        "keywords": len(kws),
        "keyword_match_messages_per_s": round(len(msgs) / kw_s),
        "keyword_hits": kw_hits,
        "db": db_results,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_urls.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
