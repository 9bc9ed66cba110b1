"""lifeguard.e2ee.private_matching: protocol behaviour end to end (small tables, few photos)."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from conftest import PHOTOS
from lifeguard.e2ee.private_matching import (
    AccountState,
    BlindedTable,
    CommitmentMismatch,
    InvalidTable,
    InvalidVoucher,
    MatchingServer,
    Params,
    PrivateMatchingError,
    ServerKey,
    build_table,
    make_voucher,
    shamir,
    voucher_size,
)
from lifeguard.e2ee.private_matching.params import chunk_values

RNG = random.Random(1234)
Setup = tuple[list[bytes], ServerKey, BlindedTable]


def rand_pdq() -> bytes:
    return RNG.randbytes(32)


def flip(pdq: bytes, bits: list[int]) -> bytes:
    v = int.from_bytes(pdq, "big")
    for b in bits:
        v ^= 1 << b
    return v.to_bytes(32, "big")


def dist(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@pytest.fixture(scope="module")
def setup() -> Setup:
    listed = [rand_pdq() for _ in range(24)]
    key = ServerKey.generate()
    table = build_table(listed, Params(threshold=3, synthetic_rate=0.0), key)
    return listed, key, table


def fresh(
    setup: tuple[list[bytes], ServerKey, BlindedTable],
) -> tuple[MatchingServer, AccountState]:
    listed, key, table = setup
    client_table = BlindedTable.from_bytes(table.to_bytes(), expected_root=table.root)
    return MatchingServer(key, table, listed), AccountState.for_table(client_table)


def test_threshold_gates_inner_layers(setup: Setup) -> None:
    listed, _, table = setup
    srv, acct = fresh(setup)
    near = flip(listed[1], [3, 77, 140, 200, 255])  # distance 5
    for pdq in (listed[0], near):
        view = srv.receive("alice", make_voucher(pdq, table, acct))
        assert view.outer_open
    srv.receive("alice", make_voucher(rand_pdq(), table, acct))  # not listed: never opens
    rep = srv.report("alice")
    assert (rep.received, rep.opened, rep.threshold_reached, rep.matches) == (3, 2, False, [])
    srv.receive("alice", make_voucher(listed[2], table, acct, associated_data=b"media-ref-7"))
    rep = srv.report("alice")
    assert rep.threshold_reached and rep.opened == 3
    got = {(m.listed_index, m.distance) for m in rep.matches}
    assert got == {(0, 0), (1, 5), (2, 0)}
    assert rep.actionable
    assert {m.associated_data for m in rep.matches} == {b"", b"media-ref-7"}
    # Past the threshold every new match is read at once.
    srv.receive("alice", make_voucher(listed[5], table, acct))
    assert len(srv.report("alice").matches) == 4
    # Another account's vouchers do not add up with alice's.
    other = AccountState.for_table(table)
    for i in range(2):
        srv.receive("bob", make_voucher(listed[i], table, other))
    assert not srv.report("bob").threshold_reached


def test_copies_below_chunk_count_always_open(setup: Setup) -> None:
    listed, _, table = setup
    srv, acct = fresh(setup)
    for n in range(8):  # 8 chunks: any copy within distance 7 keeps a whole chunk
        bits = RNG.sample(range(256), 7)
        assert srv.inspect(make_voucher(flip(listed[n], bits), table, acct)).outer_open


def test_distinct_photo_sharing_a_chunk_is_readable_but_not_counted(setup: Setup) -> None:
    listed, _, table = setup
    srv, acct = fresh(setup)
    # Same first 32-bit chunk as listed[0], every other bit inverted: distance 224.
    lookalike = listed[0][:4] + bytes(b ^ 0xFF for b in listed[0][4:])
    assert dist(lookalike, listed[0]) == 224
    view = srv.receive("carol", make_voucher(lookalike, table, acct))
    assert view.outer_open and view.opened_chunks == (0,)
    for i in (3, 4):
        srv.receive("carol", make_voucher(listed[i], table, acct))
    rep = srv.report("carol")
    assert rep.threshold_reached
    assert rep.readable_not_counted == 1
    assert sorted(m.listed_index for m in rep.matches) == [3, 4]
    assert not rep.actionable  # two counted matches < threshold 3
    srv.receive("carol", make_voucher(listed[6], table, acct))
    assert srv.report("carol").actionable


def test_synthetic_vouchers_hidden_then_identified(setup: Setup) -> None:
    listed, _, table = setup
    srv, acct = fresh(setup)
    for _ in range(2):
        view = srv.receive("dan", make_voucher(rand_pdq(), table, acct, synthetic=True))
        assert view.outer_open and 1 <= len(view.opened_chunks) <= 8
    srv.receive("dan", make_voucher(listed[0], table, acct))
    rep = srv.report("dan")
    assert rep.opened == 3 and not rep.threshold_reached  # 3 opened, only 1 real
    for i in (1, 2):
        srv.receive("dan", make_voucher(listed[i], table, acct))
    rep = srv.report("dan")
    assert rep.threshold_reached
    assert rep.synthetic_identified == 2 and len(rep.matches) == 3


def test_berlekamp_welch_path_without_subset_search(setup: Setup) -> None:
    listed, _, table = setup
    srv, acct = fresh(setup)
    srv.max_subsets = 0
    srv.receive("erin", make_voucher(rand_pdq(), table, acct, synthetic=True))
    for i in range(3):
        srv.receive("erin", make_voucher(listed[i], table, acct))
    assert not srv.report("erin").threshold_reached  # 3 real + 1 bad < t + 2e for BW
    srv.receive("erin", make_voucher(listed[3], table, acct))
    rep = srv.report("erin")
    assert rep.threshold_reached and len(rep.matches) == 4 and rep.synthetic_identified == 1


def test_table_commitment_and_parsing(setup: Setup) -> None:
    _, _, table = setup
    data = table.to_bytes()
    assert len(data) == table.size_bytes
    assert BlindedTable.from_bytes(data, expected_root=table.root).slots == table.slots
    # Two slots swapped: still valid points, different commitment.
    other = BlindedTable(table.params, table.seed, table.server_public, list(table.slots))
    other.slots[0], other.slots[1] = other.slots[1], other.slots[0]
    with pytest.raises(CommitmentMismatch) as err:
        BlindedTable.from_bytes(other.to_bytes(), expected_root=table.root)
    assert err.value.code == "commitment_mismatch"
    with pytest.raises(InvalidTable):
        BlindedTable.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(InvalidTable):
        BlindedTable.from_bytes(data[:-5])
    for junk in (b"\xff" * 32, bytes(32)):  # not canonical; the identity
        bad = bytearray(data)
        bad[-32:] = junk
        with pytest.raises(InvalidTable):
            BlindedTable.from_bytes(bytes(bad))


def test_voucher_errors(setup: Setup) -> None:
    listed, _, table = setup
    srv, acct = fresh(setup)
    v = make_voucher(listed[0], table, acct)
    assert len(v) == voucher_size(table.params) <= 4096
    with pytest.raises(InvalidVoucher) as err:
        srv.inspect(v[:-1])
    assert err.value.code == "invalid_voucher"
    with pytest.raises(InvalidVoucher):
        srv.inspect(b"NOPE" + v[4:])
    with pytest.raises(InvalidVoucher):  # Q is not a point
        srv.inspect(v[:52] + b"\xff" * 32 + v[84:])
    with pytest.raises(InvalidVoucher):  # Q is the identity
        srv.inspect(v[:52] + bytes(32) + v[84:])
    other_table = build_table(listed, table.params, ServerKey.generate())
    with pytest.raises(InvalidVoucher):  # made against another table
        srv.inspect(make_voucher(listed[0], other_table, acct))
    with pytest.raises(PrivateMatchingError):
        make_voucher(listed[0], table, AccountState.new(5))
    with pytest.raises(PrivateMatchingError):
        make_voucher(listed[0], table, acct, associated_data=b"x" * 65)
    with pytest.raises(PrivateMatchingError):
        make_voucher("zz" * 32, table, acct)


def test_server_key_must_match_table(setup: Setup) -> None:
    listed, _, table = setup
    with pytest.raises(PrivateMatchingError):
        MatchingServer(ServerKey.generate(), table, listed)


def test_account_state_json() -> None:
    s = AccountState.new(4)
    assert AccountState.from_json(s.to_json()) == s
    for bad in ("{", '{"v": 1, "threshold": 2, "coefficients": ["1"]}', '{"v": 2}'):
        with pytest.raises(PrivateMatchingError):
            AccountState.from_json(bad)


def test_params_validation() -> None:
    with pytest.raises(PrivateMatchingError):
        Params(chunks=7)
    with pytest.raises(PrivateMatchingError):
        Params(chunk_threshold=9)
    with pytest.raises(PrivateMatchingError):
        Params(synthetic_open=(12,))
    p = Params(views=2, chunks=8, chunk_threshold=2, synthetic_open=(12, 16))
    assert Params.unpack(p.pack())[0] == p
    assert Params(views=2).synthetic_open_counts == (16,)
    mixed = Params(chunk_threshold=3).synthetic_open_counts
    assert min(mixed) == 3 and max(mixed) == 8 and len(set(mixed)) > 3
    pdq = rand_pdq()
    values = chunk_values(pdq, p)
    assert len(values) == 16 and b"".join(values[:8]) == pdq
    # The second view is a permutation of the same bits.
    second = int.from_bytes(b"".join(values[8:]), "big")
    assert second.bit_count() == int.from_bytes(pdq, "big").bit_count()
    assert b"".join(values[8:]) != pdq


def test_shamir_robust_reconstruct() -> None:
    f = shamir.random_polynomial(42, 5)
    xs = RNG.sample(range(1, 10**6), 12)
    good = [(x, shamir.evaluate(f, x)) for x in xs[:9]]
    bad = [(x, RNG.randrange(shamir.P)) for x in xs[9:]]
    assert shamir.robust_reconstruct(good + bad, 5) == f  # 12 >= 5 + 2*3
    assert shamir.robust_reconstruct(good[:7] + bad, 5) is None  # 10 < 5 + 2*3
    assert shamir.interpolate_at_zero(good[:5]) == 42
    assert shamir.interpolate_polynomial(good[:5]) == f


def test_real_photo_and_reencoded_copy_match() -> None:
    photo = sorted(PHOTOS.glob("kodak/*.png"))[0]
    im = Image.open(photo).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=60)
    others = [rand_pdq() for _ in range(5)]
    from lifeguard.signals.hasher import hash_file

    listed = [bytes.fromhex(hash_file(photo).pdq or ""), *others]
    key = ServerKey.generate()
    table = build_table(listed, Params(threshold=1, synthetic_rate=0.0), key)
    srv = MatchingServer(key, table, listed)
    acct = AccountState.for_table(table)
    srv.receive("frank", make_voucher(buf.getvalue(), table, acct))
    srv.receive("frank", make_voucher(photo, table, acct))
    rep = srv.report("frank")
    assert [m.listed_index for m in rep.matches] == [0, 0]
    assert rep.matches[1].distance == 0 and rep.matches[0].distance <= 10


def test_default_synthetic_rate_is_used(setup: Setup) -> None:
    listed, key, _ = setup
    table = build_table(listed, Params(threshold=3, synthetic_rate=0.5), key)
    srv = MatchingServer(key, table, listed)
    acct = AccountState.for_table(table)
    opened = sum(srv.inspect(make_voucher(rand_pdq(), table, acct)).outer_open for _ in range(40))
    assert 8 <= opened <= 32  # Binomial(40, 0.5), not listed: only synthetic ones open
