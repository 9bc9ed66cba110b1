"""Bank file formats: names, detection, and streaming readers that turn lines into raw records.

Readers never hold a whole file: they consume an iterator of lines and yield one :class:`Record`
(not yet validated) or :class:`Reject` (with its line number and why) at a time. Validation of
hashes and fields happens in :mod:`lifeguard.banks.importer`. See docs/formats.md.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, cast

from lifeguard.errors import ImportFormatError, InvalidSignal
from lifeguard.signals.base import SIGNAL_TYPES, get_signal_type

#: plain: one hash per line. te: ``<signal_type> <hash>`` (python-threatexchange). csv/tsv: a
#: header row then one row per hash. jsonl: one JSON object per line (flat, TE descriptor or HMA
#: shapes). hma: JSON Lines of HMA bank content objects. json: one JSON document, an array of
#: objects or a ThreatExchange Graph API response ``{"data": [...]}``, read incrementally.
FORMATS: Final = ("plain", "te", "csv", "tsv", "jsonl", "hma", "json")

#: Signal type spellings seen in python-threatexchange / HMA not covered by signals.base.ALIASES.
EXTRA_ALIASES: Final = {"video_sha256": "sha256", "photo_sha256": "sha256", "photo_md5": "md5"}

MAX_REJECT_TEXT = 500
MAX_FIELD = 64 * 1024 * 1024

# Column (CSV/TSV header, JSON key) names, compared case-insensitively.
TYPE_KEYS: Final = ("signal_type", "type", "hash_type", "indicator_type")
VALUE_KEYS: Final = (
    "value", "hash", "signal", "signal_str", "signal_value", "raw_indicator", "indicator",
)  # fmt: skip
EXTERNAL_ID_KEYS: Final = ("external_id", "id", "content_id", "indicator_id")
NOTE_KEYS: Final = ("note", "notes", "comment", "description")
SOURCE_KEYS: Final = ("source", "collab", "source_list")
CATEGORY_KEYS: Final = ("categories", "category", "labels", "tags")
SIMPLE_KEYS: Final = ("quality", "added_at", "added_by", "status", "variants")

_FIELD_FOR: dict[str, str] = {}
for _field, _keys in (
    ("signal_type", TYPE_KEYS),
    ("value", VALUE_KEYS),
    ("external_id", EXTERNAL_ID_KEYS),
    ("note", NOTE_KEYS),
    ("source", SOURCE_KEYS),
):
    for _k in _keys:
        _FIELD_FOR[_k] = _field
for _k in SIMPLE_KEYS:
    _FIELD_FOR[_k] = _k

_LABEL_SPLIT = re.compile(r"[;|,]")


_TYPE_CACHE: dict[str, str] = {}
_TYPE_CACHE_FOR = 0


def resolve_signal_type(name: str) -> str:
    """Canonical signal type name or :class:`InvalidSignal` (unknown type)."""
    global _TYPE_CACHE_FOR
    if len(SIGNAL_TYPES) != _TYPE_CACHE_FOR:  # a type was registered since: start over
        _TYPE_CACHE.clear()
        _TYPE_CACHE_FOR = len(SIGNAL_TYPES)
    got = _TYPE_CACHE.get(name)
    if got is None:
        key = name.strip().lower()
        got = _TYPE_CACHE[name] = get_signal_type(EXTRA_ALIASES.get(key, name.strip())).name
    return got


def is_signal_type(name: str) -> bool:
    try:
        resolve_signal_type(name)
    except InvalidSignal:
        return False
    return True


@dataclass(slots=True)
class Record:
    """One signal read from a file, not yet validated (fields are raw)."""

    line_no: int
    signal_type: str | None
    value: Any
    text: str
    external_id: Any = ""
    note: Any = ""
    source: Any = ""
    categories: Any = None
    quality: Any = None
    added_at: Any = None
    added_by: Any = None
    status: Any = None
    variants: Any = None


@dataclass(slots=True)
class Reject:
    line_no: int
    reason: str
    text: str


def clip(text: str) -> str:
    return text if len(text) <= MAX_REJECT_TEXT else text[: MAX_REJECT_TEXT - 3] + "..."


# --------------------------------------------------------------------------------------------
# Line sources


def _open_binary(path: Path) -> IO[Any]:
    if path.suffix == ".gz":
        return cast(IO[Any], gzip.open(path, "rb"))
    return open(path, "rb")


class LineReader:
    """Lines of a path (``.gz`` decompressed) or a text/binary stream, decoded as UTF-8 (a BOM is
    dropped). Counts bytes read; a line that is not UTF-8 is yielded as ``""`` and recorded in
    :attr:`bad_lines` so a format reader can reject it without losing line numbering."""

    def __init__(self, source: str | Path | IO[str] | IO[bytes], name: str | None = None) -> None:
        self._own: IO[Any] | None = None
        self.stream: IO[Any]
        if isinstance(source, (str, Path)):
            path = Path(source)
            self.name = name or str(path)
            own = _open_binary(path)
            self._own = own
            self.stream = own
        else:
            self.name = name or str(getattr(source, "name", "<stream>"))
            self.stream = source
        self.bytes_done = 0
        self.line_no = 0
        self.bad_lines: list[Reject] = []
        self._pushed: list[str] = []

    def close(self) -> None:
        if self._own is not None:
            self._own.close()

    def __enter__(self) -> LineReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _raw(self) -> Iterator[str]:
        first = True
        for raw in self.stream:
            self.line_no += 1
            if isinstance(raw, bytes):
                self.bytes_done += len(raw)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    self.bad_lines.append(
                        Reject(self.line_no, f"not valid UTF-8 (byte {e.start})", clip(repr(raw)))
                    )
                    line = "\n"
            else:
                line = raw
                self.bytes_done += len(raw.encode("utf-8", "surrogatepass"))
            if first:
                first = False
                if line.startswith("\ufeff"):
                    line = line[1:]
            yield line

    def peek(self, n: int) -> list[str]:
        """Up to ``n`` first lines, which iteration will still return."""
        it = self._raw()
        got: list[str] = []
        for line in it:
            got.append(line)
            if len(got) >= n:
                break
        self._pushed = got
        self._peeked_iter = it
        return list(got)

    def __iter__(self) -> Iterator[str]:
        if self._pushed:
            pushed, self._pushed = self._pushed, []
            # Line numbers were counted while peeking; replay them with their numbers.
            base = self.line_no - len(pushed)
            counted = self.line_no
            for i, line in enumerate(pushed):
                self.line_no = base + i + 1
                yield line
            self.line_no = counted
            yield from self._peeked_iter
        else:
            yield from self._raw()


def base_name(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def detect_format(name: str, head: Iterable[str]) -> str:
    """A format from the file name's extension, else from the first meaningful line."""
    ext = Path(base_name(name)).suffix.lower()
    by_ext = {
        ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
        ".json": "json", ".hma": "hma",
    }  # fmt: skip
    if ext in by_ext:
        return by_ext[ext]
    for line in head:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("{"):
            return "jsonl"
        if s.startswith("["):
            return "json"
        lowered = [c.strip().lower() for c in re.split(r"[,\t]", s)]
        if any(c in VALUE_KEYS for c in lowered):
            return "tsv" if "\t" in s else "csv"
        tokens = s.split()
        if len(tokens) >= 2 and (is_signal_type(tokens[0]) or is_signal_type(tokens[1])):
            return "te"
        return "plain"
    return "plain"


# --------------------------------------------------------------------------------------------
# Readers


def _flush_bad(lines: LineReader) -> Iterator[Reject]:
    if lines.bad_lines:
        bad, lines.bad_lines = lines.bad_lines, []
        yield from bad


def read_plain(lines: LineReader, signal_type: str | None) -> Iterator[Record | Reject]:
    if not signal_type:
        raise ImportFormatError("plain format needs the signal type (e.g. signal_type='pdq')")
    for line in lines:
        yield from _flush_bad(lines)
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        yield Record(lines.line_no, signal_type, s, s)
    yield from _flush_bad(lines)


def _parse_collab(rest: list[str]) -> str:
    """python-threatexchange prints ``repr(collab_name)`` after the hash; recover simple names."""
    if not rest:
        return ""
    joined = " ".join(rest)
    if joined[:1] in "'\"":
        end = joined.find(joined[0], 1)
        if end > 0:
            return joined[1:end]
    return ""


def read_te(lines: LineReader, signal_type: str | None) -> Iterator[Record | Reject]:
    """``<signal_type> <hash>`` lines as printed by python-threatexchange's ``hash`` and
    ``dataset -P`` commands (extra columns after the hash are ignored, a quoted collaboration
    name becomes the source); a lone ``<hash>`` uses the given signal type (``dataset -P -s``)."""
    for line in lines:
        yield from _flush_bad(lines)
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        tokens = s.split()
        n = lines.line_no
        if len(tokens) == 1:
            if not signal_type:
                yield Reject(n, "missing signal type (expected '<signal_type> <hash>')", clip(s))
                continue
            yield Record(n, signal_type, tokens[0], s)
        elif is_signal_type(tokens[0]):
            yield Record(n, tokens[0], tokens[1], s, source=_parse_collab(tokens[2:]))
        elif len(tokens) >= 3 and is_signal_type(tokens[1]):
            # `threatexchange hash --photo-preprocess=rotations`: "<ROTATION> <type> <hash>"
            yield Record(n, tokens[1], tokens[2], s, note=tokens[0])
        else:
            yield Reject(n, f"unknown signal type {tokens[0]!r}", clip(s))
    yield from _flush_bad(lines)


def _split_labels(value: str, whitespace: bool) -> list[str]:
    parts = value.split() if whitespace else _LABEL_SPLIT.split(value)
    return [p.strip() for p in parts if p.strip()]


def read_delimited(
    lines: LineReader, signal_type: str | None, delimiter: str
) -> Iterator[Record | Reject]:
    """CSV/TSV with a header row; header names are case-insensitive (see docs/formats.md)."""
    # vPDQ values of long videos exceed csv's default 128 KiB field limit (process-wide setting).
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD))
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    kind = "TSV" if delimiter == "\t" else "CSV"
    header: list[str] | None = None
    columns: dict[str, int] = {}
    label_cols: list[tuple[int, bool]] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            yield from _flush_bad(lines)
            yield Reject(lines.line_no, f"bad {kind}: {e}", "")
            continue
        yield from _flush_bad(lines)
        n = lines.line_no
        if not row or all(not c.strip() for c in row):
            continue
        if header is None:
            if row[0].lstrip().startswith("#"):
                continue
            header = [c.strip().lower() for c in row]
            for i, h in enumerate(header):
                f = _FIELD_FOR.get(h)
                if f is not None and f not in columns:
                    columns[f] = i
                if h in CATEGORY_KEYS:
                    label_cols.append((i, h == "tags"))
            if "value" not in columns:
                raise ImportFormatError(
                    f"{lines.name}: line {n}: no hash column in the header "
                    f"(expected one of {', '.join(VALUE_KEYS)}; found {', '.join(header)})"
                )
            if "signal_type" not in columns and not signal_type:
                raise ImportFormatError(
                    f"{lines.name}: line {n}: no signal_type column in the header and no "
                    "signal type given"
                )
            continue
        text = delimiter.join(row)
        if len(row) != len(header):
            yield Reject(n, f"{len(row)} fields, the header has {len(header)}", clip(text))
            continue
        rec = Record(n, signal_type, row[columns["value"]].strip(), text)
        if "signal_type" in columns:
            t = row[columns["signal_type"]].strip()
            rec.signal_type = t or signal_type
        for f in ("external_id", "note", "source", "quality", "added_at", "added_by", "status"):
            if f in columns:
                setattr(rec, f, row[columns[f]])
        if "variants" in columns and row[columns["variants"]].strip():
            try:
                rec.variants = json.loads(row[columns["variants"]])
            except json.JSONDecodeError as e:
                yield Reject(n, f"variants: bad JSON ({e.msg} at column {e.colno})", clip(text))
                continue
        if label_cols:
            labels: list[str] = []
            for i, ws in label_cols:
                labels.extend(_split_labels(row[i], ws))
            rec.categories = labels
        yield rec
    yield from _flush_bad(lines)


def _get(obj: dict[str, Any], keys: Iterable[str]) -> Any:
    for k in keys:
        if k in obj:
            return obj[k]
    return None


def _labels_from(v: Any) -> Any:
    if isinstance(v, str):
        return _split_labels(v, False)
    return v


def records_from_object(
    obj: Any, line_no: int, text: str, signal_type: str | None
) -> list[Record | Reject]:
    """One JSON object -> records. Shapes: flat ``{"signal_type", "value", ...}``; a
    ThreatExchange descriptor ``{"type": "HASH_PDQ", "raw_indicator": ..., "id", "tags"}``; an HMA
    bank signal body ``{"pdq": "<hash>", ...}``; or HMA content ``{"signals": {...}, "metadata":
    {"content_id", "json": {...}}}``."""
    if not isinstance(obj, dict):
        return [Reject(line_no, f"expected a JSON object, got {type(obj).__name__}", clip(text))]
    low = {str(k).lower(): v for k, v in obj.items()}
    signals = low.get("signals")
    if isinstance(signals, dict):
        m = low.get("metadata")
        meta: dict[str, Any] = m if isinstance(m, dict) else {}
        j = meta.get("json")
        extra: dict[str, Any] = j if isinstance(j, dict) else {}
        ext = meta.get("content_id", low.get("id", ""))
        base = {str(k).lower(): v for k, v in extra.items()}
        out: list[Record | Reject] = []
        if not signals:
            return [Reject(line_no, 'missing value: empty "signals" object', clip(text))]
        for st, val in signals.items():
            rec = _flat_record(base, line_no, text, str(st))
            rec.value = val
            rec.external_id = "" if ext is None else (str(ext) if isinstance(ext, int) else ext)
            out.append(rec)
        return out
    if _get(low, VALUE_KEYS) is not None or not low:
        if _get(low, VALUE_KEYS) is None:
            return [Reject(line_no, "missing value (empty object)", clip(text))]
        return [_flat_record(low, line_no, text, signal_type)]
    typed = [k for k in low if is_signal_type(k)]
    if typed:  # HMA POST /c/bank/<name>/signal body
        res: list[Record | Reject] = []
        for k, v in low.items():
            if k in typed:
                res.append(Record(line_no, k, v, text))
            else:
                res.append(Reject(line_no, f"unknown signal type {k!r}", clip(text)))
        return res
    keys = ", ".join(VALUE_KEYS)
    return [
        Reject(line_no, f"missing value (no key among {keys}, and no signal type keys)", clip(text))
    ]


def _flat_record(low: dict[str, Any], line_no: int, text: str, signal_type: str | None) -> Record:
    st = _get(low, TYPE_KEYS)
    rec = Record(line_no, st if st is not None else signal_type, _get(low, VALUE_KEYS), text)
    ext = _get(low, EXTERNAL_ID_KEYS)
    rec.external_id = str(ext) if isinstance(ext, int) and not isinstance(ext, bool) else ext
    rec.note = _get(low, NOTE_KEYS)
    rec.source = _get(low, SOURCE_KEYS)
    labels: list[Any] = []
    found = False
    for k in CATEGORY_KEYS:
        if k in low and low[k] is not None:
            found = True
            v = _labels_from(low[k])
            if isinstance(v, list):
                labels.extend(v)
            else:
                rec.categories = v  # wrong type: let validation say so
                break
    else:
        if found:
            rec.categories = labels
    for k in SIMPLE_KEYS:
        if k in low:
            setattr(rec, k, low[k])
    return rec


def read_jsonl(lines: LineReader, signal_type: str | None) -> Iterator[Record | Reject]:
    for line in lines:
        yield from _flush_bad(lines)
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        n = lines.line_no
        try:
            obj = json.loads(line.rstrip("\r\n"))  # unstripped: columns match the file
        except json.JSONDecodeError as e:
            yield Reject(n, f"bad JSON: {e.msg} at column {e.colno}", clip(s))
            continue
        yield from records_from_object(obj, n, s, signal_type)
    yield from _flush_bad(lines)


class _JsonScanner:
    """Incremental scanner over a JSON document: decodes one value at a time from a buffer that
    is refilled from the line iterator, tracking line numbers."""

    MAX_VALUE = 16 * 1024 * 1024

    def __init__(self, lines: LineReader) -> None:
        self.lines = lines
        self.it = iter(lines)
        self.buf = ""
        self.pos = 0
        self.line = 1  # line number at self.pos
        self.eof = False
        self.dec = json.JSONDecoder()

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk: list[str] = []
        size = 0
        for line in self.it:
            chunk.append(line)
            size += len(line)
            if size >= 65536:
                break
        else:
            self.eof = True
        if self.lines.bad_lines:
            bad = self.lines.bad_lines[0]
            raise ImportFormatError(f"{self.lines.name}: line {bad.line_no}: {bad.reason}")
        if not chunk:
            return False
        self.buf = self.buf[self.pos :] + "".join(chunk)
        self.pos = 0
        return True

    def skip_ws(self) -> str:
        """Next non-whitespace character ('' at end of input), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                if self.buf[self.pos] == "\n":
                    self.line += 1
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str) -> str:
        c = self.skip_ws()
        if not c or c not in chars:
            got = repr(c) if c else "end of input"
            raise ImportFormatError(
                f"{self.lines.name}: line {self.line}: bad JSON: expected one of {chars!r}, "
                f"got {got}"
            )
        self.pos += 1
        return c

    def value(self) -> tuple[Any, int, str]:
        """Decode the next value: (value, its first line, its text)."""
        self.skip_ws()
        start_line = self.line
        while True:
            try:
                obj, end = self.dec.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if len(self.buf) - self.pos > self.MAX_VALUE or not self._fill():
                    raise ImportFormatError(
                        f"{self.lines.name}: line {start_line + self.buf.count(chr(10), self.pos, e.pos)}: "
                        f"bad JSON: {e.msg}"
                    ) from None
                continue
            text = self.buf[self.pos : end]
            self.line += text.count("\n")
            self.pos = end
            return obj, start_line, text


def read_json_document(lines: LineReader, signal_type: str | None) -> Iterator[Record | Reject]:
    """A JSON array of objects, or an object whose ``"data"`` member is one (ThreatExchange Graph
    API responses); other members are skipped. Elements are decoded one at a time. A document that
    is not well-formed JSON cannot be re-synchronised and fails as a whole (ImportFormatError);
    elements that are well-formed but invalid are rejected individually."""
    sc = _JsonScanner(lines)
    c = sc.skip_ws()
    if c == "[":
        yield from _json_array(sc, signal_type)
    elif c == "{":
        sc.pos += 1
        seen_data = False
        if sc.skip_ws() == "}":
            sc.pos += 1
        else:
            while True:
                key, _, _ = sc.value()
                sc.expect(":")
                if key == "data" and sc.skip_ws() == "[":
                    seen_data = True
                    yield from _json_array(sc, signal_type)
                else:
                    sc.value()
                if sc.expect(",}") == "}":
                    break
        if not seen_data:
            raise ImportFormatError(f'{lines.name}: JSON object without a "data" array')
    elif c == "":
        return
    else:
        raise ImportFormatError(
            f'{lines.name}: line {sc.line}: expected a JSON array or an object with a "data" array'
        )
    if sc.skip_ws() != "":
        raise ImportFormatError(f"{lines.name}: line {sc.line}: extra data after the JSON document")


def _json_array(sc: _JsonScanner, signal_type: str | None) -> Iterator[Record | Reject]:
    sc.expect("[")
    if sc.skip_ws() == "]":
        sc.pos += 1
        return
    while True:
        obj, line, text = sc.value()
        yield from records_from_object(obj, line, text, signal_type)
        if sc.expect(",]") == "]":
            return


def read_records(lines: LineReader, fmt: str, signal_type: str | None) -> Iterator[Record | Reject]:
    if fmt == "plain":
        return read_plain(lines, signal_type)
    if fmt == "te":
        return read_te(lines, signal_type)
    if fmt == "csv":
        return read_delimited(lines, signal_type, ",")
    if fmt == "tsv":
        return read_delimited(lines, signal_type, "\t")
    if fmt in ("jsonl", "hma"):
        return read_jsonl(lines, signal_type)
    if fmt == "json":
        return read_json_document(lines, signal_type)
    raise ImportFormatError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def open_text_out(target: str | Path) -> IO[str]:
    """A text file for writing; ``.gz`` compresses."""
    path = Path(target)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "wb"), encoding="utf-8", newline="")
    return open(path, "w", encoding="utf-8", newline="")
