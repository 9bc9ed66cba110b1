"""Property tests (hypothesis) for private matching: what the server can and cannot do before the
threshold."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifeguard.e2ee.private_matching import (
    AccountState,
    MatchingServer,
    Params,
    ServerKey,
    build_table,
    group,
    make_voucher,
    shamir,
    voucher_size,
)
from lifeguard.e2ee.private_matching.client import inner_key_from_secret
from lifeguard.e2ee.private_matching.params import chunk_values
from lifeguard.e2ee.private_matching.voucher import NONCE_BYTES

FAST = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
pdqs = st.binary(min_size=32, max_size=32)


def _any_inner_readable(srv: MatchingServer, account: str, t: int) -> bool:
    """Try every key the opened shares can give: each subset of size <= t, interpolated at zero."""
    views = list(srv.accounts[account].opened.values()) if account in srv.accounts else []
    shares = [v.share for v in views if v.share]
    for size in range(1, min(t, len(shares)) + 1):
        for subset in itertools.combinations(shares, size):
            key = inner_key_from_secret(shamir.interpolate_at_zero(subset))
            for v in views:
                assert v.inner is not None
                nonce, ct = v.inner[:NONCE_BYTES], v.inner[NONCE_BYTES:]
                if group.open_(key, nonce, ct, v.voucher_id) is not None:
                    return True
    return False


@FAST
@given(
    listed=st.lists(pdqs, min_size=4, max_size=8, unique=True),
    threshold=st.integers(2, 4),
    data=st.data(),
)
def test_below_threshold_no_payload_is_readable(
    listed: list[bytes], threshold: int, data: st.DataObject
) -> None:
    real = data.draw(st.integers(0, threshold - 1), label="real matches")
    synthetic = data.draw(st.integers(0, 3), label="synthetic")
    others = data.draw(st.lists(pdqs, max_size=3), label="not listed")
    listed_chunks = {(i, c) for p in listed for i, c in enumerate(chunk_values(p, Params()))}
    others = [  # drop ones that share a chunk with the list (those may open: tested elsewhere)
        o for o in others if not listed_chunks & set(enumerate(chunk_values(o, Params())))
    ]
    key = ServerKey.generate()
    table = build_table(listed, Params(threshold=threshold, synthetic_rate=0.0), key)
    srv = MatchingServer(key, table, listed)
    acct = AccountState.for_table(table)
    for p in listed[:real]:
        srv.receive("acct", make_voucher(p, table, acct))
    for p in others:
        srv.receive("acct", make_voucher(p, table, acct))
    for i in range(synthetic):
        p = (others or listed)[i % len(others or listed)]
        srv.receive("acct", make_voucher(p, table, acct, synthetic=True))
    rep = srv.report("acct")
    assert not rep.threshold_reached
    assert rep.matches == [] and rep.readable_not_counted == 0
    assert rep.opened == real + synthetic
    # Not only the server's own procedure: no key from any subset of the opened shares works.
    assert not _any_inner_readable(srv, "acct", threshold)


@FAST
@given(listed=st.lists(pdqs, min_size=2, max_size=6, unique=True), pick=st.integers(0, 5))
def test_matching_and_synthetic_vouchers_look_alike_before_threshold(
    listed: list[bytes], pick: int
) -> None:
    params = Params(threshold=3, synthetic_rate=0.0, synthetic_open=(8,))
    key = ServerKey.generate()
    table = build_table(listed, params, key)
    srv = MatchingServer(key, table, listed)
    acct = AccountState.for_table(table)
    real = make_voucher(listed[pick % len(listed)], table, acct)
    fake = make_voucher(listed[pick % len(listed)], table, acct, synthetic=True)
    a, b = srv.inspect(real), srv.inspect(fake)
    assert len(real) == len(fake) == voucher_size(params)
    # Same shape of the server's view: every chunk opens, the outer layer opens, a share and an
    # inner layer of the same length appear, share values are field elements.
    assert a.opened_chunks == b.opened_chunks == tuple(range(params.n_chunks))
    assert a.outer_open and b.outer_open
    assert a.share is not None and b.share is not None
    assert all(0 < v[0] < shamir.P and 0 <= v[1] < shamir.P for v in (a.share, b.share))
    assert a.inner is not None and b.inner is not None and len(a.inner) == len(b.inner)
    # Neither inner layer can be read with a key the server could derive from one share.
    for v in (a, b):
        assert v.share is not None and v.inner is not None
        k = inner_key_from_secret(shamir.interpolate_at_zero([v.share]))
        assert group.open_(k, v.inner[:12], v.inner[12:], v.voucher_id) is None


@FAST
@given(listed=st.lists(pdqs, min_size=1, max_size=4, unique=True), data=st.data())
def test_copies_within_chunk_count_open_and_count(listed: list[bytes], data: st.DataObject) -> None:
    params = Params(threshold=1, synthetic_rate=0.0)
    key = ServerKey.generate()
    table = build_table(listed, params, key)
    srv = MatchingServer(key, table, listed)
    acct = AccountState.for_table(table)
    bits = data.draw(st.lists(st.integers(0, 255), max_size=params.chunks - 1, unique=True))
    v = int.from_bytes(listed[0], "big")
    for b in bits:
        v ^= 1 << b
    srv.receive("a", make_voucher(v.to_bytes(32, "big"), table, acct))
    rep = srv.report("a")
    assert len(rep.matches) == 1 and rep.matches[0].distance <= len(bits)


@FAST
@given(k=st.integers(1, 6), bad=st.integers(0, 4), extra=st.integers(0, 3))
def test_robust_reconstruct_recovers_with_enough_real_shares(k: int, bad: int, extra: int) -> None:
    import secrets

    f = shamir.random_polynomial(secrets.randbelow(shamir.P), k)
    good_n = k + bad + extra  # n = good + bad >= k + 2 * bad
    xs = list({secrets.randbelow(shamir.P - 1) + 1 for _ in range(good_n + bad)})
    shares = [(x, shamir.evaluate(f, x)) for x in xs[:good_n]]
    shares += [(x, secrets.randbelow(shamir.P)) for x in xs[good_n:]]
    assert shamir.robust_reconstruct(shares, k) == f
