"""Actions: rules (validation, CRUD), record_match (events + outbox in one transaction, filters,
suppressed matches, no writes without matches), the schema, and the signature scheme."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from PIL import Image
from sqlalchemy import event, func, select

import lifeguard.actions.events as events_mod
from conftest import PHOTOS
from lifeguard.actions import (
    create_rule,
    delete_rule,
    get_event,
    get_rule,
    list_deliveries,
    list_events,
    list_rules,
    record_match,
    update_rule,
    validate_url,
)
from lifeguard.actions.models import ActionRule, MatchEvent, WebhookDelivery
from lifeguard.actions.rules import UNSET
from lifeguard.actions.webhooks import (
    SignatureError,
    compute_signature,
    payload_bytes,
    signature_header,
    verify_signature,
)
from lifeguard.banks import Banks, InvalidField
from lifeguard.errors import Conflict, NotFound
from lifeguard.matching import Matcher
from lifeguard.settings import Settings
from lifeguard.signals.hasher import hash_bytes, hash_file
from lifeguard.store.db import Database
from lifeguard.store.models import Base
from test_actions_support import SECRET, make_bank, pdq_match, result

MY_TABLES = {"action_rule", "match_event", "webhook_delivery"}


@pytest.fixture
def banks(db: Database) -> Banks:
    return Banks(db)


def _count(db: Database, model: Any) -> int:
    with db.session() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


# ------------------------------------------------------------------------------------ schema


def test_migration_0003_matches_the_models(db: Database) -> None:
    with db.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)

    def table_of(d: Any) -> str | None:
        op = d[0] if isinstance(d, tuple) else d[0][0]
        obj = d[1] if isinstance(d, tuple) else d[0][2]
        if op in ("add_table", "remove_table"):
            return str(obj.name)
        if op in ("add_index", "remove_index"):
            return str(obj.table.name)
        if op in ("add_column", "remove_column"):
            return str(d[2])
        return str(obj) if isinstance(obj, str) else None

    mine = [d for d in diff if table_of(d) in MY_TABLES]
    assert mine == []
    with db.engine.connect() as c:
        names = set(db.engine.dialect.get_table_names(c))
    assert names >= MY_TABLES


# ------------------------------------------------------------------------------------ rules


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "gopher://127.0.0.1:25/",
        "example.org/hook",
        "http://",
        "http://user:pw@example.org/hook",
        "https://example.org/hook#frag",
        "http://example.org:99999/",
        "http://exa mple.org/",
        "http://example.org/\nX-Injected: 1",
        "https://example.org/" + "a" * 2100,
        "",
    ],
)
def test_validate_url_refuses(url: str) -> None:
    with pytest.raises(InvalidField):
        validate_url(url)


def test_validate_url_accepts_http_and_https() -> None:
    assert (
        validate_url(" HTTPS://Example.org:8443/hooks/lg?x=1 ")
        == "https://Example.org:8443/hooks/lg?x=1"
    )
    assert validate_url("http://[::1]:8080/") == "http://[::1]:8080/"


def test_rule_crud(db: Database, banks: Banks) -> None:
    make_bank(banks, "ALPHA", 1)
    make_bank(banks, "BETA", 1)
    r = create_rule(db, "alpha", "https://hooks.example.org/a", name="trust-and-safety")
    assert r.bank_name == "ALPHA" and r.enabled and r.secret.startswith("whsec_")
    assert len(r.secret) >= 40 and r.secret not in repr(r) and "secret" not in r.to_json()
    r2 = create_rule(
        db, "BETA", "http://10.0.0.5/hook", secret=SECRET, max_distance=10,
        variants=["plain", "exact"], categories=["A1"],
    )  # fmt: skip
    assert r2.secret == SECRET and r2.variants == ("plain", "exact") and r2.categories == ("A1",)
    with pytest.raises(Conflict):
        create_rule(db, "ALPHA", "https://hooks.example.org/a")
    with pytest.raises(NotFound):
        create_rule(db, "NOPE", "https://hooks.example.org/a")
    with pytest.raises(InvalidField, match="secret"):
        create_rule(db, "ALPHA", "https://hooks.example.org/b", secret="short")
    with pytest.raises(InvalidField, match="variants"):
        create_rule(db, "ALPHA", "https://hooks.example.org/b", variants=["sideways"])
    with pytest.raises(InvalidField, match="max_distance"):
        create_rule(db, "ALPHA", "https://hooks.example.org/b", max_distance=-1)
    assert [x.id for x in list_rules(db)] == [r.id, r2.id]
    assert [x.id for x in list_rules(db, "BETA")] == [r2.id]

    u = update_rule(db, r2.id, enabled=False, max_distance=None, url="https://new.example.org/h")
    assert (u.enabled, u.max_distance, u.url) == (False, None, "https://new.example.org/h")
    assert u.variants == ("plain", "exact")  # untouched
    assert get_rule(db, r2.id).url == "https://new.example.org/h"
    with pytest.raises(InvalidField):
        update_rule(db, r2.id, url="ftp://x.org/")
    with pytest.raises(NotFound):
        update_rule(db, 999, name="x")
    assert update_rule(db, r2.id, name=UNSET).name == ""  # type: ignore[arg-type]

    assert delete_rule(db, r.id).id == r.id
    with pytest.raises(NotFound):
        get_rule(db, r.id)
    assert [x.id for x in list_rules(db)] == [r2.id]


# ------------------------------------------------------------------------------ record_match


def test_no_match_means_no_database_access(db: Database) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert record_match(db, result(), "post-1", None) == []
        assert record_match(db, result(), None, None) == []
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert statements == []


def test_events_and_deliveries_recorded_together(db: Database, banks: Banks) -> None:
    a = make_bank(banks, "ALPHA", 3, categories=("A1",))
    b = make_bank(banks, "BETA", 1)
    r_all = create_rule(db, "ALPHA", "https://h.example.org/all", secret=SECRET)
    r_close = create_rule(db, "ALPHA", "https://h.example.org/close", secret=SECRET, max_distance=5)
    r_plain = create_rule(
        db, "ALPHA", "https://h.example.org/plain", secret=SECRET, variants=["plain"]
    )
    r_cat = create_rule(db, "ALPHA", "https://h.example.org/cat", secret=SECRET, categories=["B2"])
    r_off = create_rule(db, "ALPHA", "https://h.example.org/off", secret=SECRET, enabled=False)
    create_rule(db, "BETA", "https://h.example.org/beta", secret=SECRET)

    exact = a[0]  # exact md5 match, distance 0
    near = pdq_match(a[1], 12)  # plain PDQ at distance 12
    rotated = pdq_match(a[2], 3, "dihedral", "rotate90_ccw")
    ids = record_match(db, result(exact, near, rotated), "post-42", None)
    assert len(ids) == 3 and ids == sorted(ids)

    evs = {e.id: e for e in list_events(db)}
    assert set(evs) == set(ids)
    e0 = evs[ids[0]]
    assert (e0.type, e0.bank_name, e0.entry_id, e0.external_id) == (
        "match",
        "ALPHA",
        exact.entry_id,
        "alpha-0",
    )
    assert (e0.distance, e0.variant, e0.content_id, e0.index_revision) == (0, "exact", "post-42", 7)
    assert e0.query_hash == exact.value  # exact match: the query digest is the listed one
    assert e0.query_md5 is None and e0.media_kind is None  # no media given
    assert len({e.query_id for e in evs.values()}) == 1

    per_event: dict[int, set[int | None]] = {i: set() for i in ids}
    for d in list_deliveries(db):
        assert d.status == "pending" and d.attempts == 0
        per_event[d.event_id].add(d.rule_id)
    assert per_event[ids[0]] == {r_all.id, r_close.id}  # not r_plain (exact), not r_cat, not off
    assert per_event[ids[1]] == {r_all.id, r_plain.id}  # distance 12 > 5
    assert per_event[ids[2]] == {r_all.id, r_close.id}  # dihedral, distance 3
    assert r_cat.id not in set().union(*per_event.values())
    assert r_off.id not in set().union(*per_event.values())

    # A BETA match is delivered to BETA's rule only.
    (bid,) = record_match(db, result(b[0]), None, None)
    assert {d.url for d in list_deliveries(db, event_id=bid)} == {"https://h.example.org/beta"}


def test_suppressed_matches_are_recorded_without_webhooks(db: Database, banks: Banks) -> None:
    a = make_bank(banks, "ALPHA", 2)
    create_rule(db, "ALPHA", "https://h.example.org/all", secret=SECRET)
    sup = replace(a[0], suppressed_by=(99, 100))
    ids = record_match(db, result(suppressed=(sup,)), "post-7", None)
    assert len(ids) == 1
    e = get_event(db, ids[0])
    assert e.type == "suppressed" and e.suppressed_by == (99, 100)
    assert list_deliveries(db) == []
    assert [x.id for x in list_events(db, type="suppressed")] == ids
    assert list_events(db, type="match") == []


@pytest.mark.parametrize(
    ("content_id", "why"),
    [("", "empty"), ("x" * 257, "257 characters"), ("a\nb", "control"), (42, "expected a string")],
)
def test_bad_content_id_writes_nothing(
    db: Database, banks: Banks, content_id: Any, why: str
) -> None:
    a = make_bank(banks, "ALPHA", 1)
    create_rule(db, "ALPHA", "https://h.example.org/all", secret=SECRET)
    with pytest.raises(InvalidField, match=why):
        record_match(db, result(a[0]), content_id, None)
    assert _count(db, MatchEvent) == 0 and _count(db, WebhookDelivery) == 0


def test_event_and_outbox_rows_share_one_transaction(
    db: Database, banks: Banks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If enqueueing the deliveries fails after the events were flushed, no event remains."""
    a = make_bank(banks, "ALPHA", 2)
    create_rule(db, "ALPHA", "https://h.example.org/all", secret=SECRET)

    def boom(**_kw: Any) -> WebhookDelivery:
        raise RuntimeError("outbox insert failed")

    monkeypatch.setattr(events_mod, "WebhookDelivery", boom)
    with pytest.raises(RuntimeError, match="outbox insert failed"):
        record_match(db, result(*a), "post-1", None)
    assert _count(db, MatchEvent) == 0 and _count(db, WebhookDelivery) == 0
    monkeypatch.undo()
    assert len(record_match(db, result(*a), "post-1", None)) == 2
    assert _count(db, MatchEvent) == 2 and _count(db, WebhookDelivery) == 2


def test_deleting_a_rule_dead_letters_its_queue(db: Database, banks: Banks) -> None:
    a = make_bank(banks, "ALPHA", 1)
    r = create_rule(db, "ALPHA", "https://h.example.org/all", secret=SECRET)
    keep = create_rule(db, "ALPHA", "https://h.example.org/keep", secret=SECRET)
    record_match(db, result(a[0]), None, None)
    delete_rule(db, r.id)
    ds = {d.url: d for d in list_deliveries(db)}
    assert ds["https://h.example.org/all"].status == "dead"
    assert ds["https://h.example.org/all"].rule_id is None
    assert "removed" in ds["https://h.example.org/all"].last_error
    assert ds["https://h.example.org/keep"].status == "pending"
    assert ds["https://h.example.org/keep"].rule_id == keep.id
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(ActionRule)).scalar_one() == 1


def test_real_match_records_query_hashes_never_paths(
    db: Database, banks: Banks, settings: Settings
) -> None:
    """End to end with the matcher: a rotated copy of a listed photo matches through a dihedral
    variant; the event carries the variant's PDQ hash, the MD5/SHA-256 of the query and no path."""
    photo = sorted((PHOTOS / "kodak").glob("*.png"))[3]
    listed = hash_file(photo, settings)
    banks.create_bank("PHOTOS")
    assert listed.pdq is not None
    banks.add_entry("PHOTOS", "pdq", listed.pdq, external_id="kodak-3")
    create_rule(db, "PHOTOS", "https://h.example.org/all", secret=SECRET)
    with Image.open(photo) as im:
        buf = io.BytesIO()
        im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=92)
    query = hash_bytes(buf.getvalue(), "secret-name-of-upload.jpg", settings, query_variants=True)
    res = Matcher(db, settings).match_media(query)
    assert res.matched and res.matches[0].variant == "dihedral"
    (eid,) = record_match(db, res, "upload-9", query)
    e = get_event(db, eid)
    assert (e.query_md5, e.query_sha256, e.query_pdq) == (query.md5, query.sha256, query.pdq)
    assert e.media_kind == "image"
    variant_pdq = {v.name: v.pdq for v in query.query_variants}[e.query_variant]
    assert e.query_hash == variant_pdq != query.pdq
    body = payload_bytes(e.to_json(), 1).decode()
    assert "secret-name-of-upload" not in body
    with db.session() as s:
        row = s.get_one(MatchEvent, eid)
        assert "secret-name-of-upload" not in json.dumps(
            {c.name: str(getattr(row, c.name)) for c in MatchEvent.__table__.columns}
        )


# ------------------------------------------------------------------------------ signatures


def test_signature_round_trip_and_failures() -> None:
    body = payload_bytes({"event_id": 1, "type": "match"}, 5)
    now = int(time.time())
    header = signature_header(SECRET, body, now)
    assert header == f"t={now},v1={compute_signature(SECRET, now, body)}"
    assert verify_signature(SECRET, body, header) == now
    # Secret rotation: either secret verifies; unknown schemes are ignored.
    assert verify_signature(["old-secret-xxxxxxxxxxxx", SECRET], body, f"{header},v0=zz") == now

    for bad_body, hdr, secret, match in [
        (body + b" ", header, SECRET, "no signature matches"),
        (body, header, "another-secret-0123456789", "no signature matches"),
        (body, None, SECRET, "missing"),
        (body, f"v1={compute_signature(SECRET, now, body)}", SECRET, "no timestamp"),
        (body, f"t={now}", SECRET, "no v1"),
        (body, f"t=abc,v1={compute_signature(SECRET, now, body)}", SECRET, "not an integer"),
        (body, "garbage", SECRET, "malformed"),
        (body, signature_header(SECRET, body, now - 301), SECRET, "tolerance"),
        (body, signature_header(SECRET, body, now + 301), SECRET, "tolerance"),
    ]:
        with pytest.raises(SignatureError, match=match):
            verify_signature(secret, bad_body, hdr)
    # The timestamp is part of the signed message: moving it breaks the signature.
    forged = f"t={now + 1},v1={compute_signature(SECRET, now, body)}"
    with pytest.raises(SignatureError, match="no signature matches"):
        verify_signature(SECRET, body, forged)
    # A wider window accepts an old (but authentic) delivery.
    old = signature_header(SECRET, body, now - 1000)
    assert verify_signature(SECRET, body, old, tolerance_s=3600) == now - 1000


def test_payload_is_canonical() -> None:
    a = payload_bytes({"b": 1, "a": {"y": "é", "x": None}}, 3)
    b = payload_bytes({"a": {"x": None, "y": "é"}, "b": 1}, 3)
    assert a == b and a.isascii()
    assert json.loads(a) == {"delivery_id": 3, "a": {"x": None, "y": "é"}, "b": 1}
