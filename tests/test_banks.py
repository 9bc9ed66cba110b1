"""Bank service: CRUD, entry lifecycle, tombstones, revisions and the matcher feed (SQLite + PG)."""

from __future__ import annotations

import hashlib

import pytest

from lifeguard.banks import Banks, InvalidField
from lifeguard.errors import Conflict, InvalidSignal, NotFound
from lifeguard.store.db import Database

BRIDGE_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def md5(i: int) -> str:
    return hashlib.md5(str(i).encode(), usedforsecurity=False).hexdigest()


def pdq(i: int) -> str:
    return hashlib.sha256(f"pdq{i}".encode()).hexdigest()


@pytest.fixture
def banks(db: Database) -> Banks:
    b = Banks(db)
    yield b
    b.close()


def test_create_get_list_update_bank(banks: Banks) -> None:
    b = banks.create_bank(
        "test_bank",
        description="benign stand-ins",
        kind="allow",
        match_threshold=20,
        categories=[" A1 ", "B2", "A1"],
        supplier="unit test",
    )
    assert b.name == "TEST_BANK"  # lower case is upper-cased (HMA-compatible)
    assert b.kind == "allow" and b.match_threshold == 20 and b.enabled
    assert b.categories == ("A1", "B2")
    assert b.rev > 0
    assert banks.get_bank("test_bank").id == b.id
    assert banks.get_bank(b.id).supplier == "unit test"
    banks.create_bank("OTHER")
    listed = banks.list_banks()
    assert [x.name for x in listed] == ["OTHER", "TEST_BANK"]
    assert listed[1].entry_counts == {"active": 0, "disabled": 0, "removed": 0}
    u = banks.update_bank(b.id, description="new", enabled=False, name="RENAMED")
    assert (u.name, u.description, u.enabled) == ("RENAMED", "new", False)
    assert u.rev > b.rev
    with pytest.raises(NotFound):
        banks.get_bank("TEST_BANK")
    with pytest.raises(Conflict, match="already exists"):
        banks.update_bank("RENAMED", name="OTHER")
    with pytest.raises(Conflict, match="already exists"):
        banks.create_bank("other")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "my-bank"}, "character '-' not allowed"),
        ({"name": "1BANK"}, "must not start with a digit"),
        ({"name": ""}, "empty"),
        ({"name": "X" * 101}, "at most 100"),
        ({"name": "OK", "kind": "deny"}, "kind: 'deny' is not one of block, allow"),
        ({"name": "OK", "match_threshold": 32}, "outside 0..31"),
        ({"name": "OK", "match_threshold": -1}, "outside 0..31"),
        ({"name": "OK", "categories": ["A1", " "]}, "empty label"),
        ({"name": "OK", "categories": ["A;1"]}, "forbidden character ';'"),
        ({"name": "OK", "categories": "A1"}, "expected a list"),
        ({"name": "OK", "supplier": "s" * 300}, "at most 256"),
    ],
)
def test_bank_field_validation(banks: Banks, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidField, match=match):
        banks.create_bank(**kwargs)  # type: ignore[arg-type]
    assert banks.list_banks() == []


def test_add_entry_normalises_and_is_idempotent(banks: Banks) -> None:
    banks.create_bank("B")
    r = banks.add_entry(
        "B",
        "photo_pdq",
        "0x" + BRIDGE_PDQ.upper(),
        quality=100,
        source="list-1",
        external_id="ext-1",
        note="the bridge",
        categories=["A1"],
        added_by="alice",
        variants={"rot90": pdq(1)},
    )
    assert r.created and not r.duplicate
    e = r.entry
    assert (e.signal_type, e.value, e.quality, e.status) == ("pdq", BRIDGE_PDQ, 100, "active")
    assert (e.source, e.external_id, e.note, e.added_by) == (
        "list-1",
        "ext-1",
        "the bridge",
        "alice",
    )
    assert e.categories == ("A1",) and e.variants == {"rot90": pdq(1)}
    again = banks.add_entry("B", "pdq", BRIDGE_PDQ, note="other")
    assert again.duplicate and not again.created and again.entry.id == e.id
    assert again.entry.note == "the bridge" and again.entry.rev == e.rev
    assert banks.get_entry(e.id) == e
    assert banks.find_entry("B", "pdq", BRIDGE_PDQ.upper()).id == e.id


@pytest.mark.parametrize(
    ("st", "value", "match"),
    [
        ("pdq", "zz" * 32, "not hexadecimal"),
        ("pdq", "ab" * 31, "wrong length 62"),
        ("md5", "", "empty"),
        ("phash", "ab" * 32, "unknown signal type 'phash'"),
    ],
)
def test_add_entry_rejects_bad_signals(banks: Banks, st: str, value: str, match: str) -> None:
    banks.create_bank("B")
    with pytest.raises(InvalidSignal, match=match):
        banks.add_entry("B", st, value)
    assert banks.get_bank("B").entry_counts["active"] == 0


def test_add_entry_field_errors_and_missing_bank(banks: Banks) -> None:
    banks.create_bank("B")
    with pytest.raises(InvalidField, match=r"quality: 101 outside 0\.\.100"):
        banks.add_entry("B", "md5", md5(1), quality=101)
    with pytest.raises(InvalidField, match="variants: not JSON-serialisable"):
        banks.add_entry("B", "md5", md5(1), variants={"x": object()})
    with pytest.raises(NotFound, match="bank 'NOPE' not found"):
        banks.add_entry("NOPE", "md5", md5(1))
    with pytest.raises(NotFound, match="entry 999 not found"):
        banks.get_entry(999)


def test_disable_enable_remove_and_reactivate(banks: Banks) -> None:
    banks.create_bank("B")
    e = banks.add_entry("B", "md5", md5(1), added_by="alice").entry
    d = banks.disable_entry(e.id, by="bob", reason="false positive?")
    assert d.status == "disabled" and d.status_changed_by == "bob" and d.rev > e.rev
    assert d.status_reason == "false positive?" and d.status_changed_at is not None
    # Adding a disabled entry again does not silently re-enable it.
    dup = banks.add_entry("B", "md5", md5(1))
    assert dup.duplicate and dup.entry.status == "disabled"
    en = banks.enable_entry(e.id, by="bob")
    assert en.status == "active" and en.rev > d.rev
    rm = banks.remove_entry(e.id, by="carol", reason="wrong list")
    assert rm.status == "removed" and rm.status_changed_by == "carol" and rm.rev > en.rev
    with pytest.raises(Conflict, match="is removed; cannot make it active"):
        banks.enable_entry(e.id)
    with pytest.raises(Conflict, match="is removed; cannot make it disabled"):
        banks.disable_entry(e.id)
    # The tombstone stays for audit and is counted.
    assert banks.get_bank("B").entry_counts == {"active": 0, "disabled": 0, "removed": 1}
    # Re-adding a removed entry reactivates it with the new provenance.
    re = banks.add_entry("B", "md5", md5(1), source="list-2", added_by="dave", note="back")
    assert re.reactivated and re.duplicate and not re.created
    assert re.entry.id == e.id and re.entry.status == "active"
    assert (re.entry.source, re.entry.added_by, re.entry.note) == ("list-2", "dave", "back")
    assert re.entry.rev > rm.rev


def test_list_entries_paging_and_filters(banks: Banks) -> None:
    banks.create_bank("B")
    ids = [banks.add_entry("B", "md5", md5(i)).entry.id for i in range(7)]
    ids.append(banks.add_entry("B", "pdq", pdq(0)).entry.id)
    banks.disable_entry(ids[1])
    banks.remove_entry(ids[2])
    seen: list[int] = []
    after = 0
    while True:
        page = banks.list_entries("B", limit=3, after_id=after)
        assert page.total == 8
        seen.extend(e.id for e in page.items)
        if page.next_after_id is None:
            break
        after = page.next_after_id
    assert seen == ids
    assert [e.id for e in banks.list_entries("B", status="disabled").items] == [ids[1]]
    assert banks.list_entries("B", signal_type="photo_pdq").total == 1
    assert banks.list_entries("B", status="active", signal_type="md5").total == 5
    with pytest.raises(InvalidField, match="status: 'gone'"):
        banks.list_entries("B", status="gone")


def test_changes_since_reports_every_change_once(banks: Banks) -> None:
    start = banks.current_revision()
    banks.create_bank("B")
    banks.create_bank("C")
    a = banks.add_entry("B", "md5", md5(1)).entry
    b = banks.add_entry("C", "pdq", pdq(1), variants={"flip": pdq(2)}).entry
    rev1, changes = banks.changes_since(start)
    assert rev1 == banks.current_revision() > start
    assert [(c.entry_id, c.bank_id, c.signal_type, c.value, c.status) for c in changes] == [
        (a.id, a.bank_id, "md5", md5(1), "active"),
        (b.id, b.bank_id, "pdq", pdq(1), "active"),
    ]
    assert changes[1].variants == {"flip": pdq(2)}
    assert banks.changes_since(rev1) == (rev1, [])
    banks.disable_entry(a.id)
    rev2, changes = banks.changes_since(rev1)
    assert [(c.entry_id, c.status) for c in changes] == [(a.id, "disabled")]
    # A duplicate add is not a change.
    banks.add_entry("C", "pdq", pdq(1))
    assert banks.changes_since(rev2) == (rev2, [])
    # Disabling a bank re-stamps its entries with the effective status.
    banks.update_bank("C", enabled=False)
    rev3, changes = banks.changes_since(rev2)
    assert [(c.entry_id, c.status) for c in changes] == [(b.id, "disabled")]
    _, bank_changes = banks.bank_changes_since(rev2)
    assert [(x.name, x.enabled) for x in bank_changes] == [("C", False)]
    banks.update_bank("C", enabled=True)
    rev4, changes = banks.changes_since(rev3)
    assert [(c.entry_id, c.status) for c in changes] == [(b.id, "active")]
    # A description change does not touch entries.
    banks.update_bank("C", description="d")
    assert banks.changes_since(rev4)[1] == []
    banks.set_entry_variants(b.id, {"flip": pdq(3)})
    _, changes = banks.changes_since(rev4)
    assert [(c.entry_id, c.variants) for c in changes] == [(b.id, {"flip": pdq(3)})]


def test_delete_bank_is_soft_and_tombstones_entries(banks: Banks) -> None:
    banks.create_bank("GONE", categories=["A1"])
    e1 = banks.add_entry("GONE", "md5", md5(1)).entry
    e2 = banks.add_entry("GONE", "md5", md5(2)).entry
    banks.remove_entry(e2.id, by="x", reason="earlier")
    rev = banks.current_revision()
    d = banks.delete_bank("GONE", by="admin", reason="retired")
    assert d.deleted and d.name == f"GONE__DELETED_{d.id}"
    assert d.entry_counts == {"active": 0, "disabled": 0, "removed": 2}
    new_rev, changes = banks.changes_since(rev)
    assert new_rev == d.rev
    assert sorted((c.entry_id, c.status) for c in changes) == [
        (e1.id, "removed"),
        (e2.id, "removed"),
    ]
    t1 = banks.get_entry(e1.id)
    assert (t1.status_changed_by, t1.status_reason) == ("admin", "retired")
    assert banks.get_entry(e2.id).status_reason == "earlier"  # earlier tombstone kept as it was
    with pytest.raises(NotFound, match="GONE"):
        banks.get_bank("GONE")
    assert banks.list_banks() == []
    assert [b.id for b in banks.list_banks(include_deleted=True)] == [d.id]
    with pytest.raises(NotFound, match="its bank was deleted"):
        banks.disable_entry(e1.id)
    # The name can be reused.
    assert banks.create_bank("GONE").id != d.id


def test_iter_active_entries_streams_in_chunks(banks: Banks) -> None:
    banks.create_bank("BLOCK")
    banks.create_bank("ALLOW", kind="allow", match_threshold=10)
    banks.create_bank("OFF", enabled=False)
    want = {banks.add_entry("BLOCK", "md5", md5(i)).entry.id for i in range(25)}
    allow = banks.add_entry("ALLOW", "md5", md5(100)).entry.id
    off = banks.add_entry("OFF", "md5", md5(200)).entry.id
    banks.add_entry("BLOCK", "pdq", pdq(1))
    gone = banks.add_entry("BLOCK", "md5", md5(300)).entry.id
    banks.remove_entry(gone)
    dis = banks.add_entry("BLOCK", "md5", md5(301)).entry.id
    banks.disable_entry(dis)
    got = list(banks.iter_active_entries("md5", chunk_size=4))
    assert {g.entry_id for g in got} == want | {allow}
    assert [g.entry_id for g in got] == sorted(g.entry_id for g in got)
    by_id = {g.entry_id: g for g in got}
    assert (by_id[allow].bank_kind, by_id[allow].match_threshold) == ("allow", 10)
    assert all(g.bank_enabled for g in got)
    with_off = {
        g.entry_id: g for g in banks.iter_active_entries("md5", include_disabled_banks=True)
    }
    assert off in with_off and not with_off[off].bank_enabled
    assert {g.signal_type for g in banks.iter_active_entries()} == {"md5", "pdq"}


def test_reads_do_not_wait_for_a_writer(banks: Banks, db: Database) -> None:
    """A long import holds the write lock; matcher polls must still answer (SQLite WAL reads)."""
    banks.create_bank("B")
    banks.add_entry("B", "md5", md5(1))
    rev = banks.current_revision()
    with db.session() as s:
        from lifeguard.store.db import bump_revision

        bump_revision(s)  # holds the revision row (PG) / the write lock (SQLite) until commit
        assert banks.changes_since(0)[0] == rev
        assert banks.get_bank("B").entry_counts["active"] == 1
