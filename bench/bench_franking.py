"""Message franking: operations per second and bytes added per message.

    python bench/bench_franking.py [--n 20000] [--http 500]

In process (one thread): ``frank`` (sender: fresh key + HMAC commitment) for a 100-character text,
and with one ~100 KB image attachment (AES-256-GCM + SHA-256 + HMAC); ``stamp`` (server tag);
``check`` (all report checks, storing nothing) and ``verify_report`` (checks + the replay row, on
SQLite). Over HTTP (uvicorn + httpx, sequential, SQLite): ``POST /v1/e2ee/stamp`` and
``POST /v1/e2ee/reports`` (the latter files a case through the review room when it is installed).
Then the bytes franking adds to a message, raw and as JSON. Prints Markdown (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def rate(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--http", type=int, default=500)
    a = ap.parse_args()

    from lifeguard.e2ee import client
    from lifeguard.e2ee.franking import (
        FrankingKeys,
        FrankingReport,
        FrankingService,
        ReportedAttachment,
        generate_key,
    )
    from lifeguard.settings import Settings
    from lifeguard.store.db import Database

    text = "x" * 100
    pics = sorted(p for p in PHOTOS.rglob("*.jpg"))
    photo = next(p.read_bytes() for p in pics if 80_000 < p.stat().st_size < 200_000)
    tmp = Path(tempfile.mkdtemp())
    db = Database.open(Settings(data_dir=tmp))
    svc = FrankingService(db, FrankingKeys([os.urandom(32)]))
    n = a.n
    rows: list[tuple[str, str]] = []
    rows.append(("frank, text only (sender)", f"{rate(lambda: client.frank(text), n):,.0f}/s"))
    na = max(200, n // 50)
    r_att = rate(lambda: client.frank(text, [(photo, "image/jpeg")]), na)
    rows.append(
        (
            f"frank, text + {len(photo) // 1000} KB image",
            f"{r_att:,.0f}/s ({r_att * len(photo) / 1e6:,.0f} MB/s)",
        )
    )
    fm = client.frank(text)
    rows.append(
        (
            "stamp (server tag)",
            f"{rate(lambda: svc.stamp(fm.commitment, sender='a', recipient='b'), n):,.0f}/s",
        )
    )
    st = svc.stamp(fm.commitment, sender="a", recipient="b")
    rep = FrankingReport(text, fm.franking_key, fm.commitment, st, "b")
    rows.append(("check a report (no storage)", f"{rate(lambda: svc.check(rep), n):,.0f}/s"))
    fma = client.frank(text, [(photo, "image/jpeg")])
    sta = svc.stamp(fma.commitment, sender="a", recipient="b")
    repa = FrankingReport(
        text,
        fma.franking_key,
        fma.commitment,
        sta,
        "b",
        (ReportedAttachment(fma.attachments[0].ciphertext, fma.attachments[0].ref),),
    )
    rows.append(("check a report with the image", f"{rate(lambda: svc.check(repa), na):,.0f}/s"))
    reports = []
    for _ in range(min(n, 2000)):
        f = client.frank(text)
        reports.append(
            FrankingReport(
                text,
                f.franking_key,
                f.commitment,
                svc.stamp(f.commitment, sender="a", recipient="b"),
                "b",
            )
        )
    it = iter(reports)
    r_ver = rate(lambda: svc.verify_report(next(it)), len(reports))
    rows.append(("verify_report (checks + replay row, SQLite)", f"{r_ver:,.0f}/s"))

    if a.http:
        from api_live import live_server

        os.environ["LIFEGUARD_FRANKING_KEYS"] = generate_key()
        os.environ.setdefault("LIFEGUARD_EVIDENCE_KEY", base64.b64encode(os.urandom(32)).decode())
        from lifeguard.api.config import ApiSettings

        with (
            live_server(Settings(data_dir=tmp / "http"), ApiSettings(rate_limit_per_s=0)) as lv,
            lv.client(lv.key("frank")) as c,
        ):
            body = {
                "commitment": base64.b64encode(fm.commitment).decode(),
                "sender": "a",
                "recipient": "b",
            }
            for _ in range(20):
                c.post("/v1/e2ee/stamp", json=body)
            r_http = rate(lambda: c.post("/v1/e2ee/stamp", json=body).raise_for_status(), a.http)
            rows.append(("POST /v1/e2ee/stamp (HTTP, sequential)", f"{r_http:,.0f}/s"))
            bodies = []
            for _ in range(max(20, a.http // 5)):
                f = client.frank("please report me " + os.urandom(4).hex())
                s = c.post(
                    "/v1/e2ee/stamp",
                    json={**body, "commitment": base64.b64encode(f.commitment).decode()},
                ).json()
                got = client.receive(f.payload(), f.commitment, s, me="b")
                bodies.append(client.build_report(got, [], category="grooming"))
            itb = iter(bodies)
            r_rep = rate(
                lambda: c.post("/v1/e2ee/reports", json=next(itb)).raise_for_status(), len(bodies)
            )
            rows.append(("POST /v1/e2ee/reports (verify + file a case)", f"{r_rep:,.0f}/s"))

    # Bytes added per message.
    stamp_json = json.dumps(
        {k: v for k, v in st.to_json().items() if k in ("tag", "key_id", "timestamp_ms")}
    )
    sizes = [
        ("in the clear: commitment", "32 B (44 B base64)"),
        (
            "server stamp: tag + key id + time",
            f"32 + 16 + 8 = 56 B raw; {len(stamp_json)} B as JSON",
        ),
        ("inside the E2EE payload: franking key", "32 B (44 B base64)"),
        (
            "per attachment inside the payload: key + nonce + ciphertext SHA-256 (+ mime)",
            "76 B raw (+ mime)",
        ),
        ("per attachment ciphertext: AES-GCM tag", "16 B"),
    ]
    print("| Operation | Rate |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print("\n| Bytes franking adds | Size |\n|---|---|")
    for k, v in sizes:
        print(f"| {k} | {v} |")
    db.dispose()


if __name__ == "__main__":
    main()
