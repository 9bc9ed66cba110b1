"""Streaming, atomic, idempotent bank imports.

* Streams: lines are read one at a time and inserted in batches (``INSERT ... ON CONFLICT DO
  NOTHING RETURNING`` through the dialect's insert, SQLite and PostgreSQL), so memory does not
  grow with the file.
* Atomic: the whole import is one transaction; an error (or a killed process) leaves nothing.
* Idempotent: entries the bank already has (any status) are counted as duplicates and left alone;
  a tombstoned (removed) entry stays removed (counted in ``tombstoned``) so a re-imported supplier
  list does not resurrect what an operator removed. ``Banks.add_entry`` re-activates instead.
* Every rejected line is stored (ImportRejection) and returned with its line number and reason.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from lifeguard.banks.formats import (
    FORMATS,
    LineReader,
    Record,
    Reject,
    base_name,
    clip,
    detect_format,
    read_records,
    resolve_signal_type,
)
from lifeguard.banks.service import (
    MAX_NOTE,
    MAX_SHORT,
    Banks,
    InvalidField,
    Rejection,
    aware,
    validate_labels,
    validate_quality,
    validate_status,
    validate_text,
    validate_variants,
)
from lifeguard.errors import ImportFormatError, InvalidSignal
from lifeguard.signals.base import get_signal_type
from lifeguard.store.db import bump_revision
from lifeguard.store.models import Entry, ImportJob, ImportRejection, utcnow

ProgressFn = Callable[[int, int], None]
DEFAULT_BATCH = 5000


@dataclass(frozen=True)
class ImportResult:
    job_id: int
    bank_id: int
    format: str
    source_name: str
    #: Physical lines read.
    lines: int
    added: int
    #: Signals the bank already had (including ones repeated within the file).
    duplicates: int
    #: Of the duplicates, how many matched a removed entry (left removed).
    tombstoned: int
    rejected: int
    #: The first ``max_rejections`` rejections (all are stored; page with
    #: ``Banks.import_rejections(job_id)``).
    rejections: tuple[Rejection, ...]
    #: The revision stamped on the added entries.
    rev: int


class _Validator:
    """Turns a raw :class:`Record` into an insertable row, or a reason it cannot be."""

    def __init__(self, added_by: str, source: str, categories: list[str]) -> None:
        self.added_by = added_by
        self.source = source
        self.categories = categories
        self._types: dict[str, str | InvalidSignal] = {}
        self.now = utcnow()

    def signal_type(self, raw: str) -> str:
        got = self._types.get(raw)
        if got is None:
            try:
                got = resolve_signal_type(raw)
            except InvalidSignal as e:
                got = e
            self._types[raw] = got
        if isinstance(got, InvalidSignal):
            raise got
        return got

    def row(self, rec: Record, bank_id: int, rev: int) -> dict[str, Any]:
        if rec.signal_type is None or rec.signal_type == "":
            raise InvalidField("missing signal type")
        if not isinstance(rec.signal_type, str):
            raise InvalidField(f"signal type: expected a string, got {rec.signal_type!r}")
        if rec.value is None or rec.value == "":
            raise InvalidField("missing value")
        if not isinstance(rec.value, str):
            raise InvalidField(f"value: expected a string, got {type(rec.value).__name__}")
        st = self.signal_type(rec.signal_type)
        value = get_signal_type(st).validate(rec.value)
        status = "active" if rec.status in (None, "") else validate_status(rec.status)
        added_by = validate_text(rec.added_by, "added_by") or self.added_by
        added_at = self.now
        if rec.added_at not in (None, ""):
            if not isinstance(rec.added_at, str):
                raise InvalidField(f"added_at: expected an ISO 8601 string, got {rec.added_at!r}")
            try:
                added_at = aware(dt.datetime.fromisoformat(rec.added_at.strip()))
            except ValueError:
                raise InvalidField(f"added_at: {rec.added_at!r} is not an ISO 8601 time") from None
        cats = validate_labels(rec.categories) if rec.categories is not None else []
        for c in self.categories:
            if c not in cats:
                cats.append(c)
        return {
            "bank_id": bank_id,
            "signal_type": st,
            "value": value,
            "quality": validate_quality(rec.quality),
            "source": validate_text(rec.source, "source") or self.source,
            "external_id": validate_text(rec.external_id, "external_id"),
            "added_at": added_at,
            "added_by": added_by,
            "note": validate_text(rec.note, "note", MAX_NOTE),
            "categories": cats,
            "status": status,
            "status_changed_at": None if status == "active" else self.now,
            "status_changed_by": "" if status == "active" else added_by,
            "status_reason": "" if status == "active" else f"imported as {status}",
            "rev": rev,
            "variants": validate_variants(rec.variants),
        }


def _insert_stmt(dialect: str) -> Any:
    table: Any = Entry.__table__
    if dialect == "postgresql":
        ins: Any = pg_insert(table)
    elif dialect == "sqlite":
        ins = sqlite_insert(table)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise ImportFormatError(f"imports need SQLite or PostgreSQL, not {dialect}")
    return ins.on_conflict_do_nothing(index_elements=["bank_id", "signal_type", "value"]).returning(
        table.c.signal_type, table.c.value
    )


_COPY_COLUMNS = (
    "bank_id", "signal_type", "value", "quality", "source", "external_id", "added_at",
    "added_by", "note", "categories", "status", "status_changed_at", "status_changed_by",
    "status_reason", "rev", "variants",
)  # fmt: skip
_COLS = ", ".join(_COPY_COLUMNS)
_STAGE = "lifeguard_import_stage"
_STAGE_DDL = f"""CREATE TEMPORARY TABLE {_STAGE} (
    bank_id integer, signal_type varchar(32), value text, quality integer,
    source varchar(256), external_id varchar(256), added_at timestamptz, added_by varchar(256),
    note text, categories json, status varchar(16), status_changed_at timestamptz,
    status_changed_by varchar(256), status_reason text, rev bigint, variants json
) ON COMMIT DROP"""


class _Run:
    def __init__(self, s: Session, dialect: str, bank_id: int, job_id: int, keep: int) -> None:
        self.s = s
        self.stmt = _insert_stmt(dialect)
        self.bank_id = bank_id
        self.job_id = job_id
        self.keep = keep
        self.batch: dict[tuple[str, str], dict[str, Any]] = {}
        self.rejects: list[dict[str, Any]] = []
        self.kept: list[Rejection] = []
        self.added = self.duplicates = self.tombstoned = self.rejected = 0
        self.pg_stage: str | None = None
        if dialect == "postgresql":
            self.s.execute(text(_STAGE_DDL))
            self.pg_stage = _STAGE

    def reject(self, line_no: int, reason: str, text: str) -> None:
        self.rejected += 1
        self.rejects.append(
            {"job_id": self.job_id, "line_no": line_no, "reason": reason, "text": clip(text)}
        )
        if len(self.kept) < self.keep:
            self.kept.append(Rejection(line_no, reason, clip(text)))

    def add(self, row: dict[str, Any]) -> None:
        key = (row["signal_type"], row["value"])
        if key in self.batch:
            self.duplicates += 1
        else:
            self.batch[key] = row

    def _insert(self, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        if self.pg_stage is None:
            return {(r[0], r[1]) for r in self.s.execute(self.stmt, rows)}
        # PostgreSQL: COPY the batch into a temporary table, then one INSERT ... SELECT ... ON
        # CONFLICT DO NOTHING. Far faster and lighter than a multi-row VALUES statement.
        dbapi = self.s.connection().connection.driver_connection
        assert dbapi is not None
        with dbapi.cursor() as cur:
            with cur.copy(f"COPY {_STAGE} ({_COLS}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(
                        [
                            json.dumps(r[c]) if c in ("categories", "variants") else r[c]
                            for c in _COPY_COLUMNS
                        ]
                    )
            cur.execute(
                f"INSERT INTO entry ({_COLS}) SELECT {_COLS} FROM {_STAGE} "
                "ON CONFLICT (bank_id, signal_type, value) DO NOTHING "
                "RETURNING signal_type, value"
            )
            got = {(r[0], r[1]) for r in cur.fetchall()}
            cur.execute(f"TRUNCATE {_STAGE}")
        return got

    def flush(self) -> None:
        if self.batch:
            rows = list(self.batch.values())
            inserted = self._insert(rows)
            self.added += len(inserted)
            conflicts = [k for k in self.batch if k not in inserted]
            self.duplicates += len(conflicts)
            if conflicts:
                self.tombstoned += self._count_removed(conflicts)
            self.batch = {}
        if self.rejects:
            self.s.execute(insert(ImportRejection), self.rejects)
            self.rejects = []

    def _count_removed(self, keys: list[tuple[str, str]]) -> int:
        n = 0
        by_type: dict[str, list[str]] = {}
        for st, v in keys:
            by_type.setdefault(st, []).append(v)
        for st, values in by_type.items():
            for i in range(0, len(values), 5000):
                n += len(
                    self.s.execute(
                        select(Entry.id).where(
                            Entry.bank_id == self.bank_id,
                            Entry.signal_type == st,
                            Entry.value.in_(values[i : i + 5000]),
                            Entry.status == "removed",
                        )
                    ).all()
                )
        return n


def import_entries(
    banks: Banks,
    bank: int | str,
    source: str | Path | IO[str] | IO[bytes],
    *,
    format: str | None = None,
    signal_type: str | None = None,
    added_by: str = "",
    source_label: str = "",
    categories: Iterable[str] = (),
    batch_size: int = DEFAULT_BATCH,
    progress: ProgressFn | None = None,
    max_rejections: int = 10_000,
    name: str | None = None,
) -> ImportResult:
    """Import a file or stream into ``bank`` in one transaction.

    ``format``: one of :data:`FORMATS`, else detected from the name's extension or content.
    ``signal_type``: for formats/rows that do not say (plain text needs it). ``added_by``,
    ``source_label`` and ``categories`` fill provenance that rows do not carry. ``progress`` is
    called with ``(lines_done, bytes_done)`` after every batch; an exception from it aborts the
    import (rolled back) and propagates. Raises :class:`ImportFormatError` when the file as a whole
    is unusable (nothing is imported then)."""
    if format is not None and format not in FORMATS:
        raise ImportFormatError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    if batch_size < 1:
        raise InvalidField(f"batch_size: {batch_size} < 1")
    if signal_type:
        signal_type = resolve_signal_type(signal_type)
    validator = _Validator(
        validate_text(added_by, "added_by"),
        validate_text(source_label, "source_label", MAX_SHORT),
        validate_labels(categories),
    )
    with LineReader(source, name) as lines:
        fmt = format or detect_format(lines.name, lines.peek(20))
        source_name = base_name(lines.name)[-512:]
        db = banks.db
        job_id = 0
        try:
            with db.session() as s:
                b = banks._bank_row(s, bank)
                bank_id = b.id
                rev = bump_revision(s)
                job = ImportJob(bank_id=bank_id, source_name=source_name, format=fmt)
                s.add(job)
                s.flush()
                job_id = job.id
                run = _Run(s, db.dialect, bank_id, job_id, max_rejections)
                pending = 0
                for item in read_records(lines, fmt, signal_type):
                    if isinstance(item, Reject):
                        run.reject(item.line_no, item.reason, item.text)
                        continue
                    try:
                        row = validator.row(item, bank_id, rev)
                    except (InvalidSignal, InvalidField) as e:
                        run.reject(item.line_no, e.message, item.text)
                        continue
                    run.add(row)
                    pending += 1
                    if pending >= batch_size:
                        run.flush()
                        pending = 0
                        if progress is not None:
                            progress(lines.line_no, lines.bytes_done)
                run.flush()
                if progress is not None:
                    progress(lines.line_no, lines.bytes_done)
                s.execute(
                    update(ImportJob)
                    .where(ImportJob.id == job_id)
                    .values(
                        status="done",
                        lines=lines.line_no,
                        added=run.added,
                        duplicates=run.duplicates,
                        rejected=run.rejected,
                        finished_at=utcnow(),
                    )
                )
        except BaseException as e:
            _record_failure(banks, bank, source_name, fmt, lines.line_no, e)
            raise
    return ImportResult(
        job_id=job_id,
        bank_id=bank_id,
        format=fmt,
        source_name=source_name,
        lines=lines.line_no,
        added=run.added,
        duplicates=run.duplicates,
        tombstoned=run.tombstoned,
        rejected=run.rejected,
        rejections=tuple(run.kept),
        rev=rev,
    )


def _record_failure(
    banks: Banks, bank: int | str, source_name: str, fmt: str, lines: int, err: BaseException
) -> None:
    """Best effort: keep a ``failed`` job row (the import's own rows were rolled back)."""
    if isinstance(err, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return
    try:
        with banks.db.session() as s:
            b = banks._bank_row(s, bank)
            s.add(
                ImportJob(
                    bank_id=b.id,
                    source_name=source_name,
                    format=fmt,
                    status="failed",
                    lines=lines,
                    finished_at=utcnow(),
                    error=clip(f"{type(err).__name__}: {err}"),
                )
            )
    except Exception:
        pass
