"""Contact-rules engine: replay a synthetic stream of events and time "may A contact B?".

    python bench/bench_rules.py [--events 1000000] [--accounts 100000] [--decisions 200000]
                                [--seed 7]

Stream (seeded): one ``account`` event per account (35% child bands, 55% adult, 10% unknown),
then, over 7 simulated days in time order, ``connect`` (12%), ``message`` (60%),
``contact_request`` (20%), ``disconnect`` (2%), ``block`` (3%), ``report`` (2%) and ``unblock``
(1%) between random accounts; 0.5% of adults are "bad actors" whose contact requests go to random
children (so the rate and risk rules trigger). Rules: the shipped defaults.

Measured: replay throughput (events/s) of ``Engine.apply`` on parsed events, and of
``parse_event`` + ``apply`` from JSON-like dicts (what the API does per event); per-decision
latency of ``Engine.may_contact`` with ``perf_counter_ns`` over a sample of random pairs (half
child recipients); snapshot size and save/restore time. With ``--http-events N`` (default 200,000;
0 skips): the first N events POSTed to ``/v1/safety/events`` in batches of 10,000 through uvicorn
(server and one httpx client in this process, SQLite), then ``--http-decisions`` sequential
``/v1/safety/may-contact`` requests (client-measured latency). JSON in bench/out/bench_rules.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from lifeguard.safety.events import Event, parse_event  # noqa: E402
from lifeguard.safety.rules import Engine, load_rules  # noqa: E402

DAYS = 7
MIX = (
    ("connect", 0.12),
    ("message", 0.60),
    ("contact_request", 0.20),
    ("disconnect", 0.02),
    ("block", 0.03),
    ("report", 0.02),
    ("unblock", 0.01),
)


def synth(n_events: int, n_accounts: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    bands = ["u13", "13-15", "16-17", "adult", "unknown"]
    weights = [0.10, 0.13, 0.12, 0.55, 0.10]
    ids = [f"acct{i:07d}" for i in range(n_accounts)]
    band_of = rng.choices(bands, weights, k=n_accounts)
    children = [ids[i] for i, b in enumerate(band_of) if b in ("u13", "13-15", "16-17")]
    adults = [ids[i] for i, b in enumerate(band_of) if b == "adult"]
    bad = set(rng.sample(adults, max(1, len(adults) // 200)))
    bad_list = sorted(bad)
    out: list[dict[str, Any]] = [
        {"type": "account", "ts": 0.0, "account": a, "age_band": b}
        for a, b in zip(ids, band_of, strict=True)
    ]
    rest = n_events - len(out)
    kinds = [k for k, _ in MIX]
    kw = [w for _, w in MIX]
    types = rng.choices(kinds, kw, k=rest)
    span = DAYS * 86400.0
    for i, t in enumerate(types):
        ts = 1.0 + span * i / rest
        if t == "contact_request" and rng.random() < 0.08:
            a, b = rng.choice(bad_list), rng.choice(children)
        elif t in ("block", "report") and rng.random() < 0.5:
            a, b = rng.choice(children), rng.choice(bad_list)
        else:
            a, b = rng.choice(ids), rng.choice(ids)
            if a == b:
                b = ids[(int(a[4:]) + 1) % n_accounts]
        out.append({"type": t, "ts": ts, "actor": a, "target": b})
    return out


def pct(sorted_ns: list[int], q: float) -> float:
    i = min(len(sorted_ns) - 1, int(q * len(sorted_ns)))
    return sorted_ns[i] / 1000.0


def http_run(
    raw: list[dict[str, Any]], n_events: int, pairs: list[tuple[str, str, str]], now: float
) -> dict[str, Any]:
    import tempfile

    from api_live import live_server
    from lifeguard.api.config import ApiSettings
    from lifeguard.settings import Settings

    with tempfile.TemporaryDirectory() as d:
        settings = Settings(data_dir=Path(d), safety_snapshot_interval_s=3600)
        with (
            live_server(settings, ApiSettings(rate_limit_per_s=0)) as lv,
            lv.client(lv.key("match")) as c,
        ):
            events = raw[:n_events]
            t0 = time.perf_counter()
            for i in range(0, len(events), 10_000):
                r = c.post("/v1/safety/events", json={"events": events[i : i + 10_000]})
                assert r.status_code == 200, r.text
            ev_s = time.perf_counter() - t0
            lat = []
            for a, b, k in pairs:
                t = time.perf_counter_ns()
                r = c.post(
                    "/v1/safety/may-contact",
                    json={"sender": a, "recipient": b, "kind": k, "at": now},
                )
                lat.append(time.perf_counter_ns() - t)
                assert r.status_code == 200, r.text
    lat.sort()
    return {
        "events": len(events),
        "events_per_s": round(len(events) / ev_s),
        "decisions": len(lat),
        "decision_ms": {
            "p50": round(pct(lat, 0.5) / 1000, 2),
            "p99": round(pct(lat, 0.99) / 1000, 2),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--decisions", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--http-events", type=int, default=200_000)
    ap.add_argument("--http-decisions", type=int, default=2_000)
    args = ap.parse_args()

    t0 = time.perf_counter()
    raw = synth(args.events, args.accounts, args.seed)
    gen_s = time.perf_counter() - t0
    rules = load_rules()

    # 1. parse + apply (what POST /v1/safety/events does per event, minus HTTP/JSON)
    eng = Engine(rules)
    t0 = time.perf_counter()
    findings = 0
    for d in raw:
        findings += len(eng.apply(parse_event(d)))
    parse_apply_s = time.perf_counter() - t0

    # 2. apply only, on parsed events
    parsed: list[Event] = [parse_event(d) for d in raw]
    eng = Engine(rules)
    t0 = time.perf_counter()
    for e in parsed:
        eng.apply(e)
    apply_s = time.perf_counter() - t0
    del parsed

    # 3. decisions on the final state
    rng = random.Random(args.seed + 1)
    ids = [f"acct{i:07d}" for i in range(args.accounts)]
    children = [a for a in ids if eng.band(a) in ("u13", "13-15", "16-17")]
    bad_senders = [s for st in eng.rate_state for s in st] or ids
    now = 1.0 + DAYS * 86400.0
    pairs = []
    for i in range(args.decisions):
        a = rng.choice(bad_senders) if i % 10 == 0 else rng.choice(ids)
        b = rng.choice(children) if i % 2 else rng.choice(ids)
        if a == b:
            continue
        pairs.append((a, b, "message" if i % 3 else "contact_request"))
    lat: list[int] = []
    actions: dict[str, int] = {}
    pc = time.perf_counter_ns
    for a, b, k in pairs:
        t = pc()
        d = eng.may_contact(a, b, now, k)
        lat.append(pc() - t)
        actions[d.action] = actions.get(d.action, 0) + 1
    lat.sort()

    # 4. snapshot
    t0 = time.perf_counter()
    snap = json.dumps(eng.snapshot(), separators=(",", ":"))
    snap_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    eng2 = Engine(rules)
    eng2.restore(json.loads(snap))
    restore_s = time.perf_counter() - t0

    http = (
        http_run(raw, args.http_events, pairs[: args.http_decisions], now)
        if args.http_events
        else None
    )

    res = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "events": len(raw),
        "accounts": args.accounts,
        "generate_s": round(gen_s, 2),
        "apply_events_per_s": round(len(raw) / apply_s),
        "parse_apply_events_per_s": round(len(raw) / parse_apply_s),
        "findings": findings,
        "decisions": len(lat),
        "decision_us": {
            "p50": round(pct(lat, 0.50), 2),
            "p99": round(pct(lat, 0.99), 2),
            "p999": round(pct(lat, 0.999), 2),
            "max": round(lat[-1] / 1000.0, 1),
        },
        "decision_actions": actions,
        "state": eng.stats(),
        "snapshot_mb": round(len(snap) / 1e6, 1),
        "snapshot_s": round(snap_s, 2),
        "restore_s": round(restore_s, 2),
        "http": http,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_rules.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
