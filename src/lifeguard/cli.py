"""``lifeguard`` command line: hash, banks and entries, match, scan, index."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lifeguard.errors import LifeguardError, MediaError
from lifeguard.settings import Settings, get_settings
from lifeguard.signals.hasher import MediaHashes, hash_file, iter_media

app = typer.Typer(help="lifeguard: hash media, keep hash banks, match fast.", no_args_is_help=True)
bank_app = typer.Typer(
    help="Hash banks: create, list, show, import, export, disable, delete.", no_args_is_help=True
)
entry_app = typer.Typer(
    help="Bank entries: add (a hash or a media file), disable, enable, remove.",
    no_args_is_help=True,
)
index_app = typer.Typer(help="The in-memory index snapshot.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")
app.add_typer(entry_app, name="entry")
app.add_typer(index_app, name="index")

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="jsonl or table")]
VariantsOpt = Annotated[bool, typer.Option(help="Look up dihedral and trimmed variants too.")]
RecordOpt = Annotated[
    bool,
    typer.Option(help="Record match events (content id = path) and queue the banks' webhooks."),
]


def _settings() -> Settings:
    return get_settings()


def _fail(e: LifeguardError) -> None:
    err.print(f"[red]error[/red] ({e.code}): {e.message}")
    raise typer.Exit(2)


def _check_format(fmt: str) -> str:
    if fmt not in ("jsonl", "table"):
        err.print(f"[red]error[/red]: --format must be jsonl or table, not {fmt!r}")
        raise typer.Exit(2)
    return fmt


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _error_record(path: Path, e: MediaError) -> dict[str, Any]:
    return {"path": str(path), "error": {"code": e.code, "message": e.message}}


def _hash_all(
    paths: list[Path], settings: Settings, *, query_variants: bool = False
) -> Iterator[tuple[Path, MediaHashes | MediaError]]:
    for p in iter_media(paths):
        try:
            yield p, hash_file(p, settings, query_variants=query_variants)
        except MediaError as e:
            yield p, e


# ---------------------------------------------------------------------------------------------- hash
@app.command("hash")
def hash_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (folders recurse).")],
    fmt: FormatOpt = "jsonl",
    variants: Annotated[
        bool, typer.Option(help="Also print the query variants (dihedral, trimmed).")
    ] = False,
) -> None:
    """Hash media: one JSON object per file (path, pdq, quality, md5, sha256, ... or error)."""
    _check_format(fmt)
    settings = _settings()
    table = Table("path", "kind", "pdq", "quality", "md5", "note")
    failed = 0
    for p, res in _hash_all(paths, settings, query_variants=variants):
        if isinstance(res, MediaError):
            failed += 1
            if fmt == "jsonl":
                sys.stdout.write(json.dumps(_error_record(p, res)) + "\n")
            else:
                table.add_row(str(p), "-", "-", "-", "-", f"[red]{res.code}: {res.message}[/red]")
            continue
        if fmt == "jsonl":
            sys.stdout.write(json.dumps(res.to_json()) + "\n")
        else:
            note = "low quality" if res.low_quality else ""
            if res.kind == "video":
                note = f"{len(res.vpdq)} vPDQ frames"
            table.add_row(
                str(p),
                res.kind,
                res.pdq or "-",
                str(res.quality if res.quality is not None else "-"),
                res.md5,
                note,
            )
    if fmt == "table":
        out.print(table)
    if failed:
        err.print(f"{failed} file(s) could not be hashed")


# ---------------------------------------------------------------------------------------------- match
def _open_matcher(settings: Settings) -> Any:
    from lifeguard.matching import Matcher
    from lifeguard.store.db import Database

    db = Database.open(settings)
    m = Matcher(db, settings)
    m.load()
    return m


def _match_record(
    p: Path, res: MediaHashes | MediaError, matcher: Any, variants: bool, record: bool = False
) -> dict[str, Any]:
    if isinstance(res, MediaError):
        return _error_record(p, res)
    r = matcher.match_media(res, variants=variants)
    if record:  # no-op (no database write) when nothing matched
        from lifeguard.actions import record_match

        record_match(matcher.db, r, str(p), res)
    rec: dict[str, Any] = {
        "path": str(p),
        "kind": res.kind,
        "pdq": res.pdq,
        "quality": res.quality,
        "md5": res.md5,
    }
    rec.update(r.to_json())
    return rec


def _match_table(records: list[dict[str, Any]]) -> Table:
    t = Table("path", "result", "bank", "entry", "distance", "variant")
    for rec in records:
        if "error" in rec:
            t.add_row(
                rec["path"],
                f"[red]error: {rec['error']['code']}[/red]",
                "",
                "",
                "",
                rec["error"]["message"],
            )
            continue
        ms = rec["matches"]
        if not ms:
            label = "[yellow]suppressed[/yellow]" if rec["suppressed"] else "no match"
            if rec.get("low_quality"):
                label += " (low quality)"
            t.add_row(rec["path"], label, "", "", "", "")
        for i, m in enumerate(ms):
            t.add_row(
                rec["path"] if i == 0 else "",
                "[bold red]MATCH[/bold red]" if i == 0 else "",
                m["bank"],
                m["external_id"] or str(m["entry_id"]),
                str(m["distance"]),
                m["variant"]
                + (
                    ""
                    if m["variant"] in ("plain", "exact")
                    else f" ({m['query_variant']}/{m['listed_variant']})"
                ),
            )
    return t


@app.command("match")
def match_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (folders recurse).")],
    fmt: FormatOpt = "jsonl",
    variants: VariantsOpt = True,
    record: RecordOpt = False,
) -> None:
    """Match media against the banks: matched banks, entries, distances and which variant matched."""
    _check_format(fmt)
    settings = _settings()
    matcher = _open_matcher(settings)
    records = []
    for p, res in _hash_all(paths, settings, query_variants=variants):
        rec = _match_record(p, res, matcher, variants, record)
        if fmt == "jsonl":
            sys.stdout.write(json.dumps(rec) + "\n")
            sys.stdout.flush()
        else:
            records.append(rec)
    if fmt == "table":
        out.print(_match_table(records))


@app.command("scan")
def scan_cmd(
    directory: Annotated[Path, typer.Argument(help="Folder to backfill (recurses).")],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="JSONL report; an existing one is resumed.")
    ],
    variants: VariantsOpt = True,
    record: RecordOpt = False,
) -> None:
    """Local backfill with progress. Interrupted, it resumes: files already in the report are skipped."""
    settings = _settings()
    if not directory.is_dir():
        err.print(f"[red]error[/red]: {directory} is not a folder")
        raise typer.Exit(2)
    done = _resume_report(out_path)
    files = [p for p in iter_media([directory]) if str(p) not in done]
    matcher = _open_matcher(settings)
    matched = errors = 0
    with out_path.open("a", encoding="utf-8") as f, _progress(err) as progress:
        task = progress.add_task(
            f"scanning {directory}", total=len(files) + len(done), completed=len(done)
        )
        for p in files:
            try:
                res: MediaHashes | MediaError = hash_file(p, settings, query_variants=variants)
            except MediaError as e:
                res = e
            rec = _match_record(p, res, matcher, variants, record)
            matched += bool(rec.get("matched"))
            errors += "error" in rec
            f.write(json.dumps(rec) + "\n")
            f.flush()
            progress.advance(task)
    err.print(
        f"scanned {len(files)} file(s) ({len(done)} already in {out_path}): {matched} matched, {errors} error(s)"
    )


def _resume_report(path: Path) -> set[str]:
    """Paths already scanned. A torn last line (crash mid-write) is cut off so the report stays valid."""
    if not path.exists():
        return set()
    done: set[str] = set()
    good_bytes = 0
    with path.open("rb") as f:
        for raw in f:
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                break
            if not raw.endswith(b"\n"):
                break
            done.add(str(rec["path"]))
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return done


# ---------------------------------------------------------------------------------------------- banks
def _banks(settings: Settings | None = None) -> Any:
    from lifeguard.banks import Banks
    from lifeguard.store.db import Database

    return Banks(Database.open(settings or _settings()))


def _bank_json(b: Any) -> dict[str, Any]:
    return {
        "id": b.id,
        "name": b.name,
        "description": b.description,
        "kind": b.kind,
        "enabled": b.enabled,
        "match_threshold": b.match_threshold,
        "match_variants": getattr(b, "match_variants", True),
        "categories": list(b.categories),
        "supplier": b.supplier,
        "created_at": b.created_at.isoformat(),
        "updated_at": b.updated_at.isoformat(),
        "entries": dict(b.entry_counts),
    }


@bank_app.command("create")
def bank_create(
    name: Annotated[
        str, typer.Argument(help="Bank name, e.g. KNOWN_MATERIAL (letters, digits, _).")
    ],
    kind: Annotated[
        str,
        typer.Option(help="block (matches act) or allow (known false positives suppress matches)"),
    ] = "block",
    description: Annotated[str, typer.Option(help="What the bank holds and why.")] = "",
    threshold: Annotated[int, typer.Option(help="PDQ match distance, 0..31.")] = 31,
    category: Annotated[
        list[str] | None, typer.Option("--category", "-c", help="Category label (repeat), e.g. A1.")
    ] = None,
    supplier: Annotated[str, typer.Option(help="Who supplies the list.")] = "",
    variants: Annotated[
        bool, typer.Option(help="Count matches through dihedral/trimmed/region variants.")
    ] = True,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
) -> None:
    """Create a bank."""
    try:
        b = _banks().create_bank(
            name, kind=kind, description=description, match_threshold=threshold,
            categories=category or [], supplier=supplier, enabled=not disabled, match_variants=variants,
        )  # fmt: skip
    except LifeguardError as e:
        _fail(e)
    out.print(f"created bank [bold]{b.name}[/bold] (id {b.id}, {b.kind} list)")


@bank_app.command("list")
def bank_list(fmt: FormatOpt = "table") -> None:
    """List banks with entry counts."""
    _check_format(fmt)
    banks = _banks().list_banks()
    if fmt == "jsonl":
        for b in banks:
            sys.stdout.write(json.dumps(_bank_json(b)) + "\n")
        return
    t = Table(
        "name",
        "kind",
        "enabled",
        "threshold",
        "categories",
        "active",
        "disabled",
        "removed",
        "supplier",
    )
    for b in banks:
        c = b.entry_counts
        t.add_row(
            b.name, b.kind, "yes" if b.enabled else "[yellow]no[/yellow]", str(b.match_threshold),
            ",".join(b.categories), f"{c.get('active', 0):,}", f"{c.get('disabled', 0):,}",
            f"{c.get('removed', 0):,}", b.supplier,
        )  # fmt: skip
    out.print(t)


@bank_app.command("show")
def bank_show(name: str) -> None:
    """Show one bank (JSON)."""
    try:
        out.print_json(data=_bank_json(_banks().get_bank(name)))
    except LifeguardError as e:
        _fail(e)


def _set_enabled(name: str, enabled: bool) -> None:
    try:
        b = _banks().update_bank(name, enabled=enabled)
    except LifeguardError as e:
        _fail(e)
    out.print(f"bank {b.name} {'enabled' if b.enabled else 'disabled'}")


@bank_app.command("disable")
def bank_disable(name: str) -> None:
    """Stop matching a bank's entries (kept)."""
    _set_enabled(name, False)


@bank_app.command("enable")
def bank_enable(name: str) -> None:
    """Match a disabled bank again."""
    _set_enabled(name, True)


@bank_app.command("delete")
def bank_delete(
    name: str,
    reason: Annotated[str, typer.Option(help="Why (kept for audit).")] = "",
    by: Annotated[str, typer.Option(help="Who.")] = "",
) -> None:
    """Delete a bank: its entries become tombstones (kept for audit) and stop matching."""
    try:
        b = _banks().delete_bank(name, by=by, reason=reason)
    except LifeguardError as e:
        _fail(e)
    out.print(f"deleted bank {name} ({b.entry_counts.get('removed', 0):,} entries tombstoned)")


@bank_app.command("import")
def bank_import(
    name: str,
    path: Annotated[Path, typer.Argument(help="File to import (.gz ok).")],
    format: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="plain, te, csv, tsv, jsonl, hma, json (default: detect)"
        ),
    ] = None,
    signal_type: Annotated[
        str | None, typer.Option(help="Signal type for rows that do not say (plain lists).")
    ] = None,
    source: Annotated[str, typer.Option(help="Provenance: the list this came from.")] = "",
    added_by: Annotated[str, typer.Option(help="Provenance: who imports.")] = "",
    rejections: Annotated[
        Path | None, typer.Option(help="Write every rejected line (number, reason) as JSONL here.")
    ] = None,
) -> None:
    """Import a hash list: streamed, atomic, idempotent; every rejected line reported."""
    from lifeguard.banks import import_entries

    if not path.is_file():
        err.print(f"[red]error[/red]: no such file: {path}")
        raise typer.Exit(2)
    banks = _banks()
    total = path.stat().st_size
    try:
        with _progress(err) as progress:
            task = progress.add_task(f"importing {path.name}", total=total)
            res = import_entries(
                banks, name, path, format=format, signal_type=signal_type, source_label=source,
                added_by=added_by, progress=lambda _lines, nbytes: progress.update(task, completed=min(nbytes, total)),
            )  # fmt: skip
            progress.update(task, completed=total)
    except LifeguardError as e:
        _fail(e)
    out.print(
        f"{res.lines:,} lines ({res.format}): [green]{res.added:,} added[/green], {res.duplicates:,} already listed, "
        f"[{'red' if res.rejected else 'green'}]{res.rejected:,} rejected[/] (import job {res.job_id})"
    )
    if res.rejected:
        for r in res.rejections[:20]:
            err.print(f"  line {r.line_no}: {r.reason}")
        if res.rejected > 20:
            err.print(f"  ... {res.rejected - 20:,} more")
        if rejections is not None:
            with rejections.open("w", encoding="utf-8") as f:
                after = 0
                while True:
                    page = banks.import_rejections(res.job_id, after_line=after, limit=10_000)
                    if not page:
                        break
                    for r in page:
                        f.write(
                            json.dumps({"line": r.line_no, "reason": r.reason, "text": r.text})
                            + "\n"
                        )
                    after = page[-1].line_no
            err.print(f"  all rejections written to {rejections}")


@bank_app.command("export")
def bank_export(
    name: str,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="File (.gz ok); default standard output.")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="plain, te, csv, tsv, jsonl, hma, json")
    ] = None,
    include_disabled: Annotated[bool, typer.Option(help="Also disabled entries.")] = False,
    include_removed: Annotated[bool, typer.Option(help="Also tombstones.")] = False,
) -> None:
    """Export a bank with provenance (streamed)."""
    from lifeguard.banks import export_bank

    try:
        res = export_bank(
            _banks(), name, out_path if out_path is not None else sys.stdout,
            format=format if format or out_path is not None else "jsonl",
            include_disabled=include_disabled, include_removed=include_removed,
        )  # fmt: skip
    except LifeguardError as e:
        _fail(e)
    if out_path is not None:
        err.print(f"exported {res.rows:,} entries to {out_path}")


# ---------------------------------------------------------------------------------------------- entries
def _entry_json(e: Any) -> dict[str, Any]:
    return {
        "id": e.id, "bank_id": e.bank_id, "signal_type": e.signal_type, "value": e.value,
        "quality": e.quality, "status": e.status, "external_id": e.external_id, "source": e.source,
        "added_by": e.added_by, "added_at": e.added_at.isoformat(), "note": e.note,
        "categories": list(e.categories), "variants": dict(e.variants),
    }  # fmt: skip


@entry_app.command("add")
def entry_add(
    bank: str,
    signal: Annotated[
        list[str] | None,
        typer.Option("--signal", "-s", help="TYPE:VALUE, e.g. pdq:f8f8... (repeat)"),
    ] = None,
    media: Annotated[
        list[Path] | None,
        typer.Option("--media", "-m", help="Media file(s) to hash and list (repeat)."),
    ] = None,
    external_id: Annotated[str, typer.Option(help="The supplier's id for this item.")] = "",
    note: Annotated[str, typer.Option()] = "",
    source: Annotated[str, typer.Option(help="Provenance: where this came from.")] = "",
    added_by: Annotated[str, typer.Option()] = "",
    category: Annotated[list[str] | None, typer.Option("--category", "-c")] = None,
) -> None:
    """Add entries: raw signals, or media files (PDQ with its listing variants, plus MD5)."""
    from lifeguard.banks.media import add_media

    banks = _banks()
    settings = _settings()
    if not signal and not media:
        err.print("[red]error[/red]: give --signal TYPE:VALUE or --media PATH")
        raise typer.Exit(2)
    failed = 0
    common: dict[str, Any] = dict(
        external_id=external_id,
        note=note,
        source=source,
        added_by=added_by,
        categories=category or [],
    )
    for raw in signal or []:
        stype, sep, value = raw.partition(":")
        try:
            if not sep:
                raise LifeguardError(
                    f"--signal must be TYPE:VALUE, got {raw!r}", code="invalid_signal"
                )
            r = banks.add_entry(bank, stype, value, **common)
            out.print(
                f"{'added' if r.created else 'already listed'}: entry {r.entry.id} {r.entry.signal_type} {r.entry.value}"
            )
        except LifeguardError as e:
            failed += 1
            err.print(f"[red]error[/red] ({e.code}) {raw}: {e.message}")
    for p in media or []:
        try:
            results = add_media(banks, bank, p, settings, **common)
            for r in results:
                out.print(
                    f"{'added' if r.created else 'already listed'}: entry {r.entry.id} {r.entry.signal_type} {r.entry.value[:64]} ({p})"
                )
        except LifeguardError as e:
            failed += 1
            err.print(f"[red]error[/red] ({e.code}) {p}: {e.message}")
    if failed:
        raise typer.Exit(1)


def _entry_status(entry_id: int, action: str, reason: str, by: str) -> None:
    banks = _banks()
    try:
        fn = {
            "disable": banks.disable_entry,
            "enable": banks.enable_entry,
            "remove": banks.remove_entry,
        }[action]
        e = fn(entry_id, by=by, reason=reason)
    except LifeguardError as ex:
        _fail(ex)
    out.print(f"entry {e.id}: {e.status}")


@entry_app.command("disable")
def entry_disable(
    entry_id: int,
    reason: Annotated[str, typer.Option()] = "",
    by: Annotated[str, typer.Option()] = "",
) -> None:
    """Keep the entry but stop matching it."""
    _entry_status(entry_id, "disable", reason, by)


@entry_app.command("enable")
def entry_enable(
    entry_id: int,
    reason: Annotated[str, typer.Option()] = "",
    by: Annotated[str, typer.Option()] = "",
) -> None:
    """Match a disabled entry again."""
    _entry_status(entry_id, "enable", reason, by)


@entry_app.command("remove")
def entry_remove(
    entry_id: int,
    reason: Annotated[str, typer.Option()] = "",
    by: Annotated[str, typer.Option()] = "",
) -> None:
    """Remove an entry (a tombstone is kept for audit)."""
    _entry_status(entry_id, "remove", reason, by)


@entry_app.command("show")
def entry_show(entry_id: int) -> None:
    """Show one entry with provenance (JSON)."""
    try:
        out.print_json(data=_entry_json(_banks().get_entry(entry_id)))
    except LifeguardError as e:
        _fail(e)


# ---------------------------------------------------------------------------------------------- index
@index_app.command("build")
def index_build() -> None:
    """Build the index from the database and save a snapshot (loaded at start, then kept in step)."""
    from lifeguard.matching import Matcher
    from lifeguard.store.db import Database

    settings = _settings()
    m = Matcher(Database.open(settings), settings)
    m.load(use_snapshot=False)
    d = m.save_snapshot()
    out.print(
        f"index snapshot at revision {m.revision}: {len(m.pdq):,} PDQ items (plain + listing variants), {len(m.md5):,} MD5, {len(m.sha256):,} SHA-256 -> {d}"
    )


@index_app.command("status")
def index_status() -> None:
    """Show what the index holds and how far behind the database a snapshot is."""
    from lifeguard.matching import Matcher
    from lifeguard.store.db import Database

    settings = _settings()
    m = Matcher(Database.open(settings), settings)
    meta = settings.index_dir / "meta.json"
    snap = json.loads(meta.read_text()) if meta.exists() else None
    m.load()
    out.print_json(
        data={
            "revision": m.revision,
            "snapshot_revision": snap["revision"] if snap else None,
            "pdq_items": len(m.pdq),
            "md5": len(m.md5),
            "sha256": len(m.sha256),
            "banks": len(m.banks),
        }
    )


def _register_rooms() -> None:
    """Commands that live with their rooms: the HTTP service (serve, key), actions (worker, rules,
    deliveries, events), audit log and evidence vault."""
    from lifeguard.actions.cli_commands import register as register_actions
    from lifeguard.api.cli_commands import key_app, serve_cmd
    from lifeguard.reports.cli_commands import audit_app, evidence_app

    app.command("serve")(serve_cmd)
    app.add_typer(key_app, name="key")
    register_actions(app)
    app.add_typer(audit_app, name="audit")
    app.add_typer(evidence_app, name="evidence")
    from lifeguard.review.web.cli import reviewer_app

    app.add_typer(reviewer_app, name="reviewer")
    from lifeguard.review.cli_commands import register as register_review

    register_review(app)
    from lifeguard.safety.cli_commands import register as register_safety

    register_safety(app)


_register_rooms()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
