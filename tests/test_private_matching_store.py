"""Persistent private matching (migration 0009): SQLite and PostgreSQL via the ``db`` fixture."""

from __future__ import annotations

import os
import random

import pytest
from sqlalchemy import select

from lifeguard.e2ee.private_matching import (
    AccountState,
    BlindedTable,
    InvalidVoucher,
    Params,
    make_voucher,
)
from lifeguard.e2ee.private_matching.store import (
    PmAccountRow,
    PmTableRow,
    PmVoucherRow,
    PrivateMatchingService,
)
from lifeguard.errors import NotFound
from lifeguard.reports.evidence import EvidenceKeyError, Keyring
from lifeguard.store.db import Database

RNG = random.Random(7)


def test_state_survives_a_new_service_and_stores_only_opened(db: Database) -> None:
    keyring = Keyring([os.urandom(32)])
    svc = PrivateMatchingService(db, keyring)
    with pytest.raises(NotFound) as err:
        svc.server()
    assert err.value.code == "no_table"
    listed = [RNG.randbytes(32) for _ in range(12)]
    table = svc.create_table(listed, Params(threshold=2, synthetic_rate=0.0))
    client_table = BlindedTable.from_bytes(table.to_bytes(), expected_root=table.root)
    acct = AccountState.for_table(client_table)
    svc.receive("u1", make_voucher(listed[0], client_table, acct, associated_data=b"x"))
    svc.receive("u1", make_voucher(RNG.randbytes(32), client_table, acct))
    svc.receive("u1", make_voucher(RNG.randbytes(32), client_table, acct, synthetic=True))
    rep = svc.report("u1")
    assert (rep.received, rep.opened, rep.threshold_reached, rep.matches) == (3, 2, False, [])
    with db.session() as s:
        assert len(s.scalars(select(PmVoucherRow)).all()) == 2  # the unlisted one is not kept
        t = s.scalars(select(PmTableRow)).one()
        assert len(t.listed) == 12 * 32 and t.alpha_sealed  # alpha only sealed
    # Another replica (or a restart) picks up the same state from the database.
    other = PrivateMatchingService(db, keyring)
    other.receive("u1", make_voucher(listed[3], client_table, acct))
    rep = other.report("u1")
    assert rep.threshold_reached and rep.actionable
    assert sorted(m.listed_index for m in rep.matches) == [0, 3]
    assert {m.associated_data for m in rep.matches} == {b"x", b""}
    assert rep.synthetic_identified == 1
    with db.session() as s:
        a = s.scalars(select(PmAccountRow)).one()
        assert a.secret_sealed is not None and len(a.secret_sealed) == 12 + 32 + 16
        statuses = sorted(r.status for r in s.scalars(select(PmVoucherRow)))
    assert statuses == ["match", "match", "synthetic"]
    # Past the threshold a new match is read at once; a duplicate voucher is not counted twice.
    v = make_voucher(listed[5], client_table, acct)
    svc.receive("u1", v)
    svc.receive("u1", v)
    assert len(svc.report("u1").matches) == 3
    # A new table replaces the old one: vouchers made against the old root are refused.
    svc.create_table(listed[:4], Params(threshold=2, synthetic_rate=0.0))
    with pytest.raises(InvalidVoucher):
        other.receive("u1", make_voucher(listed[0], client_table, acct))
    assert other.report("u1").received == 0  # accounts are per table


def test_no_master_key_is_refused(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFEGUARD_EVIDENCE_KEY", raising=False)
    monkeypatch.delenv("LIFEGUARD_EVIDENCE_KEY_FILE", raising=False)
    with pytest.raises(EvidenceKeyError):
        PrivateMatchingService(db).create_table([RNG.randbytes(32)], Params())


def test_migration_0009_matches_the_models(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lifeguard.store.models import Base

    mine = {"pm_table", "pm_account", "pm_voucher"}
    with db.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
        names = set(db.engine.dialect.get_table_names(c))
    assert names >= mine
    assert [d for d in diff if any(t in repr(d) for t in mine)] == []
