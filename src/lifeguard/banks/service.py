"""Hash banks and their entries: create/update/delete, entry lifecycle, and the delta feed matchers poll.

Every change to a bank or an entry takes the next global revision (:func:`bump_revision`, which locks
the revision row until commit) and stamps it on the changed rows in the same transaction, so a
matcher that remembers the last revision it applied can ask for ``rev > last_seen`` and never miss a
change: revision *r* is only visible once every transaction holding a revision ``<= r`` committed.

Results are frozen dataclasses; ORM objects never leave a session.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from lifeguard.errors import Conflict, LifeguardError, NotFound
from lifeguard.signals.base import get_signal_type, normalise
from lifeguard.store.db import Database, bump_revision, current_revision
from lifeguard.store.models import Bank, Entry, ImportJob, ImportRejection, utcnow

BankKind = Literal["block", "allow"]
EntryStatus = Literal["active", "disabled", "removed"]
BANK_KINDS: tuple[str, ...] = ("block", "allow")
ENTRY_STATUSES: tuple[str, ...] = ("active", "disabled", "removed")

#: HMA's rule (OpenMediaMatch storage/postgres/database.py ``_bank_name_ok``). Lower-case input is
#: upper-cased; anything else (hyphens, spaces, leading digit) is rejected.
BANK_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
MAX_BANK_NAME = 100  # leaves room for the ``__DELETED_<id>`` suffix in the 128-character column
MAX_LABEL = 64
MAX_SHORT = 256
MAX_NOTE = 10_000
MAX_VARIANTS_JSON = 64 * 1024
#: Characters a category label may not contain (they separate labels in CSV/TSV cells).
_LABEL_FORBIDDEN = re.compile(r"[;|,\t\r\n\x00-\x1f\x7f]")


class InvalidField(LifeguardError, ValueError):
    """A bank or entry field has a bad value (the message names the field and why)."""

    code = "invalid_field"


# --------------------------------------------------------------------------------------------
# Typed results


@dataclass(frozen=True)
class BankInfo:
    id: int
    name: str
    description: str
    kind: str
    enabled: bool
    match_threshold: int
    categories: tuple[str, ...]
    supplier: str
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted: bool
    rev: int
    #: Entries by status (``active``/``disabled``/``removed``); empty when not asked for.
    entry_counts: Mapping[str, int] = field(default_factory=dict)
    #: Whether matches through dihedral/trimmed/region variants count for this bank.
    match_variants: bool = True


@dataclass(frozen=True)
class EntryInfo:
    id: int
    bank_id: int
    signal_type: str
    value: str
    quality: int | None
    source: str
    external_id: str
    added_at: dt.datetime
    added_by: str
    note: str
    categories: tuple[str, ...]
    status: str
    status_changed_at: dt.datetime | None
    status_changed_by: str
    status_reason: str
    rev: int
    variants: Mapping[str, Any]


@dataclass(frozen=True)
class AddResult:
    entry: EntryInfo
    #: A new row was inserted.
    created: bool
    #: The bank already listed this signal (the existing entry is returned, unchanged unless
    #: it was a tombstone, see ``reactivated``).
    duplicate: bool
    #: The existing entry was a tombstone (status removed) and is active again with the new
    #: provenance.
    reactivated: bool


@dataclass(frozen=True)
class EntryPage:
    items: tuple[EntryInfo, ...]
    total: int
    #: Pass as ``after_id`` for the next page; None when this was the last page.
    next_after_id: int | None


class EntryChange(NamedTuple):
    """One changed entry, for a matcher's delta. ``status`` is the *effective* status: ``active``
    only when the entry is active and its bank is enabled and not deleted; ``removed`` when the
    entry or its bank is deleted; ``disabled`` otherwise."""

    entry_id: int
    bank_id: int
    signal_type: str
    value: str
    status: str
    variants: dict[str, Any]


class ActiveEntry(NamedTuple):
    """An active entry with what an index build needs to know about its bank."""

    entry_id: int
    bank_id: int
    bank_kind: str
    bank_enabled: bool
    match_threshold: int
    signal_type: str
    value: str
    variants: dict[str, Any]


@dataclass(frozen=True)
class ImportJobInfo:
    id: int
    bank_id: int
    source_name: str
    format: str
    status: str
    lines: int
    added: int
    duplicates: int
    rejected: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    error: str


@dataclass(frozen=True)
class Rejection:
    line_no: int
    reason: str
    text: str


# --------------------------------------------------------------------------------------------
# Validation helpers (shared with the importer)


def aware(t: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes for ``DateTime(timezone=True)``; they are UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def validate_bank_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidField(f"bank name: expected a string, got {type(name).__name__}")
    n = name.strip().upper()
    if not n:
        raise InvalidField("bank name: empty")
    if len(n) > MAX_BANK_NAME:
        raise InvalidField(f"bank name: {len(n)} characters, at most {MAX_BANK_NAME} allowed")
    if not BANK_NAME_RE.match(n):
        bad = next((c for c in n if not (c.isascii() and (c.isalnum() or c == "_"))), None)
        why = f"character {bad!r} not allowed" if bad is not None else "must not start with a digit"
        raise InvalidField(
            f"bank name {name!r}: {why} (HMA-compatible names are letters, digits and "
            "underscores, e.g. MY_BANK_1)"
        )
    return n


def validate_labels(labels: object, what: str = "categories") -> list[str]:
    """Non-empty, stripped, de-duplicated labels without separator characters."""
    if labels is None:
        return []
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise InvalidField(f"{what}: expected a list of labels, got {type(labels).__name__}")
    out: list[str] = []
    for raw in labels:
        if not isinstance(raw, str):
            raise InvalidField(f"{what}: label {raw!r} is not a string")
        lab = raw.strip()
        if not lab:
            raise InvalidField(f"{what}: empty label")
        if len(lab) > MAX_LABEL:
            raise InvalidField(f"{what}: label {lab[:20]!r}... longer than {MAX_LABEL}")
        m = _LABEL_FORBIDDEN.search(lab)
        if m:
            raise InvalidField(f"{what}: label {lab!r} contains forbidden character {m.group()!r}")
        if lab not in out:
            out.append(lab)
    return out


def validate_text(value: object, what: str, limit: int = MAX_SHORT) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidField(f"{what}: expected a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidField(f"{what}: {len(value)} characters, at most {limit} allowed")
    if "\x00" in value:
        raise InvalidField(f"{what}: contains a NUL character")
    return value


def validate_quality(q: object) -> int | None:
    if q is None or q == "":
        return None
    if isinstance(q, bool):
        raise InvalidField(f"quality: expected an integer 0..100, got {q!r}")
    if isinstance(q, str):
        try:
            q = int(q.strip())
        except ValueError:
            raise InvalidField(f"quality: {q!r} is not an integer") from None
    if not isinstance(q, int):
        raise InvalidField(f"quality: expected an integer 0..100, got {type(q).__name__}")
    if not 0 <= q <= 100:
        raise InvalidField(f"quality: {q} outside 0..100")
    return q


def validate_variants(v: object) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise InvalidField(f"variants: expected a JSON object, got {type(v).__name__}")
    if not all(isinstance(k, str) for k in v):
        raise InvalidField("variants: keys must be strings")
    try:
        text = json.dumps(dict(v), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidField(f"variants: not JSON-serialisable ({e})") from None
    if len(text) > MAX_VARIANTS_JSON:
        raise InvalidField(f"variants: {len(text)} bytes of JSON, at most {MAX_VARIANTS_JSON}")
    result: dict[str, Any] = json.loads(text)
    return result


def validate_kind(kind: object) -> str:
    if kind not in BANK_KINDS:
        raise InvalidField(f"kind: {kind!r} is not one of {', '.join(BANK_KINDS)}")
    return str(kind)


def validate_threshold(t: object) -> int:
    if isinstance(t, bool) or not isinstance(t, int):
        raise InvalidField(f"match_threshold: expected an integer 0..31, got {t!r}")
    if not 0 <= t <= 31:
        raise InvalidField(f"match_threshold: {t} outside 0..31 (PDQ distance)")
    return t


def validate_status(s: object) -> str:
    if s not in ENTRY_STATUSES:
        raise InvalidField(f"status: {s!r} is not one of {', '.join(ENTRY_STATUSES)}")
    return str(s)


def load_optional_signal_types() -> None:
    """Register vPDQ when another module provides it; tolerate its absence."""
    with suppress(ImportError):
        importlib.import_module("lifeguard.signals.video")


# --------------------------------------------------------------------------------------------
# Row conversion


def _bank_info(b: Bank, counts: Mapping[str, int] | None = None) -> BankInfo:
    return BankInfo(
        id=b.id,
        name=b.name,
        description=b.description,
        kind=b.kind,
        enabled=b.enabled,
        match_threshold=b.match_threshold,
        categories=tuple(b.categories or ()),
        supplier=b.supplier,
        created_at=aware(b.created_at),
        updated_at=aware(b.updated_at),
        deleted=b.deleted,
        rev=b.rev,
        entry_counts=dict(counts or {}),
        match_variants=b.match_variants,
    )


ENTRY_COLUMNS = (
    Entry.id,
    Entry.bank_id,
    Entry.signal_type,
    Entry.value,
    Entry.quality,
    Entry.source,
    Entry.external_id,
    Entry.added_at,
    Entry.added_by,
    Entry.note,
    Entry.categories,
    Entry.status,
    Entry.status_changed_at,
    Entry.status_changed_by,
    Entry.status_reason,
    Entry.rev,
    Entry.variants,
)


def entry_info_from_row(r: Any) -> EntryInfo:
    return EntryInfo(
        id=r.id,
        bank_id=r.bank_id,
        signal_type=r.signal_type,
        value=r.value,
        quality=r.quality,
        source=r.source,
        external_id=r.external_id,
        added_at=aware(r.added_at),
        added_by=r.added_by,
        note=r.note,
        categories=tuple(r.categories or ()),
        status=r.status,
        status_changed_at=aware(r.status_changed_at) if r.status_changed_at else None,
        status_changed_by=r.status_changed_by,
        status_reason=r.status_reason,
        rev=r.rev,
        variants=dict(r.variants or {}),
    )


def _effective_status(entry_status: str, bank_enabled: bool, bank_deleted: bool) -> str:
    if entry_status == "removed" or bank_deleted:
        return "removed"
    if entry_status == "disabled" or not bank_enabled:
        return "disabled"
    return "active"


# --------------------------------------------------------------------------------------------
# The service


class Banks:
    """Bank and entry operations over a :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        load_optional_signal_types()

    def close(self) -> None:
        """Nothing to release (kept for callers that close what they open)."""

    # -- sessions -------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """Reads never wait for a writer (see ``Database.read_session``)."""
        with self.db.read_session() as s:
            yield s

    # -- lookups --------------------------------------------------------------------------

    @staticmethod
    def _bank_row(s: Session, bank: int | str, *, include_deleted: bool = False) -> Bank:
        if isinstance(bank, bool) or not isinstance(bank, (int, str)):
            raise InvalidField(f"bank: expected an id or a name, got {type(bank).__name__}")
        if isinstance(bank, int):
            row = s.get(Bank, bank)
            what = f"bank id {bank}"
        else:
            name = bank.strip().upper()
            row = s.execute(select(Bank).where(Bank.name == name)).scalar_one_or_none()
            what = f"bank {name!r}"
        if row is None:
            raise NotFound(f"{what} not found")
        if row.deleted and not include_deleted:
            raise NotFound(f"{what} was deleted")
        return row

    @staticmethod
    def _counts(s: Session, bank_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = {b: dict.fromkeys(ENTRY_STATUSES, 0) for b in bank_ids}
        if not bank_ids:
            return out
        rows = s.execute(
            select(Entry.bank_id, Entry.status, func.count())
            .where(Entry.bank_id.in_(bank_ids))
            .group_by(Entry.bank_id, Entry.status)
        ).all()
        for bank_id, status, n in rows:
            out[bank_id][status] = int(n)
        return out

    # -- banks ----------------------------------------------------------------------------

    def create_bank(
        self,
        name: str,
        *,
        description: str = "",
        kind: str = "block",
        enabled: bool = True,
        match_threshold: int = 31,
        categories: Iterable[str] = (),
        supplier: str = "",
        match_variants: bool = True,
    ) -> BankInfo:
        n = validate_bank_name(name)
        row = Bank(
            name=n,
            description=validate_text(description, "description", MAX_NOTE),
            kind=validate_kind(kind),
            enabled=bool(enabled),
            match_threshold=validate_threshold(match_threshold),
            categories=validate_labels(categories),
            supplier=validate_text(supplier, "supplier"),
            match_variants=bool(match_variants),
        )
        with self.db.session() as s:
            if s.execute(select(Bank.id).where(Bank.name == n)).first() is not None:
                raise Conflict(f"a bank named {n!r} already exists")
            row.rev = bump_revision(s)
            s.add(row)
            s.flush()
            return _bank_info(row, dict.fromkeys(ENTRY_STATUSES, 0))

    def update_bank(
        self,
        bank: int | str,
        *,
        name: str | None = None,
        description: str | None = None,
        kind: str | None = None,
        enabled: bool | None = None,
        match_threshold: int | None = None,
        categories: Iterable[str] | None = None,
        supplier: str | None = None,
        match_variants: bool | None = None,
    ) -> BankInfo:
        """Change the given fields. Enabling/disabling also re-stamps the bank's entries, so a
        matcher polling :meth:`changes_since` sees their effective status change."""
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = validate_bank_name(name)
        if description is not None:
            changes["description"] = validate_text(description, "description", MAX_NOTE)
        if kind is not None:
            changes["kind"] = validate_kind(kind)
        if enabled is not None:
            changes["enabled"] = bool(enabled)
        if match_threshold is not None:
            changes["match_threshold"] = validate_threshold(match_threshold)
        if categories is not None:
            changes["categories"] = validate_labels(categories)
        if supplier is not None:
            changes["supplier"] = validate_text(supplier, "supplier")
        if match_variants is not None:
            changes["match_variants"] = bool(match_variants)
        with self.db.session() as s:
            row = self._bank_row(s, bank)
            changed = {k: v for k, v in changes.items() if getattr(row, k) != v}
            if not changed:
                return _bank_info(row, self._counts(s, [row.id])[row.id])
            if "name" in changed:
                clash = s.execute(
                    select(Bank.id).where(Bank.name == changed["name"], Bank.id != row.id)
                ).first()
                if clash is not None:
                    raise Conflict(f"a bank named {changed['name']!r} already exists")
            rev = bump_revision(s)
            for k, v in changed.items():
                setattr(row, k, v)
            row.rev = rev
            row.updated_at = utcnow()
            if "enabled" in changed:
                s.execute(update(Entry).where(Entry.bank_id == row.id).values(rev=rev))
            s.flush()
            return _bank_info(row, self._counts(s, [row.id])[row.id])

    def get_bank(self, bank: int | str, *, include_deleted: bool = False) -> BankInfo:
        with self._read() as s:
            row = self._bank_row(s, bank, include_deleted=include_deleted)
            return _bank_info(row, self._counts(s, [row.id])[row.id])

    def list_banks(self, *, include_deleted: bool = False) -> list[BankInfo]:
        with self._read() as s:
            q = select(Bank).order_by(Bank.name)
            if not include_deleted:
                q = q.where(Bank.deleted.is_(False))
            rows = list(s.execute(q).scalars())
            counts = self._counts(s, [r.id for r in rows])
            return [_bank_info(r, counts[r.id]) for r in rows]

    def delete_bank(self, bank: int | str, *, by: str = "", reason: str = "") -> BankInfo:
        """Soft delete: the bank is kept (renamed ``<NAME>__DELETED_<id>`` so the name can be
        reused), every entry not already removed becomes a tombstone, and all are re-stamped."""
        by = validate_text(by, "by")
        reason = validate_text(reason, "reason", MAX_NOTE)
        with self.db.session() as s:
            row = self._bank_row(s, bank)
            rev = bump_revision(s)
            now = utcnow()
            s.execute(
                update(Entry)
                .where(Entry.bank_id == row.id, Entry.status != "removed")
                .values(
                    status="removed",
                    status_changed_at=now,
                    status_changed_by=by,
                    status_reason=reason or "bank deleted",
                )
            )
            s.execute(update(Entry).where(Entry.bank_id == row.id).values(rev=rev))
            row.deleted = True
            row.name = f"{row.name}__DELETED_{row.id}"
            row.rev = rev
            row.updated_at = now
            s.flush()
            return _bank_info(row, self._counts(s, [row.id])[row.id])

    # -- entries --------------------------------------------------------------------------

    def add_entry(
        self,
        bank: int | str,
        signal_type: str,
        value: str,
        *,
        quality: int | None = None,
        source: str = "",
        external_id: str = "",
        note: str = "",
        categories: Iterable[str] = (),
        added_by: str = "",
        variants: Mapping[str, Any] | None = None,
    ) -> AddResult:
        """Add one signal. Idempotent: if the bank lists it already, the existing entry comes back
        with ``duplicate=True``. A tombstoned (removed) entry is reactivated with the new
        provenance (``reactivated=True``); a disabled one stays disabled."""
        st, v = normalise(signal_type, value)
        fields: dict[str, Any] = dict(
            quality=validate_quality(quality),
            source=validate_text(source, "source"),
            external_id=validate_text(external_id, "external_id"),
            note=validate_text(note, "note", MAX_NOTE),
            categories=validate_labels(categories),
            added_by=validate_text(added_by, "added_by"),
            variants=validate_variants(variants),
        )
        with self.db.session() as s:
            b = self._bank_row(s, bank)
            existing = s.execute(
                select(Entry).where(
                    Entry.bank_id == b.id, Entry.signal_type == st, Entry.value == v
                )
            ).scalar_one_or_none()
            if existing is not None and existing.status != "removed":
                return AddResult(self._entry_from_orm(existing), False, True, False)
            rev = bump_revision(s)
            now = utcnow()
            if existing is not None:
                for k, val in fields.items():
                    setattr(existing, k, val)
                existing.added_at = now
                existing.status = "active"
                existing.status_changed_at = now
                existing.status_changed_by = fields["added_by"]
                existing.status_reason = "re-added"
                existing.rev = rev
                s.flush()
                return AddResult(self._entry_from_orm(existing), False, True, True)
            row = Entry(
                bank_id=b.id, signal_type=st, value=v, added_at=now, status="active", rev=rev,
                status_changed_by="", status_reason="", **fields,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return AddResult(self._entry_from_orm(row), True, False, False)

    @staticmethod
    def _entry_from_orm(e: Entry) -> EntryInfo:
        return entry_info_from_row(e)

    def _set_status(
        self, entry_id: int, new: str, *, allowed_from: tuple[str, ...], by: str, reason: str
    ) -> EntryInfo:
        by = validate_text(by, "by")
        reason = validate_text(reason, "reason", MAX_NOTE)
        with self.db.session() as s:
            e = s.get(Entry, entry_id)
            if e is None:
                raise NotFound(f"entry {entry_id} not found")
            if e.bank.deleted:
                raise NotFound(f"entry {entry_id}: its bank was deleted")
            if e.status == new:
                return self._entry_from_orm(e)
            if e.status not in allowed_from:
                hint = (
                    " (re-add it with add_entry to list it again)" if e.status == "removed" else ""
                )
                raise Conflict(f"entry {entry_id} is {e.status}; cannot make it {new}{hint}")
            e.rev = bump_revision(s)
            e.status = new
            e.status_changed_at = utcnow()
            e.status_changed_by = by
            e.status_reason = reason
            s.flush()
            return self._entry_from_orm(e)

    def disable_entry(self, entry_id: int, *, by: str = "", reason: str = "") -> EntryInfo:
        """Keep the entry but stop matching it."""
        return self._set_status(
            entry_id, "disabled", allowed_from=("active",), by=by, reason=reason
        )

    def enable_entry(self, entry_id: int, *, by: str = "", reason: str = "") -> EntryInfo:
        """Match a disabled entry again (a removed entry must be re-added instead)."""
        return self._set_status(
            entry_id, "active", allowed_from=("disabled",), by=by, reason=reason
        )

    def remove_entry(self, entry_id: int, *, by: str = "", reason: str = "") -> EntryInfo:
        """Tombstone: status removed with who/when/why; the row stays for audit."""
        return self._set_status(
            entry_id, "removed", allowed_from=("active", "disabled"), by=by, reason=reason
        )

    def set_entry_variants(self, entry_id: int, variants: Mapping[str, Any]) -> EntryInfo:
        """Store extra hashes of the listed media (filled by the matching layer)."""
        v = validate_variants(variants)
        with self.db.session() as s:
            e = s.get(Entry, entry_id)
            if e is None:
                raise NotFound(f"entry {entry_id} not found")
            if e.variants == v:
                return self._entry_from_orm(e)
            e.rev = bump_revision(s)
            e.variants = v
            s.flush()
            return self._entry_from_orm(e)

    def get_entry(self, entry_id: int) -> EntryInfo:
        with self._read() as s:
            r = s.execute(select(*ENTRY_COLUMNS).where(Entry.id == entry_id)).first()
            if r is None:
                raise NotFound(f"entry {entry_id} not found")
            return entry_info_from_row(r)

    def find_entry(self, bank: int | str, signal_type: str, value: str) -> EntryInfo:
        st, v = normalise(signal_type, value)
        with self._read() as s:
            b = self._bank_row(s, bank, include_deleted=True)
            r = s.execute(
                select(*ENTRY_COLUMNS).where(
                    Entry.bank_id == b.id, Entry.signal_type == st, Entry.value == v
                )
            ).first()
            if r is None:
                raise NotFound(f"bank {b.name!r} has no {st} entry {v}")
            return entry_info_from_row(r)

    def list_entries(
        self,
        bank: int | str,
        *,
        status: str | None = None,
        signal_type: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> EntryPage:
        """Entries by id, ``limit`` at a time (keyset paging: pass ``next_after_id`` back)."""
        if status is not None:
            validate_status(status)
        if not 1 <= limit <= 10_000:
            raise InvalidField(f"limit: {limit} outside 1..10000")
        with self._read() as s:
            b = self._bank_row(s, bank, include_deleted=True)
            conds = [Entry.bank_id == b.id]
            if status is not None:
                conds.append(Entry.status == status)
            if signal_type is not None:
                conds.append(Entry.signal_type == get_signal_type(signal_type).name)
            total = int(s.execute(select(func.count()).where(and_(*conds))).scalar_one())
            rows = s.execute(
                select(*ENTRY_COLUMNS)
                .where(and_(*conds), Entry.id > after_id)
                .order_by(Entry.id)
                .limit(limit + 1)
            ).all()
            items = tuple(entry_info_from_row(r) for r in rows[:limit])
            nxt = items[-1].id if len(rows) > limit else None
            return EntryPage(items=items, total=total, next_after_id=nxt)

    # -- matcher feed ---------------------------------------------------------------------

    def current_revision(self) -> int:
        with self._read() as s:
            return current_revision(s)

    def changes_since(self, rev: int) -> tuple[int, list[EntryChange]]:
        """Entries changed after revision ``rev``: ``(new_rev, changes)``. Poll again with
        ``new_rev``. Applying a change is idempotent (upsert or drop by ``entry_id``)."""
        with self._read() as s:
            # Read the committed revision first: every transaction with a revision <= it has
            # committed (writers serialise on the revision row), so the bounded query is complete.
            new_rev = current_revision(s)
            if new_rev <= rev:
                return new_rev, []
            rows = s.execute(
                select(
                    Entry.id,
                    Entry.bank_id,
                    Entry.signal_type,
                    Entry.value,
                    Entry.status,
                    Entry.variants,
                    Bank.enabled,
                    Bank.deleted,
                )
                .join(Bank, Bank.id == Entry.bank_id)
                .where(Entry.rev > rev, Entry.rev <= new_rev)
                .order_by(Entry.rev, Entry.id)
            ).all()
            return new_rev, [
                EntryChange(
                    r[0], r[1], r[2], r[3], _effective_status(r[4], r[6], r[7]), dict(r[5] or {})
                )
                for r in rows
            ]

    def bank_changes_since(self, rev: int) -> tuple[int, list[BankInfo]]:
        """Banks changed after ``rev`` (kind, threshold, enabled, deleted ...)."""
        with self._read() as s:
            new_rev = current_revision(s)
            rows = s.execute(
                select(Bank).where(Bank.rev > rev, Bank.rev <= new_rev).order_by(Bank.rev)
            ).scalars()
            return new_rev, [_bank_info(b) for b in rows]

    def iter_active_entries(
        self,
        signal_type: str | None = None,
        *,
        chunk_size: int = 10_000,
        include_disabled_banks: bool = False,
    ) -> Iterator[ActiveEntry]:
        """Stream active entries of non-deleted banks (enabled banks only unless asked), by id,
        ``chunk_size`` rows per query. For an index build: take :meth:`current_revision` first,
        build from this stream, then apply :meth:`changes_since` from that revision."""
        st = get_signal_type(signal_type).name if signal_type is not None else None
        last = 0
        while True:
            conds = [Entry.status == "active", Bank.deleted.is_(False), Entry.id > last]
            if st is not None:
                conds.append(Entry.signal_type == st)
            if not include_disabled_banks:
                conds.append(Bank.enabled.is_(True))
            with self._read() as s:
                rows = s.execute(
                    select(
                        Entry.id,
                        Entry.bank_id,
                        Bank.kind,
                        Bank.enabled,
                        Bank.match_threshold,
                        Entry.signal_type,
                        Entry.value,
                        Entry.variants,
                    )
                    .join(Bank, Bank.id == Entry.bank_id)
                    .where(*conds)
                    .order_by(Entry.id)
                    .limit(chunk_size)
                ).all()
            if not rows:
                return
            for r in rows:
                yield ActiveEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], dict(r[7] or {}))
            last = rows[-1][0]

    # -- import jobs ----------------------------------------------------------------------

    def import_job(self, job_id: int) -> ImportJobInfo:
        with self._read() as s:
            j = s.get(ImportJob, job_id)
            if j is None:
                raise NotFound(f"import job {job_id} not found")
            return import_job_info(j)

    def import_rejections(
        self, job_id: int, *, after_line: int = 0, limit: int = 1000
    ) -> list[Rejection]:
        with self._read() as s:
            rows = s.execute(
                select(ImportRejection.line_no, ImportRejection.reason, ImportRejection.text)
                .where(ImportRejection.job_id == job_id, ImportRejection.line_no > after_line)
                .order_by(ImportRejection.line_no, ImportRejection.id)
                .limit(limit)
            ).all()
            return [Rejection(r[0], r[1], r[2]) for r in rows]


def import_job_info(j: ImportJob) -> ImportJobInfo:
    return ImportJobInfo(
        id=j.id,
        bank_id=j.bank_id,
        source_name=j.source_name,
        format=j.format,
        status=j.status,
        lines=j.lines,
        added=j.added,
        duplicates=j.duplicates,
        rejected=j.rejected,
        started_at=aware(j.started_at),
        finished_at=aware(j.finished_at) if j.finished_at else None,
        error=j.error,
    )
