"""Persistent server side (migration 0009_private_matching): the blinded table with its sealed
blinding key, and per account only the vouchers whose outer layer opened.

Nothing is stored for a voucher that did not open beyond the account's ``received`` counter. The
blinding scalar ``alpha`` and each rebuilt account secret are sealed (ChaCha20-Poly1305) under a key
derived by HKDF from the evidence master key (``LIFEGUARD_EVIDENCE_KEY``), so a database dump alone
does not open anything. Several replicas share the state through the database; each keeps the active
table's :class:`MatchingServer` in memory and reloads it when the active root changes.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Sequence

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ...errors import NotFound
from ...reports.evidence import Keyring, master_key_id
from ...store.db import Database
from ...store.models import Base, utcnow
from . import group
from .params import PDQ_BYTES, Params, PrivateMatchingError, parse_pdq
from .server import AccountReport, AccountState, Match, MatchingServer, OuterView
from .table import BlindedTable, ServerKey, build_table

_BigId = BigInteger().with_variant(Integer, "sqlite")
_SEAL_LABEL = b"lifeguard/pm/v1/seal"


class PmTableRow(Base):
    __tablename__ = "pm_table"
    __table_args__ = (UniqueConstraint("root", name="uq_pm_table_root"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    root: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    table_bytes: Mapped[bytes] = mapped_column(LargeBinary)
    listed: Mapped[bytes] = mapped_column(LargeBinary)  # 32 bytes per listed PDQ hash
    alpha_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PmAccountRow(Base):
    __tablename__ = "pm_account"
    __table_args__ = (UniqueConstraint("table_id", "account_id", name="uq_pm_account"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    table_id: Mapped[int] = mapped_column(ForeignKey("pm_table.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(String(256))
    received: Mapped[int] = mapped_column(Integer, default=0)
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    key_id: Mapped[str] = mapped_column(String(32), default="")
    threshold_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class PmVoucherRow(Base):
    """A voucher whose outer layer opened. ``status``: ``opened`` (below the threshold), then
    ``match``, ``not_counted`` (readable, distance > limit) or ``synthetic``."""

    __tablename__ = "pm_voucher"
    __table_args__ = (UniqueConstraint("account_pk", "voucher_id", name="uq_pm_voucher"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("pm_account.id", ondelete="CASCADE"))
    voucher_id: Mapped[str] = mapped_column(String(32))
    share_x: Mapped[str] = mapped_column(String(64))
    share_y: Mapped[str] = mapped_column(String(64))
    inner: Mapped[bytes] = mapped_column(LargeBinary)
    opened_chunks: Mapped[list[int]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="opened")
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    distance: Mapped[int | None] = mapped_column(Integer, nullable=True)
    listed_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    associated_data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class _Sealer:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def _key(self, kid: str) -> bytes:
        return group.kdf(self.keyring.get(kid, "private-matching"), _SEAL_LABEL)

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[bytes, str]:
        kid = master_key_id(self.keyring.current)
        nonce = os.urandom(12)
        return nonce + group.seal(self._key(kid), nonce, plaintext, aad), kid

    def open(self, blob: bytes, aad: bytes, kid: str) -> bytes:
        pt = group.open_(self._key(kid), blob[:12], blob[12:], aad)
        if pt is None:
            raise PrivateMatchingError("sealed private-matching key does not open", code="pm_key")
        return pt


def _view(row: PmVoucherRow) -> OuterView:
    return OuterView(
        bytes.fromhex(row.voucher_id),
        tuple(row.opened_chunks),
        True,
        (int(row.share_x, 16), int(row.share_y, 16)),
        row.inner,
    )


class PrivateMatchingService:
    """Database-backed private matching (one active table at a time)."""

    def __init__(self, db: Database, keyring: Keyring | None = None) -> None:
        self.db = db
        self._keyring = keyring
        self._lock = threading.Lock()
        self._cache: tuple[int, MatchingServer] | None = None

    @property
    def sealer(self) -> _Sealer:
        if self._keyring is None:
            self._keyring = Keyring.from_env()
        return _Sealer(self._keyring)

    # -- tables ------------------------------------------------------------------------------
    def create_table(self, pdqs: Sequence[bytes | str], params: Params) -> BlindedTable:
        """Blind ``pdqs`` into a new table and make it the active one."""
        sealer = self.sealer  # fail before the expensive build when no key is configured
        listed = [parse_pdq(p) for p in pdqs]
        key = ServerKey.generate()
        table = build_table(listed, params, key)
        sealed, kid = sealer.seal(key.alpha, _SEAL_LABEL + table.root.encode())
        with self.db.session() as s:
            s.execute(update(PmTableRow).values(active=False))
            s.add(
                PmTableRow(
                    root=table.root,
                    active=True,
                    table_bytes=table.to_bytes(),
                    listed=b"".join(listed),
                    alpha_sealed=sealed,
                    key_id=kid,
                )
            )
        return table

    def server(self) -> tuple[int, MatchingServer]:
        """The active table's id and server (cached until another table becomes active)."""
        with self.db.session() as s:
            tid = s.scalar(select(PmTableRow.id).where(PmTableRow.active.is_(True)))
        if tid is None:
            raise NotFound("no private matching table has been built yet", code="no_table")
        with self._lock:
            if self._cache is not None and self._cache[0] == tid:
                return self._cache
        with self.db.session() as s:
            row = s.get(PmTableRow, tid)
            assert row is not None
            table = BlindedTable.from_bytes(row.table_bytes, validate_points=False)
            alpha = self.sealer.open(row.alpha_sealed, _SEAL_LABEL + row.root.encode(), row.key_id)
            listed = [row.listed[i : i + PDQ_BYTES] for i in range(0, len(row.listed), PDQ_BYTES)]
        srv = MatchingServer(ServerKey(alpha), table, listed)
        with self._lock:
            self._cache = (tid, srv)
        return tid, srv

    # -- vouchers ----------------------------------------------------------------------------
    def receive(self, account_id: str, data: bytes) -> OuterView:
        tid, srv = self.server()
        view = srv.inspect(data)  # raises InvalidVoucher before anything is written
        for attempt in range(2):
            try:
                with self.db.session() as s:
                    self._receive(s, tid, srv, account_id, view)
                return view
            except IntegrityError:  # two first vouchers of one account raced; retry once
                if attempt:
                    raise
        return view

    def _account(self, s: Session, tid: int, account_id: str, *, lock: bool) -> PmAccountRow:
        q = select(PmAccountRow).where(
            PmAccountRow.table_id == tid, PmAccountRow.account_id == account_id
        )
        row = s.scalar(q.with_for_update() if lock else q)
        if row is None:
            row = PmAccountRow(table_id=tid, account_id=account_id, received=0)
            s.add(row)
            s.flush()
        return row

    def _receive(
        self, s: Session, tid: int, srv: MatchingServer, account_id: str, view: OuterView
    ) -> None:
        acct_row = self._account(s, tid, account_id, lock=True)
        acct_row.received += 1
        if not view.outer_open:
            return
        rows = {
            r.voucher_id: r
            for r in s.scalars(select(PmVoucherRow).where(PmVoucherRow.account_pk == acct_row.id))
        }
        state = AccountState(opened={bytes.fromhex(k): _view(r) for k, r in rows.items()})
        aad = _SEAL_LABEL + srv.table.root.encode() + account_id.encode()
        if acct_row.secret_sealed is not None:
            secret = self.sealer.open(acct_row.secret_sealed, aad, acct_row.key_id)
            state.polynomial_secret = int.from_bytes(secret, "big")
        had_secret = state.polynomial_secret is not None
        if not srv.process(state, view):
            return
        assert view.share is not None and view.inner is not None
        rows[view.voucher_id.hex()] = new = PmVoucherRow(
            account_pk=acct_row.id,
            voucher_id=view.voucher_id.hex(),
            share_x=f"{view.share[0]:x}",
            share_y=f"{view.share[1]:x}",
            inner=view.inner,
            opened_chunks=list(view.opened_chunks),
        )
        s.add(new)
        if state.polynomial_secret is not None and not had_secret:
            sealed, kid = self.sealer.seal(state.polynomial_secret.to_bytes(32, "big"), aad)
            acct_row.secret_sealed, acct_row.key_id = sealed, kid
            acct_row.threshold_at = dt.datetime.now(dt.UTC)
        for m in state.matches:
            r = rows[m.voucher_id]
            r.status, r.pdq, r.distance = "match", m.pdq, m.distance
            r.listed_index, r.quality, r.associated_data = (
                m.listed_index,
                m.quality,
                m.associated_data,
            )
        for vid in state.readable_not_counted:
            rows[vid].status = "not_counted"
        for vid in state.synthetic:
            rows[vid].status = "synthetic"

    def report(self, account_id: str) -> AccountReport:
        tid, srv = self.server()
        with self.db.session() as s:
            acct = s.scalar(
                select(PmAccountRow).where(
                    PmAccountRow.table_id == tid, PmAccountRow.account_id == account_id
                )
            )
            rows = (
                list(s.scalars(select(PmVoucherRow).where(PmVoucherRow.account_pk == acct.id)))
                if acct is not None
                else []
            )
            by_status: dict[str, list[PmVoucherRow]] = {}
            for r in rows:
                by_status.setdefault(r.status, []).append(r)
            matches = [
                Match(
                    r.voucher_id,
                    r.pdq or "",
                    r.quality or 0,
                    r.distance or 0,
                    r.listed_index or 0,
                    r.associated_data or b"",
                )
                for r in sorted(by_status.get("match", []), key=lambda r: r.id)
            ]
            return AccountReport(
                account_id,
                acct.received if acct else 0,
                len(rows),
                srv.params.threshold,
                bool(acct and acct.secret_sealed is not None),
                matches,
                len(by_status.get("not_counted", [])),
                len(by_status.get("synthetic", [])),
            )
