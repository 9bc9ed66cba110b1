"""URL and keyword lists in the database: create, import (atomic, idempotent, every bad line
reported), export, show, and matchers loaded from them.

File format (UTF-8, ``.gz`` read too; blank lines and lines starting with ``#`` are skipped):

* URL lists: ``<url or host>[<TAB or spaces><kind>[<TAB or spaces><category>]]``, ``kind`` one of
  ``page``, ``image``, ``domain`` (empty or ``-``: ``image`` when the path ends in an image
  extension, else ``page``). Whole domains are blocked only by ``domain`` entries.
* Keyword lists: ``<keyword or phrase>[<TAB><category>]`` (a trailing ``*`` makes a prefix).

An import is one transaction: it adds the new entries and counts the ones the list already has as
duplicates (so importing the same file twice changes nothing); ``replace=True`` also removes the
entries the file no longer has (a supplier's full daily list). Rejected lines are stored with
their line number and reason and returned. Export writes the same format (canonical values), so an
export re-imports to the same list.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lifeguard.banks.formats import LineReader, base_name, clip
from lifeguard.errors import Conflict, ImportFormatError, LifeguardError, NotFound
from lifeguard.reports import audit
from lifeguard.safety.keywords import InvalidKeyword, KeywordMatcher, parse_keyword
from lifeguard.safety.models import (
    SafetyList,
    SafetyListEntry,
    SafetyListImport,
    SafetyListRejection,
)
from lifeguard.safety.urls import URL_KINDS, InvalidURL, UrlMatcher, parse_entry
from lifeguard.store.db import Database
from lifeguard.store.models import utcnow

log = logging.getLogger(__name__)
LIST_KINDS: Final = ("url", "keyword")
MAX_LINE = 8192
#: Longest canonical value stored (a PostgreSQL b-tree key must stay under ~2.7 kB).
MAX_VALUE = 2000
MAX_CATEGORY = 64
BATCH = 5000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_CATEGORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _.:/-]{0,62}[A-Za-z0-9_.:/-])?$")


class InvalidList(LifeguardError):
    code = "invalid_field"


@dataclass(frozen=True)
class Rejection:
    line_no: int
    reason: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line_no, "reason": self.reason, "text": self.text}


@dataclass(frozen=True)
class ListImportResult:
    job_id: int
    list_name: str
    kind: str
    source_name: str
    lines: int
    added: int
    duplicates: int
    removed: int
    rejected: int
    rejections: tuple[Rejection, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "list": self.list_name,
            "kind": self.kind,
            "source": self.source_name,
            "lines": self.lines,
            "added": self.added,
            "duplicates": self.duplicates,
            "removed": self.removed,
            "rejected": self.rejected,
            "rejections": [r.to_json() for r in self.rejections],
        }


@dataclass(frozen=True)
class ListInfo:
    name: str
    kind: str
    description: str
    entries: int
    rev: int
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "entries": self.entries,
            "rev": self.rev,
            "updated_at": self.updated_at,
        }


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidList(
            f"list name {name!r}: 1-128 characters, letters, digits and _ . : - "
            "(starting with a letter or digit)"
        )
    return name


def check_category(category: str) -> str:
    if category and not _CATEGORY.match(category):
        raise InvalidList(
            f"category {category!r}: up to {MAX_CATEGORY} letters, digits, spaces and _ . : / -"
        )
    return category


# ------------------------------------------------------------------------------------ parsing
def parse_line(kind: str, line: str, default_category: str = "") -> tuple[str, str, str, str]:
    """``(entry kind, canonical value, raw value, category)`` of one non-comment line, or
    :class:`InvalidURL` / :class:`InvalidKeyword` / :class:`InvalidList` with the reason."""
    if len(line) > MAX_LINE:
        raise InvalidList(f"line longer than {MAX_LINE} characters")
    if kind == "url":
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts]
        if len(parts) > 3:
            raise InvalidList(f"{len(parts)} fields; expected: url [kind [category]]")
        raw = parts[0]
        ekind = parts[1] if len(parts) > 1 and parts[1] not in ("", "-") else None
        if ekind is not None and ekind not in URL_KINDS:
            raise InvalidList(f"kind {ekind!r} is not one of {', '.join(URL_KINDS)}")
        cat = check_category(parts[2] if len(parts) > 2 else default_category)
        e = parse_entry(raw, ekind)
        if len(e.key) > MAX_VALUE:
            raise InvalidList(f"canonical URL longer than {MAX_VALUE} characters")
        return e.kind, e.key, raw, cat
    raw, _, cat = line.partition("\t")
    raw = raw.strip()
    cat = check_category(cat.strip() or default_category)
    kw = parse_keyword(raw)
    return "keyword", kw.key, raw, cat


# ------------------------------------------------------------------------------------- service
class SafetyLists:
    """URL and keyword lists stored in ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _row(self, s: Session, name: str, *, lock: bool = False) -> SafetyList:
        q = select(SafetyList).where(SafetyList.name == name)
        if lock:
            q = q.with_for_update()
        row = s.execute(q).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no safety list named {name!r}")
        return row

    def create(self, name: str, kind: str, description: str = "") -> ListInfo:
        check_name(name)
        if kind not in LIST_KINDS:
            raise InvalidList(f"kind {kind!r} is not one of {', '.join(LIST_KINDS)}")
        with self.db.session() as s:
            if s.execute(select(SafetyList.id).where(SafetyList.name == name)).first():
                raise Conflict(f"a safety list named {name!r} exists")
            s.add(SafetyList(name=name, kind=kind, description=description, rev=1))
        return self.info(name)

    def info(self, name: str) -> ListInfo:
        with self.db.session() as s:
            row = self._row(s, name)
            n = s.execute(
                select(func.count()).where(SafetyListEntry.list_id == row.id)
            ).scalar_one()
            return ListInfo(
                row.name, row.kind, row.description, int(n), row.rev, row.updated_at.isoformat()
            )

    def all(self) -> list[ListInfo]:
        with self.db.session() as s:
            counts = dict(
                s.execute(
                    select(SafetyListEntry.list_id, func.count()).group_by(SafetyListEntry.list_id)
                ).all()
            )
            rows = s.execute(select(SafetyList).order_by(SafetyList.name)).scalars().all()
            return [
                ListInfo(
                    r.name,
                    r.kind,
                    r.description,
                    int(counts.get(r.id, 0)),
                    r.rev,
                    r.updated_at.isoformat(),
                )
                for r in rows
            ]

    def delete(self, name: str, actor: str = "cli") -> None:
        with self.db.session() as s:
            row = self._row(s, name, lock=True)
            n = s.execute(delete(SafetyListEntry).where(SafetyListEntry.list_id == row.id))
            s.delete(row)
            audit.record(
                s,
                actor=actor,
                action="safety_list_delete",
                subject_type="safety_list",
                subject_id=name,
                details={"kind": row.kind, "entries": int(getattr(n, "rowcount", 0) or 0)},
            )

    def imports(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The list's latest import jobs, newest first."""
        with self.db.session() as s:
            row = self._row(s, name)
            jobs = (
                s.execute(
                    select(SafetyListImport)
                    .where(SafetyListImport.list_id == row.id)
                    .order_by(SafetyListImport.id.desc())
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            return [
                {
                    "job_id": j.id,
                    "source": j.source_name,
                    "mode": j.mode,
                    "status": j.status,
                    "lines": j.lines,
                    "added": j.added,
                    "duplicates": j.duplicates,
                    "removed": j.removed,
                    "rejected": j.rejected,
                    "created_at": j.created_at.isoformat(),
                    "error": j.error,
                }
                for j in jobs
            ]

    def rejections(self, job_id: int, *, offset: int = 0, limit: int = 1000) -> list[Rejection]:
        with self.db.session() as s:
            rows = s.execute(
                select(SafetyListRejection)
                .where(SafetyListRejection.job_id == job_id)
                .order_by(SafetyListRejection.line_no, SafetyListRejection.id)
                .offset(offset)
                .limit(limit)
            ).scalars()
            return [Rejection(r.line_no, r.reason, r.text) for r in rows]

    # --------------------------------------------------------------------------------- import
    def import_file(
        self,
        name: str,
        source: str | Path | IO[str] | IO[bytes],
        *,
        kind: str | None = None,
        replace: bool = False,
        category: str = "",
        description: str = "",
        source_name: str | None = None,
        max_rejections: int = 1000,
        actor: str = "cli",
    ) -> ListImportResult:
        """Import ``source`` into list ``name`` in one transaction. The list is created when
        missing (``kind`` needed then; given for an existing list, it must agree). The import is
        recorded in the audit log (counts only, not the entries) by ``actor``."""
        check_name(name)
        check_category(category)
        if kind is not None and kind not in LIST_KINDS:
            raise InvalidList(f"kind {kind!r} is not one of {', '.join(LIST_KINDS)}")
        with LineReader(source, source_name) as lines:
            src = base_name(lines.name)[-512:]
            try:
                return self._import(
                    name, lines, src, kind, replace, category, description, max_rejections, actor
                )
            except IntegrityError:
                # Another import created the same list at the same moment.
                self._record_failure(name, src, replace, lines.line_no, RuntimeError("conflict"))
                raise Conflict(
                    f"safety list {name!r} was changed by a concurrent import; retry"
                ) from None
            except BaseException as e:
                self._record_failure(name, src, replace, lines.line_no, e)
                raise

    def _import(
        self,
        name: str,
        lines: LineReader,
        src: str,
        kind: str | None,
        replace: bool,
        category: str,
        description: str,
        keep: int,
        actor: str,
    ) -> ListImportResult:
        with self.db.session() as s:
            row = s.execute(
                select(SafetyList).where(SafetyList.name == name).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                if kind is None:
                    raise ImportFormatError(
                        f"safety list {name!r} does not exist; say its kind (url or keyword)"
                    )
                row = SafetyList(name=name, kind=kind, description=description, rev=0)
                s.add(row)
                s.flush()
            elif kind is not None and kind != row.kind:
                raise ImportFormatError(f"safety list {name!r} is a {row.kind} list, not {kind}")
            list_id, lkind = row.id, row.kind
            job = SafetyListImport(
                list_id=list_id, source_name=src, mode="replace" if replace else "add"
            )
            s.add(job)
            s.flush()
            job_id = job.id
            existing: dict[tuple[str, str], int] = {
                (k, v): i
                for i, k, v in s.execute(
                    select(SafetyListEntry.id, SafetyListEntry.kind, SafetyListEntry.value).where(
                        SafetyListEntry.list_id == list_id
                    )
                )
            }
            seen: set[tuple[str, str]] = set()
            batch: list[dict[str, Any]] = []
            rejects: list[dict[str, Any]] = []
            kept: list[Rejection] = []
            added = duplicates = rejected = 0
            now = utcnow()

            def reject(line_no: int, reason: str, text: str) -> None:
                nonlocal rejected
                rejected += 1
                rejects.append(
                    {"job_id": job_id, "line_no": line_no, "reason": reason, "text": clip(text)}
                )
                if len(kept) < keep:
                    kept.append(Rejection(line_no, reason, clip(text)))

            def flush() -> None:
                if batch:
                    s.execute(insert(SafetyListEntry), batch)
                    batch.clear()
                if rejects:
                    s.execute(insert(SafetyListRejection), rejects)
                    rejects.clear()

            bad = lines.bad_lines
            for line in lines:
                line_no = lines.line_no
                if bad and bad[-1].line_no == line_no:
                    reject(line_no, bad[-1].reason, bad[-1].text)
                    continue
                text = line.rstrip("\r\n")
                stripped = text.strip()
                if not stripped or stripped.startswith("#"):
                    continue
                try:
                    ekind, value, raw, cat = parse_line(lkind, text, category)
                except (InvalidURL, InvalidKeyword, InvalidList) as e:
                    reject(line_no, e.message, text)
                    continue
                key = (ekind, value)
                if key in seen or key in existing:
                    duplicates += 1
                    seen.add(key)
                    continue
                seen.add(key)
                batch.append(
                    {
                        "list_id": list_id,
                        "kind": ekind,
                        "value": value,
                        "raw": raw[:MAX_LINE],
                        "category": cat,
                        "added_at": now,
                        "job_id": job_id,
                    }
                )
                added += 1
                if len(batch) >= BATCH:
                    flush()
            flush()
            removed = 0
            if replace:
                gone = [i for k, i in existing.items() if k not in seen]
                for j in range(0, len(gone), BATCH):
                    s.execute(
                        delete(SafetyListEntry).where(SafetyListEntry.id.in_(gone[j : j + BATCH]))
                    )
                removed = len(gone)
            if added or removed:
                s.execute(
                    update(SafetyList)
                    .where(SafetyList.id == list_id)
                    .values(rev=SafetyList.rev + 1, updated_at=now)
                )
            audit.record(
                s,
                actor=actor,
                action="safety_list_import",
                subject_type="safety_list",
                subject_id=name,
                details={
                    "job_id": job_id,
                    "source": src,
                    "mode": "replace" if replace else "add",
                    "lines": lines.line_no,
                    "added": added,
                    "duplicates": duplicates,
                    "removed": removed,
                    "rejected": rejected,
                },
            )
            s.execute(
                update(SafetyListImport)
                .where(SafetyListImport.id == job_id)
                .values(
                    status="done",
                    lines=lines.line_no,
                    added=added,
                    duplicates=duplicates,
                    removed=removed,
                    rejected=rejected,
                    finished_at=utcnow(),
                )
            )
        return ListImportResult(
            job_id,
            name,
            lkind,
            src,
            lines.line_no,
            added,
            duplicates,
            removed,
            rejected,
            tuple(kept),
        )

    def _record_failure(
        self, name: str, src: str, replace: bool, lines: int, err: BaseException
    ) -> None:
        """Best effort: a ``failed`` job row (the import itself was rolled back)."""
        if isinstance(err, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            return
        try:
            with self.db.session() as s:
                row = s.execute(select(SafetyList).where(SafetyList.name == name)).scalar_one()
                s.add(
                    SafetyListImport(
                        list_id=row.id,
                        source_name=src,
                        mode="replace" if replace else "add",
                        status="failed",
                        lines=lines,
                        finished_at=utcnow(),
                        error=clip(f"{type(err).__name__}: {err}"),
                    )
                )
        except Exception:
            pass

    # --------------------------------------------------------------------------------- export
    def export_lines(self, name: str) -> Iterator[str]:
        """The list in the import format, one line each with ``\\n``: URL lists with canonical
        values, keyword lists as the supplier wrote them (sorted by canonical value)."""
        with self.db.read_session() as s:
            row = self._row(s, name)
            yield f"# lifeguard safety list {row.name} ({row.kind}), rev {row.rev}\n"
            q = (
                select(SafetyListEntry.kind, SafetyListEntry.value, SafetyListEntry.category)
                .add_columns(SafetyListEntry.raw)
                .where(SafetyListEntry.list_id == row.id)
                .order_by(SafetyListEntry.kind, SafetyListEntry.value)
                .execution_options(yield_per=BATCH)
            )
            for k, v, cat, raw in s.execute(q):
                if row.kind == "url":
                    yield f"{v}\t{k}\t{cat}\n" if cat else f"{v}\t{k}\n"
                else:
                    w = raw or v
                    yield f"{w}\t{cat}\n" if cat else f"{w}\n"

    # ------------------------------------------------------------------------------- matchers
    def stamp(self) -> tuple[tuple[int, int], ...]:
        """Changes whenever a list is created, changed or deleted."""
        with self.db.read_session() as s:
            return tuple(
                (int(i), int(r))
                for i, r in s.execute(select(SafetyList.id, SafetyList.rev).order_by(SafetyList.id))
            )

    def load_matchers(self) -> tuple[UrlMatcher, KeywordMatcher]:
        """Matchers over every list. Keywords are folded again from the supplier's text (``raw``),
        so a change to the folding applies to stored lists too; an entry that no longer folds to
        any word is skipped with a warning."""
        urls, kws = UrlMatcher(), KeywordMatcher()
        with self.db.read_session() as s:
            q = (
                select(SafetyList.name, SafetyList.kind, SafetyListEntry.kind)
                .add_columns(SafetyListEntry.value, SafetyListEntry.raw, SafetyListEntry.category)
                .join(SafetyListEntry, SafetyListEntry.list_id == SafetyList.id)
                .execution_options(yield_per=BATCH)
            )
            for lname, lkind, ekind, value, raw, cat in s.execute(q):
                if lkind == "url":
                    urls.add(lname, ekind, value, cat)
                    continue
                try:
                    kws.add(lname, raw or value, cat)
                except InvalidKeyword as e:
                    log.warning("safety list %s: keyword %r skipped: %s", lname, raw, e.message)
        return urls, kws


class ListCache:
    """Matchers built from the lists, rebuilt when :meth:`SafetyLists.stamp` changes (checked at
    most every ``ttl_s`` seconds)."""

    def __init__(self, lists: SafetyLists, ttl_s: float = 1.0) -> None:
        self.lists = lists
        self.ttl_s = ttl_s
        self._checked = 0.0
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._matchers: tuple[UrlMatcher, KeywordMatcher] = (UrlMatcher(), KeywordMatcher())

    def get(self) -> tuple[UrlMatcher, KeywordMatcher]:
        now = time.monotonic()
        if self._stamp is None or now - self._checked >= self.ttl_s:
            self._checked = now
            stamp = self.lists.stamp()
            if stamp != self._stamp:
                self._matchers = self.lists.load_matchers()
                self._stamp = stamp
        return self._matchers
