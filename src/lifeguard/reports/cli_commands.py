"""``lifeguard audit ...`` and ``lifeguard evidence ...`` (Typer sub-apps; cli.py registers them:
``app.add_typer(audit_app, name="audit")`` and ``app.add_typer(evidence_app, name="evidence")``)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lifeguard.errors import LifeguardError
from lifeguard.settings import get_settings
from lifeguard.store.db import Database

audit_app = typer.Typer(
    help="Tamper-evident audit log: verify, list, export, checkpoint.", no_args_is_help=True
)
evidence_app = typer.Typer(
    help="Encrypted evidence vault: put, get, list, hold, release, purge, rewrap, keygen.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _db() -> Database:
    return Database.open(get_settings())


def _fail(e: LifeguardError) -> typer.Exit:
    err.print(f"[red]error[/] ({e.code}): {e.message}")
    return typer.Exit(2)


# --------------------------------------------------------------------------- audit


@audit_app.command("verify")
def audit_verify(
    checkpoint_file: Annotated[
        Path | None, typer.Option(help="Also check checkpoints kept in this JSON-lines file.")
    ] = None,
    require_key: Annotated[
        bool, typer.Option(help="Fail if no checkpoint HMAC key is configured.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Walk the hash chain; exit 1 on the first tampered record (exit 2 on bad configuration)."""
    from lifeguard.reports.audit import verify

    try:
        res = verify(_db(), checkpoint_file=checkpoint_file, require_checkpoints=require_key)
    except LifeguardError as e:
        raise _fail(e) from None
    if as_json:
        print(json.dumps(res.to_dict(), indent=2))
    elif res.ok:
        console.print(
            f"[green]ok[/]: {res.records:,} records, head seq {res.head_seq} "
            f"{res.head_hash[:16]}…, {res.checkpoints_checked} checkpoints checked"
        )
    else:
        console.print(f"[red]TAMPERED[/] at seq {res.seq} ({res.kind}): {res.reason}")
    for w in res.warnings:
        err.print(f"[yellow]warning[/]: {w}")
    if not res.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(
    file: Annotated[
        Path | None, typer.Option(help="Also append the checkpoint to this JSON-lines file.")
    ] = None,
) -> None:
    """Verify the chain, then sign its head with the HMAC key (LIFEGUARD_AUDIT_HMAC_KEY[_FILE])."""
    from lifeguard.reports.audit import checkpoint, verify

    db = _db()
    try:
        res = verify(db, checkpoint_file=file, require_checkpoints=True)
        if not res.ok:
            err.print(f"[red]not checkpointing[/]: seq {res.seq} ({res.kind}): {res.reason}")
            raise typer.Exit(1)
        cp = checkpoint(db, file=file)
    except LifeguardError as e:
        raise _fail(e) from None
    console.print(f"checkpoint: seq {cp.seq} {cp.hash} (key {cp.key_id})")


@audit_app.command("list")
def audit_list(
    after: Annotated[int, typer.Option(help="Only records with seq greater than this.")] = 0,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    subject: Annotated[
        str | None, typer.Option(help="Only this subject, as TYPE:ID (e.g. evidence:ab12...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Show records as a table."""
    from lifeguard.reports.audit import format_time, iter_records

    st, sid = _subject(subject)
    t = Table("seq", "time", "actor", "action", "subject", "details")
    with _db().read_session() as s:
        for n, r in enumerate(
            iter_records(s, after_seq=after, action=action, subject_type=st, subject_id=sid)
        ):
            if n >= limit:
                break
            t.add_row(
                str(r.seq),
                format_time(r.time),
                r.actor,
                r.action,
                f"{r.subject_type}:{r.subject_id}",
                r.details_json,
            )
    console.print(t)


@audit_app.command("export")
def audit_export(
    out: Annotated[
        Path | None, typer.Option(help="Write JSON lines here (default stdout).")
    ] = None,
    after: Annotated[int, typer.Option(help="Only records with seq greater than this.")] = 0,
    actor: Annotated[str, typer.Option(help="Who exports (the export is itself audited).")] = "cli",
) -> None:
    """Export records as JSON lines (with hashes, so the copy can be re-verified)."""
    from lifeguard.reports.audit import append, iter_records, record_to_dict

    db = _db()
    n = 0
    f = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        with db.read_session() as s:
            for r in iter_records(s, after_seq=after):
                f.write(json.dumps(record_to_dict(r), ensure_ascii=False, sort_keys=True) + "\n")
                n += 1
    finally:
        if out:
            f.close()
    append(
        db,
        actor=actor,
        action="audit.export",
        subject_type="audit_log",
        subject_id="",
        details={"after_seq": after, "records": n, "to": str(out) if out else "stdout"},
    )
    err.print(f"{n:,} records exported")


def _subject(subject: str | None) -> tuple[str | None, str | None]:
    if subject is None:
        return None, None
    if ":" not in subject:
        raise typer.BadParameter("use TYPE:ID", param_hint="--subject")
    a, b = subject.split(":", 1)
    return a, b


# --------------------------------------------------------------------------- evidence


@evidence_app.command("keygen")
def evidence_keygen() -> None:
    """Print a new random master key (base64); put it first in the key file to rotate."""
    from lifeguard.reports.evidence import generate_key

    print(generate_key())


@evidence_app.command("put")
def evidence_put(
    path: Annotated[Path, typer.Argument(help="File to store.", exists=True, dir_okay=False)],
    case: Annotated[str, typer.Option(help="Case id.")],
    actor: Annotated[str, typer.Option(help="Who stores it.")],
    content_id: Annotated[str, typer.Option(help="Content id on the platform.")] = "",
    media_type: Annotated[str, typer.Option()] = "application/octet-stream",
    retention_days: Annotated[int, typer.Option(min=1)] = 365,
) -> None:
    """Encrypt a file into the vault (the original file is left alone)."""
    from lifeguard.reports.evidence import EvidenceVault

    v = EvidenceVault.from_settings(_db(), get_settings())
    try:
        info = v.put(
            case,
            path.read_bytes(),
            actor=actor,
            content_id=content_id,
            media_type=media_type,
            metadata={"filename": path.name},
            retention=dt.timedelta(days=retention_days),
        )
    except LifeguardError as e:
        raise _fail(e) from None
    console.print(
        f"{info.id}  sha256 {info.sha256}  retained until {info.retention_until:%Y-%m-%d}"
    )


@evidence_app.command("get")
def evidence_get(
    item_id: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option(help="Write the decrypted content here (must not exist).")],
    actor: Annotated[str, typer.Option(help="Who reveals it (audited).")],
    reason: Annotated[str, typer.Option(help="Why (audited).")] = "",
) -> None:
    """Decrypt one item to a new file (audited as evidence.export)."""
    from lifeguard.reports.evidence import EvidenceVault

    v = EvidenceVault.from_settings(_db(), get_settings())
    try:
        info = v.export(item_id, out, actor=actor, reason=reason)
    except LifeguardError as e:
        raise _fail(e) from None
    console.print(f"wrote {info.size:,} bytes to {out}")


@evidence_app.command("list")
def evidence_list(
    case: Annotated[str | None, typer.Option(help="Only this case.")] = None,
) -> None:
    """List items (index data only; nothing is decrypted)."""
    from lifeguard.reports.evidence import EvidenceVault

    v = EvidenceVault.from_settings(_db(), get_settings())
    t = Table("id", "case", "sha256", "size", "media type", "retain until", "hold")
    for i in v.list(case):
        t.add_row(
            i.id,
            i.case_id,
            i.sha256[:16] + "…",
            f"{i.size:,}",
            i.media_type,
            f"{i.retention_until:%Y-%m-%d}",
            i.hold_reason if i.legal_hold else "",
        )
    console.print(t)


@evidence_app.command("hold")
def evidence_hold(
    item_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why (e.g. the legal request reference).")],
    actor: Annotated[str, typer.Option()],
) -> None:
    """Put an item on legal hold (purge skips it)."""
    from lifeguard.reports.evidence import EvidenceVault

    try:
        EvidenceVault.from_settings(_db(), get_settings()).hold(item_id, reason, actor=actor)
    except LifeguardError as e:
        raise _fail(e) from None
    console.print(f"{item_id}: on legal hold")


@evidence_app.command("release")
def evidence_release(
    item_id: Annotated[str, typer.Argument()],
    actor: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option()] = "",
) -> None:
    """Release a legal hold (the item is purged once its retention has passed)."""
    from lifeguard.reports.evidence import EvidenceVault

    try:
        EvidenceVault.from_settings(_db(), get_settings()).release(
            item_id, actor=actor, reason=reason
        )
    except LifeguardError as e:
        raise _fail(e) from None
    console.print(f"{item_id}: hold released")


@evidence_app.command("purge")
def evidence_purge(
    actor: Annotated[str, typer.Option()] = "system:retention",
) -> None:
    """Delete items past retention and not on hold (each deletion audited)."""
    from lifeguard.reports.evidence import purge

    s = get_settings()
    ids = purge(_db(), root=s.data_dir / "evidence", actor=actor)
    console.print(f"{len(ids)} items deleted")


@evidence_app.command("rewrap")
def evidence_rewrap(actor: Annotated[str, typer.Option()] = "cli") -> None:
    """Re-wrap every data key under the current (first) master key."""
    from lifeguard.reports.evidence import EvidenceVault

    try:
        n = EvidenceVault.from_settings(_db(), get_settings()).rewrap(actor=actor)
    except LifeguardError as e:
        raise _fail(e) from None
    console.print(f"{n} items re-wrapped")
