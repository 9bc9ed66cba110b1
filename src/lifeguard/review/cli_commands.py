"""``lifeguard case list|show|ingest|decide|assign|appeal|decide-appeal|le-report`` and
``lifeguard transparency``. Wire into ``lifeguard.cli`` with ``register(app)``.

The command line is an operator's tool (it has the database): ``--as``/``--role`` name the person
acting, and that is what the audit log records.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lifeguard.errors import LifeguardError
from lifeguard.review.roles import Actor, Role
from lifeguard.settings import get_settings
from lifeguard.store.db import Database

case_app = typer.Typer(
    help="Review cases: queue, details, ingest matches, decide.", no_args_is_help=True
)
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

AsOpt = Annotated[str, typer.Option("--as", help="Who is acting (reviewer account name).")]
RoleOpt = Annotated[Role, typer.Option("--role", help="Their role.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _svc() -> Any:
    from lifeguard.review.service import ReviewService

    s = get_settings()
    return ReviewService(Database.open(s), s)


def _fail(e: LifeguardError) -> typer.Exit:
    err.print(f"[red]error[/] ({e.code}): {e.message}", highlight=False)
    return typer.Exit(2)


def _print(obj: Any) -> None:
    out.print_json(json.dumps(obj, default=str))


@case_app.command("list")
def case_list(
    status: Annotated[str, typer.Option(help="open, all, or a status.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    who: AsOpt = "cli",
    role: RoleOpt = Role.ADMIN,
    as_json: JsonOpt = False,
) -> None:
    """The queue: priority, then age."""
    try:
        rows = _svc().queue(Actor(who, role), status=status, limit=limit, offset=offset)
    except LifeguardError as e:
        raise _fail(e) from None
    if as_json:
        for r in rows:
            print(json.dumps(r.to_dict()))
        return
    t = Table("id", "P", "category", "surface", "status", "items", "age", "due", "assigned", "v")
    now = dt.datetime.now(dt.UTC)
    for r in rows:
        age = now - r.created_at
        due = "OVERDUE" if r.overdue else r.first_review_due.strftime("%Y-%m-%d %H:%M")
        t.add_row(
            str(r.id), str(r.priority), r.category, r.surface, r.status, str(r.item_count),
            f"{age.total_seconds() / 3600:.1f} h", due, r.assigned_to or "", str(r.version),
        )  # fmt: skip
    out.print(t)


@case_app.command("show")
def case_show(case_id: int) -> None:
    """One case as JSON (items, history, decisions, appeals, LE reports)."""
    try:
        _print(_svc().get_case(case_id).to_dict())
    except LifeguardError as e:
        raise _fail(e) from None


@case_app.command("ingest")
def case_ingest(
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    watch: Annotated[
        float, typer.Option(help="Keep running, polling every this many seconds (0: once).")
    ] = 0.0,
) -> None:
    """Turn new match events into cases (idempotent)."""
    svc = _svc()
    try:
        while True:
            n = svc.ingest_match_events(limit=limit)
            while n == limit:
                n = svc.ingest_match_events(limit=limit)
            err.print(f"ingested: {n} new case item(s)")
            if watch <= 0:
                return
            time.sleep(watch)
    except LifeguardError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:  # pragma: no cover - interactive
        return


@case_app.command("assign")
def case_assign(
    case_id: int, version: Annotated[int, typer.Option()], who: AsOpt, role: RoleOpt = Role.REVIEWER
) -> None:
    """Take a case."""
    try:
        v = _svc().assign(case_id, Actor(who, role), expected_version=version)
    except LifeguardError as e:
        raise _fail(e) from None
    err.print(f"case {v.id}: {v.status}, assigned to {v.assigned_to}, version {v.version}")


@case_app.command("decide")
def case_decide(
    case_id: int,
    decision: Annotated[
        str, typer.Argument(help="confirm, false_positive, escalate, no_violation")
    ],
    version: Annotated[int, typer.Option(help="The version you reviewed (see `case show`).")],
    who: AsOpt,
    role: RoleOpt = Role.REVIEWER,
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Decide a case (refused if it changed since --version)."""
    try:
        v = _svc().decide(case_id, Actor(who, role), decision, expected_version=version, note=note)
    except LifeguardError as e:
        raise _fail(e) from None
    err.print(f"case {v.id}: {v.status} ({v.decision or decision}), version {v.version}")


@case_app.command("appeal")
def case_appeal(
    case_id: int,
    appellant: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option()] = "",
) -> None:
    """Record an appeal against a decided case."""
    try:
        v = _svc().appeal(case_id, appellant=appellant, reason=reason)
    except LifeguardError as e:
        raise _fail(e) from None
    err.print(f"case {v.id}: {v.status}, version {v.version}")


@case_app.command("decide-appeal")
def case_decide_appeal(
    case_id: int,
    version: Annotated[int, typer.Option()],
    who: AsOpt,
    upheld: Annotated[bool, typer.Option("--upheld/--rejected")],
    role: RoleOpt = Role.REVIEWER,
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Decide an appeal (not by the person who made the decision)."""
    try:
        v = _svc().decide_appeal(
            case_id, Actor(who, role), upheld=upheld, expected_version=version, note=note
        )
    except LifeguardError as e:
        raise _fail(e) from None
    err.print(f"case {v.id}: {v.status} ({v.decision}), version {v.version}")


@case_app.command("le-report")
def case_le_report(
    case_id: int,
    kind: Annotated[str, typer.Argument(help="ncmec or nca")],
    who: AsOpt,
    role: RoleOpt = Role.SENIOR,
    classification: Annotated[
        str | None, typer.Option(help="A1, A2, B1 or B2 when the bank gives none.")
    ] = None,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write the document here.")
    ] = None,
) -> None:
    """Build (and submit, when LIFEGUARD_LE_* endpoints are set) an NCMEC or NCA report."""
    try:
        v = _svc().le_report(case_id, Actor(who, role), kind, classification=classification)
    except LifeguardError as e:
        raise _fail(e) from None
    if output:
        with open(output, "x", encoding="utf-8") as f:
            f.write(v.document)
    err.print(f"{kind} report for case {case_id}: {v.status} {v.reference}".rstrip())


def transparency_cmd(
    start: Annotated[
        dt.datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First day (UTC).")
    ],
    end: Annotated[
        dt.datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day (UTC), included.")
    ],
    fmt: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
) -> None:
    """Transparency figures for the days --from..--to (definitions in docs/review.md)."""
    from lifeguard.reports.transparency import transparency_report

    if fmt not in ("json", "csv"):
        err.print(f"[red]error[/]: --format {fmt!r}: json or csv")
        raise typer.Exit(2)
    try:
        rep = transparency_report(
            Database.open(get_settings()), start.date(), end.date() + dt.timedelta(days=1)
        )
    except LifeguardError as e:
        raise _fail(e) from None
    if fmt == "csv":
        sys.stdout.write(rep.to_csv())
    else:
        print(json.dumps(rep.to_dict(), indent=2))


def register(app: typer.Typer) -> None:
    """Add ``case`` and ``transparency`` to the main ``lifeguard`` app."""
    app.add_typer(case_app, name="case")
    app.command("transparency")(transparency_cmd)
