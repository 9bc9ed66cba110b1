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

from sqlalchemy import func, insert, select, text, update
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

    def row(self, rec: Record, bank_id: int, rev: int) -> tuple[Any, ...]:
        """The row in :data:`COLUMNS` order (JSON columns already serialised)."""
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
        added_by = (rec.added_by and validate_text(rec.added_by, "added_by")) or self.added_by
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
        variants = validate_variants(rec.variants) if rec.variants is not None else None
        active = status == "active"
        return (
            bank_id,
            st,
            value,
            validate_quality(rec.quality),
            (rec.source and validate_text(rec.source, "source")) or self.source,
            (rec.external_id and validate_text(rec.external_id, "external_id")) or "",
            added_at,
            added_by,
            (rec.note and validate_text(rec.note, "note", MAX_NOTE)) or "",
            json.dumps(cats) if cats else "[]",
            status,
            None if active else self.now,
            "" if active else added_by,
            "" if active else f"imported as {status}",
            rev,
            json.dumps(variants, sort_keys=True) if variants else "{}",
        )


COLUMNS = (
    "bank_id", "signal_type", "value", "quality", "source", "external_id", "added_at",
    "added_by", "note", "categories", "status", "status_changed_at", "status_changed_by",
    "status_reason", "rev", "variants",
)  # fmt: skip
_DATETIME_COLUMNS = (COLUMNS.index("added_at"), COLUMNS.index("status_changed_at"))
_COLS = ", ".join(COLUMNS)
_STAGE = "lifeguard_import_stage"
_STAGE_DDL = f"""CREATE TEMPORARY TABLE {_STAGE} (
    bank_id integer, signal_type varchar(32), value text, quality integer,
    source varchar(256), external_id varchar(256), added_at timestamptz, added_by varchar(256),
    note text, categories json, status varchar(16), status_changed_at timestamptz,
    status_changed_by varchar(256), status_reason text, rev bigint, variants json
) ON COMMIT DROP"""
_SQLITE_INSERT = (
    f"INSERT INTO entry ({_COLS}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (bank_id, signal_type, value) DO NOTHING"
)


class _Run:
    """Batches rows and rejections; inserts through the driver (SQLite ``executemany`` of an
    ``INSERT ... ON CONFLICT DO NOTHING``; PostgreSQL ``COPY`` into a temporary table, then one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``), inside the session's transaction."""

    def __init__(
        self, s: Session, dialect: str, bank_id: int, job_id: int, rev: int, keep: int
    ) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ImportFormatError(f"imports need SQLite or PostgreSQL, not {dialect}")
        self.s = s
        self.dialect = dialect
        self.bank_id = bank_id
        self.job_id = job_id
        self.rev = rev
        self.keep = keep
        self.batch: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.rejects: list[dict[str, Any]] = []
        self.kept: list[Rejection] = []
        self.added = self.duplicates = self.tombstoned = self.rejected = 0
        self.dbapi: Any = s.connection().connection.driver_connection
        if dialect == "postgresql":
            self.s.execute(text(_STAGE_DDL))
        else:
            dt_type: Any = Entry.__table__.c.added_at.type
            self.dt_proc = dt_type._cached_bind_processor(s.get_bind().dialect)

    def reject(self, line_no: int, reason: str, text: str) -> None:
        self.rejected += 1
        self.rejects.append(
            {"job_id": self.job_id, "line_no": line_no, "reason": reason, "text": clip(text)}
        )
        if len(self.kept) < self.keep:
            self.kept.append(Rejection(line_no, reason, clip(text)))

    def add(self, row: tuple[Any, ...]) -> None:
        key = (row[1], row[2])
        if key in self.batch:
            self.duplicates += 1
        else:
            self.batch[key] = row

    def _insert_sqlite(self, rows: list[tuple[Any, ...]]) -> int:
        proc = self.dt_proc
        if proc is not None:
            i, j = _DATETIME_COLUMNS
            rows = [
                (*r[:i], proc(r[i]), *r[i + 1 : j], proc(r[j]) if r[j] else None, *r[j + 1 :])
                for r in rows
            ]
        cur = self.dbapi.cursor()
        try:
            cur.executemany(_SQLITE_INSERT, rows)
            return int(cur.rowcount)
        finally:
            cur.close()

    def _insert_pg(self, rows: list[tuple[Any, ...]]) -> int:
        with self.dbapi.cursor() as cur:
            with cur.copy(f"COPY {_STAGE} ({_COLS}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            cur.execute(
                f"INSERT INTO entry ({_COLS}) SELECT {_COLS} FROM {_STAGE} "
                "ON CONFLICT (bank_id, signal_type, value) DO NOTHING"
            )
            n = int(cur.rowcount)
            cur.execute(f"TRUNCATE {_STAGE}")
        return n

    def flush(self) -> None:
        if self.batch:
            rows = list(self.batch.values())
            n = self._insert_pg(rows) if self.dialect == "postgresql" else self._insert_sqlite(rows)
            self.added += n
            if n < len(rows):
                self.duplicates += len(rows) - n
                self.tombstoned += self._count_removed(list(self.batch))
            self.batch = {}
        if self.rejects:
            self.s.execute(insert(ImportRejection), self.rejects)
            self.rejects = []

    def _count_removed(self, keys: list[tuple[str, str]]) -> int:
        """Tombstones that existed before this import among ``keys``."""
        n = 0
        by_type: dict[str, list[str]] = {}
        for st, v in keys:
            by_type.setdefault(st, []).append(v)
        for st, values in by_type.items():
            for i in range(0, len(values), 5000):
                n += int(
                    self.s.execute(
                        select(func.count()).where(
                            Entry.bank_id == self.bank_id,
                            Entry.signal_type == st,
                            Entry.value.in_(values[i : i + 5000]),
                            Entry.status == "removed",
                            Entry.rev < self.rev,
                        )
                    ).scalar_one()
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
                run = _Run(s, db.dialect, bank_id, job_id, rev, max_rejections)
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
