"""Server side: open what the protocol lets it open, count per account, and read inner layers only past
the threshold, then check the full PDQ distance.

Per voucher the server computes ``alpha * Q`` for each pair and tries the derived key on ``c``. A pair
opens only when the client's chunk element is in the list (or the voucher is synthetic). With
``chunk_threshold`` chunk shares the voucher key, hence the outer layer, opens: the server then holds
one share of the account polynomial and a sealed inner layer. Unopened vouchers are dropped.

Once an account holds at least ``threshold`` opened vouchers, the server tries to rebuild the account
polynomial (Berlekamp-Welch, tolerant of the random shares of synthetic vouchers); on success it decrypts
the inner layers of the opened vouchers and counts a voucher as a **match** only when its PDQ hash is
within ``match_distance`` of a listed hash. Opened = payload readable AND counted (see
docs/private-matching.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import group, shamir
from .client import inner_key_from_secret
from .params import InvalidVoucher, PrivateMatchingError, parse_pdq
from .table import BlindedTable, ServerKey
from .voucher import AD_MAX, NONCE_BYTES, OUTER_LABEL, Voucher, pair_info


@dataclass(frozen=True)
class OuterView:
    """Everything the server learns from one voucher before its account reaches the threshold."""

    voucher_id: bytes
    opened_chunks: tuple[int, ...]  # chunk indices whose pair opened
    outer_open: bool
    share: tuple[int, int] | None  # the account share (x, y) when the outer layer opened
    inner: bytes | None  # nonce || sealed inner layer, unreadable before the threshold


@dataclass(frozen=True)
class Match:
    voucher_id: str
    pdq: str
    quality: int
    distance: int
    listed_index: int
    associated_data: bytes


@dataclass
class AccountState:
    """Server-side state of one account (only opened vouchers are kept)."""

    opened: dict[bytes, OuterView] = field(default_factory=dict)
    polynomial_secret: int | None = None
    matches: list[Match] = field(default_factory=list)
    readable_not_counted: list[str] = field(default_factory=list)
    synthetic: list[str] = field(default_factory=list)
    received: int = 0


@dataclass(frozen=True)
class AccountReport:
    account_id: str
    received: int
    opened: int
    threshold: int
    threshold_reached: bool  # the account polynomial was rebuilt: opened inner layers are readable
    matches: list[Match]
    readable_not_counted: int
    synthetic_identified: int

    @property
    def actionable(self) -> bool:
        """At least ``threshold`` vouchers passed the full distance check (not just opened shares:
        a chunk coincidence of a distinct photo adds a real share but is never counted)."""
        return len(self.matches) >= self.threshold


class MatchingServer:
    """In-memory server state for one blinded table (the list and the blinding key stay here)."""

    #: Largest number of t-subsets tried when Berlekamp-Welch cannot separate synthetic shares.
    max_subsets = 2000

    def __init__(self, key: ServerKey, table: BlindedTable, listed: Sequence[bytes | str]) -> None:
        if key.public != table.server_public:
            raise PrivateMatchingError("this key did not blind this table")
        self.key = key
        self.table = table
        self.params = table.params
        self.root = bytes.fromhex(table.root)
        self.listed: npt.NDArray[np.uint8] = np.frombuffer(
            b"".join(parse_pdq(p) for p in listed), dtype=np.uint8
        ).reshape(-1, 32)
        self.accounts: dict[str, AccountState] = {}

    # -- one voucher -------------------------------------------------------------------------
    def inspect(self, data: bytes) -> OuterView:
        """Open what can be opened without any account state (the server's whole per-voucher view)."""
        v = Voucher.from_bytes(data, self.params)
        if v.root != self.root:
            raise InvalidVoucher("voucher was made against a different table (root differs)")
        opened: list[tuple[int, int]] = []  # (chunk, share)
        for idx, (q, c) in enumerate(v.pairs):
            j = idx // 2
            if any(o[0] == j for o in opened):
                continue
            try:
                s = group.mul(self.key.alpha, q)
            except (ValueError, RuntimeError, TypeError):
                raise InvalidVoucher(f"pair {idx}: Q is not a valid ristretto255 point") from None
            key = group.kdf(s, pair_info(v.voucher_id, v.root, j, q))
            pt = group.open_once(key, c, v.voucher_id)
            if pt is not None:
                opened.append((j, group.scalar_to_int(pt)))
        share = None
        inner = None
        k = self.params.chunk_threshold
        if len(opened) >= k:
            pts = [(j + 1, y) for j, y in opened[:k]]
            secret = shamir.interpolate_at_zero(pts)
            outer_key = group.kdf(group.int_to_scalar(secret), OUTER_LABEL + v.voucher_id)
            pt = group.open_once(outer_key, v.outer, v.header)
            if pt is not None:
                share = (group.scalar_to_int(pt[:32]), group.scalar_to_int(pt[32:64]))
                inner = pt[64:]
        return OuterView(
            v.voucher_id,
            tuple(o[0] for o in opened),
            share is not None,
            share,
            inner,
        )

    # -- accounts ----------------------------------------------------------------------------
    def receive(self, account_id: str, data: bytes) -> OuterView:
        """Process a voucher for ``account_id``; keeps it only when its outer layer opened."""
        view = self.inspect(data)
        acct = self.accounts.setdefault(account_id, AccountState())
        acct.received += 1
        self.process(acct, view)
        return view

    def process(self, acct: AccountState, view: OuterView) -> bool:
        """Add an inspected voucher to an account's state (True when it was kept). Storage-agnostic:
        :class:`~lifeguard.e2ee.private_matching.store.PrivateMatchingService` loads and saves
        ``acct`` around this call."""
        if not view.outer_open or view.voucher_id in acct.opened:
            return False
        if view.share is None or view.share[0] == 0:
            return False
        if any(o.share is not None and o.share[0] == view.share[0] for o in acct.opened.values()):
            return False  # a repeated x would break reconstruction; keep the first
        acct.opened[view.voucher_id] = view
        if acct.polynomial_secret is not None:
            self._read_inner(acct, [view])
        elif len(acct.opened) >= self.params.threshold:
            self._try_threshold(acct)
        return True

    def _try_threshold(self, acct: AccountState) -> None:
        views = list(acct.opened.values())
        shares = [v.share for v in views if v.share is not None]
        t = self.params.threshold
        candidates: Iterable[list[int] | None] = [shamir.robust_reconstruct(shares, t)]
        if math.comb(len(shares), t) <= self.max_subsets:
            # Too many synthetic shares for Berlekamp-Welch: try every t-subset (bounded work).
            candidates = itertools.chain(
                candidates,
                (shamir.interpolate_polynomial(c) for c in itertools.combinations(shares, t)),
            )
        for poly in candidates:
            if poly is not None and self._accept(acct, views, poly):
                return

    def _accept(self, acct: AccountState, views: list[OuterView], poly: list[int]) -> bool:
        # Accept the polynomial only if it opens the inner layer of every share on it (with exactly
        # ``threshold`` shares any set of points fits a polynomial, synthetic ones included).
        key = inner_key_from_secret(poly[0])
        on_poly = [v for v in views if v.share and shamir.evaluate(poly, v.share[0]) == v.share[1]]
        for v in on_poly:
            assert v.inner is not None
            if group.open_(key, v.inner[:NONCE_BYTES], v.inner[NONCE_BYTES:], v.voucher_id) is None:
                return False
        acct.polynomial_secret = poly[0]
        self._read_inner(acct, views)
        return True

    def _read_inner(self, acct: AccountState, views: Iterable[OuterView]) -> None:
        assert acct.polynomial_secret is not None
        key = inner_key_from_secret(acct.polynomial_secret)
        for v in views:
            vid = v.voucher_id.hex()
            assert v.inner is not None
            pt = group.open_(key, v.inner[:NONCE_BYTES], v.inner[NONCE_BYTES:], v.voucher_id)
            if pt is None:
                acct.synthetic.append(vid)
                continue
            pdq = pt[:32]
            quality, ad_len = pt[32], min(pt[33], AD_MAX)
            q = np.frombuffer(pdq, dtype=np.uint8)
            dists = np.unpackbits(np.bitwise_xor(self.listed, q), axis=1).sum(axis=1)
            best = int(np.argmin(dists))
            dist = int(dists[best])
            if dist <= self.params.match_distance:
                acct.matches.append(
                    Match(vid, pdq.hex(), quality, dist, best, bytes(pt[34 : 34 + ad_len]))
                )
            else:
                acct.readable_not_counted.append(vid)

    def report(self, account_id: str) -> AccountReport:
        acct = self.accounts.get(account_id, AccountState())
        return AccountReport(
            account_id,
            acct.received,
            len(acct.opened),
            self.params.threshold,
            acct.polynomial_secret is not None,
            list(acct.matches),
            len(acct.readable_not_counted),
            len(acct.synthetic),
        )
