"""``make demo``: the main job end to end on the embedded SQLite store, with benign demo data.

1. creates a block-list bank from part of ../shared/data/photos (everyday photos standing in for listed media)
   and an allow-list bank holding one known false positive;
2. edits some of those photos (flip, rotation, padding, caption bar, screenshot frame, crop, JPEG, grey)
   and mixes them with photos that are not listed, plus one corrupt file;
3. matches the folder and prints the results table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lifeguard.banks import Banks
from lifeguard.banks.media import add_media
from lifeguard.edits import apply_edit
from lifeguard.errors import MediaError
from lifeguard.matching import Matcher
from lifeguard.settings import Settings
from lifeguard.signals.hasher import hash_file, iter_media
from lifeguard.store.db import Database

DEMO_EDITS = (
    "flip_h",
    "rotate90",
    "pad20",
    "caption",
    "screenshot",
    "crop10",
    "crop10_corner",
    "rotate5",
    "jpeg30",
    "grey",
    "blur",
    "text",
)


def find_photos() -> Path:
    here = Path(__file__).resolve()
    for parent in [Path.cwd(), *here.parents]:
        cand = parent.parent / "shared" / "data" / "photos"
        if cand.is_dir():
            return cand
        cand = parent / "shared" / "data" / "photos"
        if cand.is_dir():
            return cand
    raise SystemExit("cannot find ../shared/data/photos (the benign demo photos)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", type=Path, default=Path(".lifeguard-demo"))
    ap.add_argument("--listed", type=int, default=300, help="photos to list in the demo bank")
    ap.add_argument("--edited", type=int, default=24, help="listed photos to edit into queries")
    ap.add_argument(
        "--unlisted", type=int, default=10, help="photos not listed, mixed into the queries"
    )
    ap.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="then start the HTTP service and run the curl examples against it",
    )
    ap.add_argument("--port", type=int, default=0, help="service port (default: a free one)")
    ap.add_argument(
        "--no-wait",
        action="store_true",
        help="stop the service after the examples, even on a terminal",
    )
    args = ap.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)

    photos = sorted((find_photos() / "clothing").glob("*.jpg"))
    if len(photos) < args.listed + args.unlisted:
        raise SystemExit("not enough demo photos")
    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    settings = Settings(data_dir=args.data_dir)
    db = Database.open(settings)
    banks = Banks(db)
    console.rule("[bold]lifeguard demo[/bold]: known-material matching on embedded SQLite")
    console.print(f"store: {settings.resolved_database_url}")

    bank = banks.create_bank(
        "DEMO_KNOWN_MATERIAL", kind="block", categories=["A1"], supplier="demo: benign stand-in photos",
        description="Everyday photos standing in for listed media.",
    )  # fmt: skip
    allow = banks.create_bank(
        "DEMO_KNOWN_FALSE_POSITIVES", kind="allow", description="Reviewed, not violating."
    )
    listed = photos[: args.listed]
    t0 = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as p:
        task = p.add_task(f"listing {len(listed)} photos in {bank.name}", total=len(listed))
        for i, photo in enumerate(listed):
            add_media(
                banks,
                bank.name,
                photo,
                settings,
                external_id=f"demo-{i:04d}",
                source="shared/data/photos",
                added_by="demo",
            )
            p.advance(task)
    console.print(
        f"listed {len(listed)} photos in {time.perf_counter() - t0:.1f} s (PDQ + trimmed/region hashes + MD5)"
    )

    qdir = args.data_dir / "queries"
    qdir.mkdir(parents=True)
    rng = random.Random(7)
    chosen = rng.sample(range(len(listed)), args.edited)
    expected: dict[str, str] = {}
    for k, idx in enumerate(chosen):
        edit = DEMO_EDITS[k % len(DEMO_EDITS)]
        with Image.open(listed[idx]) as im:
            data = apply_edit(edit, im.convert("RGB"), seed=idx)
        ext = ".png" if data[:4] == b"\x89PNG" else ".jpg"
        name = f"listed-{idx:04d}-{edit}{ext}"
        (qdir / name).write_bytes(data)
        expected[name] = f"demo-{idx:04d}"
    for j, photo in enumerate(photos[args.listed : args.listed + args.unlisted]):
        shutil.copy(photo, qdir / f"unlisted-{j:02d}.jpg")
        expected[f"unlisted-{j:02d}.jpg"] = ""
    # A reviewed false positive: listed, but also on the allow list -> its match is suppressed.
    fp = listed[chosen[0] - 1 if chosen[0] else 1]
    shutil.copy(fp, qdir / "allow-listed.jpg")
    allow_hash = hash_file(fp, settings)
    banks.add_entry(
        allow.name, "pdq", allow_hash.pdq or "", note="reviewed: not violating", added_by="demo"
    )
    (qdir / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")

    matcher = Matcher(db, settings)
    t0 = time.perf_counter()
    matcher.load()
    load_s = time.perf_counter() - t0
    from lifeguard.cli import _match_record, _match_table

    records = []
    t0 = time.perf_counter()
    for path in iter_media([qdir]):
        try:
            res = hash_file(path, settings, query_variants=True)
            records.append(_match_record(path, res, matcher, True))
        except MediaError as e:
            records.append(_match_record(path, e, matcher, True))
    match_s = time.perf_counter() - t0
    for r in records:
        r["path"] = Path(r["path"]).name
    console.print(_match_table(records))

    hits = sum(1 for r in records if r.get("matched") and r["path"].startswith("listed-"))
    wrong = sum(
        1
        for r in records
        if r.get("matched")
        and any(m["external_id"] != expected.get(r["path"]) for m in r["matches"])
    )
    false_pos = sum(1 for r in records if r.get("matched") and r["path"].startswith("unlisted-"))
    suppressed = sum(1 for r in records if r.get("suppressed"))
    console.print(
        f"[bold]{hits}/{args.edited}[/bold] edited copies of listed photos matched; "
        f"[bold]{false_pos}/{args.unlisted}[/bold] unlisted photos matched (false matches); "
        f"{wrong} matched the wrong entry; {suppressed} suppressed by the allow list; "
        f"index loaded in {load_s:.2f} s, {len(records)} files hashed+matched in {match_s:.2f} s."
    )
    console.print(
        f"\nTry it yourself:  [cyan]export LIFEGUARD_DATA_DIR={args.data_dir}[/cyan]\n"
        f"  .venv/bin/lifeguard bank list\n  .venv/bin/lifeguard match {qdir} --format table\n"
        f"  .venv/bin/lifeguard hash {listed[0]}\n  .venv/bin/lifeguard scan {qdir} --out {args.data_dir}/report.jsonl"
    )
    ok = wrong == 0 and false_pos == 0
    if args.serve:
        example = hash_file(listed[chosen[1]], settings).pdq or ""
        ok = serve_demo(console, settings, db, qdir, example, args) and ok
    db.dispose()
    return 0 if ok else 1


#: The reporting provider's details for the demo's law-enforcement reports (built, not sent: no
#: NCMEC/NCA endpoint is configured). A real deployment sets its own (docs/law-enforcement-reports.md).
DEMO_LE = {
    "LIFEGUARD_LE_COMPANY": "Demo Messaging Ltd",
    "LIFEGUARD_LE_SERVICE": "Demo Chat",
    "LIFEGUARD_LE_CONTACT_FIRST_NAME": "Dana",
    "LIFEGUARD_LE_CONTACT_LAST_NAME": "Safety",
    "LIFEGUARD_LE_CONTACT_EMAIL": "trust-and-safety@demo.example",
}


def review_demo(console: Console, settings: Settings, db: Database, base: str, token: str) -> bool:
    """From matches and a user report to cases, a decision, a law-enforcement report and the
    transparency figures — the review room, driven the way a moderator team would."""
    import datetime as dt
    import secrets

    import httpx
    from rich.table import Table

    from lifeguard.reports.transparency import transparency_report
    from lifeguard.review.accounts import Accounts
    from lifeguard.review.roles import Role
    from lifeguard.review.service import ReviewService

    console.rule("[bold]review[/bold]: cases, decisions, law-enforcement report, transparency")
    content = json.dumps([{"content_id": "msg-991"}])
    form = {
        "reporter": "user-1207",
        "reason": "sextortion",
        "surface": "private_message",
        "reported_account": "user-666",
        "child_at_risk_now": "true",
        "description": "They say they will share my photos unless I pay by tonight.",
        "content": content,
    }
    r = httpx.post(
        f"{base}/v1/reports",
        files={k: (None, v) for k, v in form.items()},  # multipart, as curl -F sends it
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    console.print(
        f'[cyan]$ curl -s -H "Authorization: Bearer $TOKEN" -F reporter=user-1207 '
        f"-F reason=sextortion -F surface=private_message -F reported_account=user-666 "
        f"-F child_at_risk_now=true -F description='...' -F 'content={content}' "
        f"{base}/v1/reports[/cyan]",
        soft_wrap=True,
    )
    console.print(f"[dim]HTTP {r.status_code}[/dim] case {r.json().get('id')} (a user report)\n")
    good = r.status_code == 201

    svc = ReviewService(db, settings)
    n = svc.ingest_match_events()
    console.print(
        f"{n} match event(s) from the uploads above became cases ([cyan]lifeguard case ingest[/cyan])"
    )
    accounts = Accounts(db)
    passwords = {"alice": secrets.token_urlsafe(9), "bob": secrets.token_urlsafe(9)}
    alice = accounts.add("alice", passwords["alice"], Role.REVIEWER).actor
    bob = accounts.add("bob", passwords["bob"], Role.SENIOR).actor

    queue = svc.queue(bob, status="all")
    t = Table("case", "priority", "category", "surface", "status", "items", title="review queue")
    for c in queue:
        t.add_row(str(c.id), f"P{c.priority}", c.category, c.surface, c.status, str(c.item_count))
    console.print(t)
    match_case = next((c for c in queue if c.category == "csam"), None)
    if match_case is None:
        console.print("[red]no case from the hash match[/red]")
        return False
    assigned = svc.assign(match_case.id, alice, expected_version=match_case.version)
    decided = svc.decide(
        assigned.id,
        alice,
        "confirm",
        expected_version=assigned.version,
        note="demo: listed stand-in",
    )
    console.print(
        f"alice (reviewer) confirmed case {decided.id}: its hashes went into the confirmed block bank "
        "and the bank's action rules fired"
    )
    le = svc.le_report(decided.id, bob, "ncmec")
    head = "\n".join(le.document.splitlines()[:12])
    console.print(
        f"bob (senior reviewer) built NCMEC CyberTipline report {le.id} for case {decided.id} "
        f"({le.status}; no NCMEC endpoint configured, so nothing was sent). First lines:"
    )
    console.print(head, markup=False, highlight=False)
    today = dt.datetime.now(dt.UTC).date()
    rep = transparency_report(
        db,
        dt.datetime.combine(today, dt.time(), dt.UTC),
        dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC),
    ).to_dict()
    console.print("transparency figures for today ([cyan]lifeguard transparency[/cyan]):")
    console.print_json(data={k: rep[k] for k in ("cases_opened", "detections") if k in rep})
    console.print(
        f"\nreview UI: [bold]{base}/review/[/bold]  log in as alice / {passwords['alice']} "
        f"(reviewer) or bob / {passwords['bob']} (senior); the transparency page is "
        f"{base}/review/transparency (docs/review-ui.md)\n"
    )
    return good and le.status in ("built", "submitted")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_demo(
    console: Console,
    settings: Settings,
    db: Database,
    qdir: Path,
    pdq: str,
    args: argparse.Namespace,
) -> bool:
    """Start ``lifeguard serve`` on the demo store, run the printed curl examples for real, then keep it
    running (interactive) or stop it (no terminal)."""
    import httpx

    from lifeguard.api.keys import SCOPES, KeyStore

    _info, token = KeyStore(db).create("demo", SCOPES, created_by="make demo")
    port = args.port or _free_port()
    base = f"http://127.0.0.1:{port}"
    os.environ.update({k: v for k, v in DEMO_LE.items() if not os.environ.get(k)})
    env = {
        **os.environ,
        "LIFEGUARD_DATA_DIR": str(settings.data_dir),
        "LIFEGUARD_DATABASE_URL": settings.resolved_database_url,
    }
    console.rule("[bold]the HTTP service[/bold]")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lifeguard",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                console.print("[red]the service exited[/red]")
                return False
            time.sleep(0.2)
        else:
            console.print("[red]the service did not become ready in 60 s[/red]")
            return False
        query = next(p for p in sorted(qdir.iterdir()) if "flip_h" in p.name or "caption" in p.name)
        auth = {"Authorization": f"Bearer {token}"}
        upload = {"file": (query.name, query.read_bytes())}
        signals = {"signals": [{"signal_type": "pdq", "value": pdq}], "content_id": "demo-hash-1"}
        examples: list[tuple[str, str, str, dict[str, Any]]] = [
            (
                f'curl -s -H "Authorization: Bearer $TOKEN" -F file=@{query} '
                f"-F content_id=demo-upload-1 {base}/v1/match",
                "POST", "/v1/match", {"files": upload, "data": {"content_id": "demo-upload-1"}},
            ),
            (
                f'curl -s -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" '
                f"-d '{json.dumps(signals)}' {base}/v1/match/signals",
                "POST", "/v1/match/signals", {"json": signals},
            ),
            (
                f'curl -s -H "Authorization: Bearer $TOKEN" '
                f'"{base}/m/lookup?signal_type=pdq&signal={pdq}"   # HMA-compatible',
                "GET", "/m/lookup", {"params": {"signal_type": "pdq", "signal": pdq}},
            ),
            (f'curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/banks', "GET", "/v1/banks", {}),
        ]  # fmt: skip
        console.print(
            f"service at {base} (API key created for the demo, shown once):\n  export TOKEN={token}\n"
        )
        good = True
        for cmd, method, path, kwargs in examples:
            r = httpx.request(method, base + path, headers=auth, timeout=30, **kwargs)
            good = good and r.status_code == 200
            body = r.text if len(r.text) < 600 else r.text[:600] + " ..."
            console.print(f"[cyan]$ {cmd}[/cyan]", soft_wrap=True)
            console.print(f"[dim]HTTP {r.status_code}[/dim]", end=" ")
            console.print(body + "\n", soft_wrap=True, markup=False, highlight=False)
        good = review_demo(console, settings, db, base, token) and good
        if sys.stdin.isatty() and not args.no_wait:
            console.print(
                f"[bold]serving at {base} — try the curl lines above, or log in to "
                f"{base}/review/ ; Ctrl-C to stop[/bold]"
            )
            with contextlib.suppress(KeyboardInterrupt):
                proc.wait()
        return good
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
