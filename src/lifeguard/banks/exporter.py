"""Streaming bank exports in the import formats, with provenance where the format has room.

``import_entries(export_bank(bank))`` into an empty bank reproduces the entries: for csv, tsv,
jsonl, json and hma every stored field (type, value, external id, source, note, categories,
quality, added at/by, status, variants); for plain and te only the signals.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from lifeguard.banks.formats import FORMATS, base_name, open_text_out
from lifeguard.banks.service import (
    ENTRY_COLUMNS,
    Banks,
    EntryInfo,
    InvalidField,
    entry_info_from_row,
)
from lifeguard.errors import ImportFormatError
from lifeguard.signals.base import get_signal_type
from lifeguard.store.models import Entry

CSV_COLUMNS = (
    "signal_type", "value", "external_id", "source", "note", "categories", "quality",
    "added_at", "added_by", "status", "variants",
)  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    format: str
    rows: int


def format_for_name(name: str) -> str:
    ext = Path(base_name(name)).suffix.lower()
    return {
        ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
        ".json": "json", ".hma": "hma", ".txt": "plain",
    }.get(ext, "csv")  # fmt: skip


def _provenance(e: EntryInfo) -> dict[str, Any]:
    return {
        "external_id": e.external_id,
        "source": e.source,
        "note": e.note,
        "categories": list(e.categories),
        "quality": e.quality,
        "added_at": e.added_at.isoformat(),
        "added_by": e.added_by,
        "status": e.status,
        "variants": dict(e.variants),
    }


def _flat(e: EntryInfo) -> dict[str, Any]:
    return {"signal_type": e.signal_type, "value": e.value, **_provenance(e)}


def _hma(e: EntryInfo) -> dict[str, Any]:
    meta = _provenance(e)
    content_id = meta.pop("external_id")
    return {
        "signals": {e.signal_type: e.value},
        "metadata": {"content_id": content_id, "json": meta},
    }


def _iter_entries(
    banks: Banks, bank_id: int, statuses: tuple[str, ...], signal_type: str | None, chunk: int
) -> Iterator[EntryInfo]:
    last = 0
    while True:
        conds = [Entry.bank_id == bank_id, Entry.status.in_(statuses), Entry.id > last]
        if signal_type is not None:
            conds.append(Entry.signal_type == signal_type)
        with banks._read() as s:
            rows = s.execute(
                select(*ENTRY_COLUMNS).where(*conds).order_by(Entry.id).limit(chunk)
            ).all()
        if not rows:
            return
        for r in rows:
            yield entry_info_from_row(r)
        last = rows[-1].id


def _no_space(e: EntryInfo, fmt: str) -> str:
    if any(c.isspace() for c in e.value):
        raise InvalidField(
            f"entry {e.id}: a {e.signal_type} value with whitespace cannot be written as {fmt}; "
            "use csv, jsonl or hma"
        )
    return e.value


def export_bank(
    banks: Banks,
    bank: int | str,
    target: str | Path | IO[str],
    *,
    format: str | None = None,
    signal_type: str | None = None,
    include_disabled: bool = False,
    include_removed: bool = False,
    chunk_size: int = 5000,
) -> ExportResult:
    """Write ``bank``'s entries (active only by default) to a path (``.gz`` compresses) or a text
    stream. ``format`` defaults to the path's extension (csv for streams and unknown ones)."""
    if format is None:
        format = format_for_name(str(target)) if isinstance(target, (str, Path)) else "csv"
    if format not in FORMATS:
        raise ImportFormatError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    b = banks.get_bank(bank)
    st = get_signal_type(signal_type).name if signal_type is not None else None
    statuses = (
        ("active",)
        + (("disabled",) if include_disabled else ())
        + (("removed",) if include_removed else ())
    )
    if format == "plain" and st is None:
        types = _bank_types(banks, b.id)
        if len(types) > 1:
            raise InvalidField(
                f"bank {b.name!r} holds {', '.join(sorted(types))} signals: plain text has no "
                "type column, pass signal_type or use another format"
            )
    entries = _iter_entries(banks, b.id, statuses, st, chunk_size)
    own = isinstance(target, (str, Path))
    out: IO[str] = open_text_out(target) if isinstance(target, (str, Path)) else target
    n = 0
    try:
        if format in ("csv", "tsv"):
            w = csv.writer(out, delimiter="," if format == "csv" else "\t", lineterminator="\n")
            w.writerow(CSV_COLUMNS)
            for e in entries:
                w.writerow(
                    [
                        e.signal_type, e.value, e.external_id, e.source, e.note,
                        ";".join(e.categories), "" if e.quality is None else e.quality,
                        e.added_at.isoformat(), e.added_by, e.status,
                        json.dumps(dict(e.variants), sort_keys=True) if e.variants else "",
                    ]
                )  # fmt: skip
                n += 1
        elif format in ("jsonl", "hma"):
            shape = _flat if format == "jsonl" else _hma
            for e in entries:
                out.write(json.dumps(shape(e), ensure_ascii=False, sort_keys=True) + "\n")
                n += 1
        elif format == "json":
            out.write("[")
            for e in entries:
                out.write(("," if n else "") + "\n" + json.dumps(_flat(e), ensure_ascii=False))
                n += 1
            out.write("\n]\n")
        elif format == "te":
            for e in entries:
                out.write(f"{e.signal_type} {_no_space(e, format)}\n")
                n += 1
        else:  # plain
            out.write(f"# {b.name}: {st or 'all'} signals\n")
            for e in entries:
                out.write(_no_space(e, format) + "\n")
                n += 1
    finally:
        if own:
            out.close()
        else:
            out.flush()
    return ExportResult(format=format, rows=n)


def _bank_types(banks: Banks, bank_id: int) -> set[str]:
    with banks._read() as s:
        return set(
            s.execute(
                select(Entry.signal_type).where(Entry.bank_id == bank_id).distinct()
            ).scalars()
        )
