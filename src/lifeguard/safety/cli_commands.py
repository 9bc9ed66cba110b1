"""Typer commands for contact rules and URL/keyword lists. ``register(app)`` adds (to the
``lifeguard safety`` group, created when missing):

* ``lifeguard safety list import NAME FILE [--kind url|keyword] [--replace] [--category C]``
* ``lifeguard safety list export NAME [-o FILE]``
* ``lifeguard safety list show [NAME]`` and ``lifeguard safety list delete NAME``
* ``lifeguard safety rules check [FILE]`` (validate; prints the rules) and
  ``lifeguard safety rules replay EVENTS.jsonl [--snapshot FILE]`` (feed events, print findings)
* ``lifeguard safety scan TEXT`` (URLs and keywords of the stored lists in TEXT)
* ``lifeguard safety conversation FILE.jsonl [--head full|lite|rules] [--report]`` (score
  conversations; with labels, the evaluation report on your own data)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from lifeguard.errors import LifeguardError
from lifeguard.safety.conversation import ConversationScorer, InvalidConversation, ScoringConfig
from lifeguard.safety.evaluate import format_report, report, run
from lifeguard.safety.events import InvalidEvent, parse_event
from lifeguard.safety.lists import SafetyLists
from lifeguard.safety.rules import (
    Engine,
    RateRule,
    RiskRule,
    RulesError,
    load_rules,
    write_snapshot,
)
from lifeguard.settings import get_settings
from lifeguard.store.db import Database

safety_app = typer.Typer(
    help="Safety signals: contact rules, URL and keyword lists.", no_args_is_help=True
)
list_app = typer.Typer(
    help="URL and keyword lists (IWF-style URL lists, keywords).", no_args_is_help=True
)
rules_app = typer.Typer(
    help="Contact rules on metadata (docs/contact-rules.md).", no_args_is_help=True
)


def _fail(message: str, code: str = "error") -> None:
    typer.echo(f"error ({code}): {message}", err=True)
    raise typer.Exit(2)


def _out(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


@contextmanager
def _lists() -> Iterator[SafetyLists]:
    try:
        db = Database.open(get_settings())
    except LifeguardError as e:
        _fail(e.message, e.code)
        raise
    except SQLAlchemyError as e:
        _fail(f"cannot open the database: {e.__class__.__name__}: {e}".splitlines()[0], "database")
        raise
    try:
        yield SafetyLists(db)
    except LifeguardError as e:
        _fail(e.message, e.code)
    finally:
        db.dispose()


# ------------------------------------------------------------------------------------- lists
@list_app.command("import")
def list_import(
    name: Annotated[str, typer.Argument(help="List name (created when missing).")],
    file: Annotated[Path, typer.Argument(help="Text file, one entry a line ('-': stdin; .gz ok).")],
    kind: Annotated[
        str | None, typer.Option(help="url or keyword (needed for a new list).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Remove entries the file no longer has.")
    ] = False,
    category: Annotated[str, typer.Option(help="Category for lines that give none.")] = "",
    description: Annotated[str, typer.Option(help="Description of a new list.")] = "",
) -> None:
    """Import a list file in one transaction; every rejected line is printed with its reason."""
    with _lists() as lists:
        if str(file) == "-":
            src: Any = sys.stdin.buffer
            sname = "<stdin>"
        else:
            if not file.is_file():
                _fail(f"{file}: no such file")
            src, sname = file, str(file)
        r = lists.import_file(
            name,
            src,
            kind=kind,
            replace=replace,
            category=category,
            description=description,
            source_name=sname,
        )
        for rej in r.rejections:
            typer.echo(f"{sname}:{rej.line_no}: {rej.reason}", err=True)
        if r.rejected > len(r.rejections):
            typer.echo(f"... {r.rejected - len(r.rejections)} more rejected lines", err=True)
        summary = r.to_json()
        summary.pop("rejections")
        _out(summary)


@list_app.command("export")
def list_export(
    name: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
) -> None:
    """Write the list in the import format (canonical values)."""
    with _lists() as lists:
        lists.info(name)  # NotFound before anything is written
        if output is None:
            for line in lists.export_lines(name):
                sys.stdout.write(line)
            return
        tmp = output.with_name(output.name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            for line in lists.export_lines(name):
                f.write(line)
        tmp.replace(output)


@list_app.command("show")
def list_show(
    name: Annotated[str | None, typer.Argument(help="A list (default: all lists).")] = None,
) -> None:
    """Lists with their entry counts; with NAME, also its latest imports."""
    with _lists() as lists:
        if name is None:
            for info in lists.all():
                _out(info.to_json())
            return
        d = lists.info(name).to_json()
        d["imports"] = lists.imports(name, limit=10)
        _out(d)


@list_app.command("delete")
def list_delete(name: str) -> None:
    """Delete a list and its entries."""
    with _lists() as lists:
        lists.delete(name)
        _out({"deleted": name})


# ------------------------------------------------------------------------------------- rules
@rules_app.command("check")
def rules_check(
    file: Annotated[
        Path | None, typer.Argument(help="Rules file (default: the shipped one).")
    ] = None,
) -> None:
    """Validate a rules file; print each enabled rule, or every problem with its line."""
    try:
        rs = load_rules(file)
    except RulesError as e:
        for line, fld, msg in e.problems:
            typer.echo(
                f"{e.source}:{line}: {fld}: {msg}" if line else f"{e.source}: {fld}: {msg}",
                err=True,
            )
        raise typer.Exit(2) from None
    for r in rs.rules:
        d: dict[str, Any] = {"id": r.id, "kind": r.kind}
        if isinstance(r, RiskRule):
            d["thresholds"] = [(t.at, t.action) for t in r.thresholds]
        else:
            d["action"] = r.action
            if isinstance(r, RateRule):
                d["max_recipients"], d["window_s"] = r.max_recipients, r.window
        _out(d)


@rules_app.command("replay")
def rules_replay(
    events: Annotated[Path, typer.Argument(help="JSON Lines, one event a line.")],
    rules: Annotated[Path | None, typer.Option(help="Rules file (default: shipped).")] = None,
    snapshot: Annotated[Path | None, typer.Option(help="Write the final state here.")] = None,
) -> None:
    """Feed events to a fresh engine and print what they trigger (findings as JSON lines)."""
    try:
        engine = Engine(load_rules(rules))
    except RulesError as e:
        _fail(e.message, e.code)
        raise
    try:
        with open(events, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    ev = parse_event(json.loads(line))
                except (ValueError, InvalidEvent) as e:
                    msg = e.message if isinstance(e, InvalidEvent) else f"not JSON: {e}"
                    _fail(f"{events}:{n}: {msg}", "invalid_event")
                    raise
                for finding in engine.apply(ev):
                    _out(finding.to_json())
    except OSError as e:
        _fail(f"{events}: {e.strerror or e}")
    if snapshot is not None:
        write_snapshot(snapshot, engine.snapshot())
    typer.echo(json.dumps(engine.stats()), err=True)


# -------------------------------------------------------------------------------------- scan
def scan_cmd(text: Annotated[str, typer.Argument(help="Message text ('-': stdin).")]) -> None:
    """URLs and keywords of the stored lists found in TEXT."""
    if text == "-":
        text = sys.stdin.read()
    with _lists() as lists:
        urls, kws = lists.load_matchers()
        _out(
            {
                "urls": [m.to_json() for m in urls.match_text(text)],
                "keywords": [m.to_json() for m in kws.match_text(text)],
            }
        )


# ------------------------------------------------------------------------------ conversation
_HEADS = {
    "full": ScoringConfig(),
    "lite": ScoringConfig(embedding="off"),
    "rules": ScoringConfig.v3(),
}


def conversation_cmd(
    path: Annotated[
        str,
        typer.Argument(
            help="JSONL, one conversation a line: {id, participants, messages: [{id, sender, "
            "text}]} ('-': stdin). Labels (flag, kind, per-message tactics) enable --report."
        ),
    ],
    head: Annotated[
        str, typer.Option(help="full (embedding when installed), lite, or rules (v3 as shipped).")
    ] = "full",
    show_report: Annotated[
        bool, typer.Option("--report", help="Print recall / false flags (needs labels).")
    ] = False,
) -> None:
    """Score conversations: one JSON result a line (score, flag, tactics, evidence ids). Bad lines
    are reported with their line number and the command exits 1; the others are still scored."""
    if head not in _HEADS:
        _fail(f"--head: expected one of {', '.join(_HEADS)}, got {head!r}")
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"{path}: {e}")
    cfg = _HEADS[head]
    rows: list[dict[str, Any]] = []
    bad = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            conv = json.loads(line)
            if not isinstance(conv, dict) or not isinstance(conv.get("messages"), list):
                raise InvalidConversation("expected an object with a 'messages' list")
            (row,) = run(
                [conv], lambda c: ConversationScorer(c.get("participants", []), config=cfg)
            )
        except (ValueError, LifeguardError) as e:
            bad += 1
            typer.echo(f"line {n}: {e}", err=True)
            continue
        _out({"id": conv.get("id", f"line {n}"), "line": n, **row["final"].to_json()})
        rows.append(row)
    if show_report:
        labelled = [r for r in rows if "flag" in r["conv"] and "kind" in r["conv"]]
        if labelled:
            typer.echo(format_report(report(labelled)), err=True)
        else:
            typer.echo("--report: no conversation carries 'flag' and 'kind' labels", err=True)
    if bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``list``, ``rules`` and ``scan`` under ``lifeguard safety`` (the group is created when
    no other room made it)."""
    group = next(
        (
            g.typer_instance
            for g in app.registered_groups
            if g.name == "safety" and g.typer_instance
        ),
        None,
    )
    if group is None:
        group = safety_app
        app.add_typer(safety_app, name="safety")
    group.add_typer(list_app, name="list")
    group.add_typer(rules_app, name="rules")
    group.command("scan")(scan_cmd)
    group.command("conversation")(conversation_cmd)
