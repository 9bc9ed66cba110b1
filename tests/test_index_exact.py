"""ExactIndex (MD5 / SHA-256): agreement with a dict model under add / replace / remove / compact,
persistence, corrupt files and bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifeguard.errors import InvalidSignal
from lifeguard.index import ExactIndex, IndexFileError


def model_query(model: dict[int, bytes], key: bytes) -> list[int]:
    return sorted(i for i, k in model.items() if k == key)


_op = st.one_of(
    st.tuples(
        st.just("add"), st.lists(st.tuples(st.integers(-3, 30), st.integers(0, 7)), max_size=8)
    ),
    st.tuples(st.just("remove"), st.lists(st.integers(-3, 35), max_size=6)),
    st.tuples(st.just("compact"), st.none()),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    digest=st.sampled_from([16, 32]),
    keys=st.lists(st.binary(min_size=1, max_size=1), min_size=8, max_size=8),
    ops=st.lists(_op, max_size=25),
    auto=st.sampled_from([None, 3]),
    as_hex=st.booleans(),
)
def test_property_vs_dict(
    digest: int, keys: list[bytes], ops: list[tuple[str, Any]], auto: int | None, as_hex: bool
) -> None:
    # few distinct digests (some sharing a prefix, some ending in NUL bytes) so ids collide on keys
    pool = [(k * digest)[:-1] + bytes([j % 2]) for j, k in enumerate(keys)]
    idx = ExactIndex(digest, auto_compact=auto)
    model: dict[int, bytes] = {}
    for op, arg in ops:
        if op == "add":
            ks = [pool[c] for _, c in arg]
            idx.add([i for i, _ in arg], [k.hex() for k in ks] if as_hex else ks)
            for (i, _), k in zip(arg, ks, strict=True):
                model[i] = k
        elif op == "remove":
            assert idx.remove(arg) == len({i for i in arg if i in model})
            for i in arg:
                model.pop(i, None)
        else:
            idx.compact()
        assert len(idx) == len(model)
        for k in pool:
            assert idx.query(k) == model_query(model, k)
    assert idx.query_batch(pool) == [model_query(model, k) for k in pool]
    assert idx.query(b"\xee" * digest) == [] or b"\xee" * digest in model.values()


def test_md5_sha256_real_digests_bulk_and_compaction() -> None:
    n = 20000
    data = [str(i % 15000).encode() for i in range(n)]  # ids 15000.. duplicate earlier contents
    for algo, width in (("md5", 16), ("sha256", 32)):
        digests = [hashlib.new(algo, d).digest() for d in data]
        idx = ExactIndex(width, auto_compact=1000)
        idx.add(np.arange(n), digests)  # big add: built straight into the sorted main arrays
        st_ = idx.stats()
        assert st_["main_rows"] == n and st_["delta_live"] == 0
        assert idx.query(digests[3]) == [3, 15003]
        assert idx.query(digests[14999]) == [14999]
        assert idx.query(hashlib.new(algo, b"absent").hexdigest()) == []
        # replace 3's digest, remove 15003, add a new id with an old digest
        idx.add([3, 99999], [hashlib.new(algo, b"new").digest(), digests[3]])
        idx.remove([15003, 424242])
        assert idx.query(digests[3]) == [99999]
        assert idx.query(hashlib.new(algo, b"new").hexdigest().upper()) == [3]
        assert len(idx) == n
        idx.compact()
        assert idx.stats()["tombstones"] == 0 and idx.stats()["delta_live"] == 0
        assert idx.query(digests[3]) == [99999]
        assert idx.query_batch([digests[5], digests[20]]) == [[5, 15005], [20, 15020]]
        # about 20 bytes per item beyond the digest itself
        assert st_["main_bytes"] <= n * (width + 24)


@pytest.mark.parametrize("width", [16, 32])
def test_save_load_round_trip(tmp_path: Path, width: int) -> None:
    rng = np.random.default_rng(width)
    keys = rng.integers(0, 256, (500, width), dtype=np.uint8)
    keys[100:110] = keys[0]  # shared digests
    idx = ExactIndex(width, auto_compact=None)
    idx.add(np.arange(500), keys)
    idx.compact()
    idx.remove([1, 2])
    idx.add([3, 1000], keys[:2])  # replacement + new id in the delta
    p = tmp_path / "exact.lgx"
    idx.save(p)
    loaded = ExactIndex.load(p)
    assert loaded.digest_bytes == width and len(loaded) == len(idx)
    for k in [*keys[:12], b"\x01" * width]:
        assert loaded.query(bytes(k)) == idx.query(bytes(k))
    assert loaded.stats()["tombstones"] == idx.stats()["tombstones"]
    loaded.compact()
    assert loaded.query(bytes(keys[0])) == [0, 3, *range(100, 110)]


def test_corrupt_truncated_and_wrong_kind(tmp_path: Path) -> None:
    idx = ExactIndex(16)
    idx.add([1, 2, 3], [b"a" * 16, b"b" * 16, b"c" * 16])
    idx.compact()
    p = tmp_path / "e.lgx"
    idx.save(p)
    raw = p.read_bytes()
    bad = tmp_path / "bad.lgx"
    bad.write_bytes(raw[:-30])
    with pytest.raises(IndexFileError, match="truncated"):
        ExactIndex.load(bad)
    flipped = bytearray(raw)
    flipped[raw.index(b"b" * 16) + 3] ^= 1  # inside the sorted digests section
    bad.write_bytes(bytes(flipped))
    with pytest.raises(IndexFileError, match="checksum mismatch"):
        ExactIndex.load(bad)
    bad.write_bytes(b"")
    with pytest.raises(IndexFileError, match="truncated"):
        ExactIndex.load(bad)
    from lifeguard.index import PdqIndex

    PdqIndex().save(tmp_path / "pdq.lgx")
    with pytest.raises(IndexFileError, match="kind"):
        ExactIndex.load(tmp_path / "pdq.lgx")
    with pytest.raises(IndexFileError, match="directory"):
        ExactIndex.load(tmp_path)


def test_bad_input() -> None:
    idx = ExactIndex(16)
    with pytest.raises(InvalidSignal, match="32 hex digits"):
        idx.query("abc")
    with pytest.raises(InvalidSignal, match="not hexadecimal"):
        idx.query("g" * 32)
    with pytest.raises(InvalidSignal, match="16 bytes"):
        idx.query(b"x" * 32)
    with pytest.raises(InvalidSignal, match=r"keys\[1\]"):
        idx.add([1, 2], ["00" * 16, "00" * 15])
    with pytest.raises(ValueError, match="2 ids but 1 keys"):
        idx.add([1, 2], ["00" * 16])
    with pytest.raises(InvalidSignal, match="single"):
        idx.add([1], "00" * 16)
    with pytest.raises(ValueError, match="digest_bytes"):
        ExactIndex(0)
    assert len(idx) == 0
    assert idx.query("0x" + "00" * 16) == []


def test_structurally_invalid_file_with_valid_checksums(tmp_path: Path) -> None:
    """A well-formed container whose digests are out of order (or ids repeat) is rejected."""
    from lifeguard.index.fileformat import write_index_file

    def write(keys: list[bytes], ids: list[int]) -> Path:
        p = tmp_path / "crafted.lgx"
        write_index_file(
            p,
            "lifeguard.exact-index",
            1,
            {"digest_bytes": 4, "n_main": len(keys), "n_main_live": len(keys), "n_delta": 0},
            {
                "keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 4),
                "ids": np.array(ids, dtype=np.int64),
                "alive": np.ones(len(keys), dtype=np.uint8),
                "delta_ids": np.zeros(0, dtype=np.int64),
                "delta_keys": np.zeros((0, 4), dtype=np.uint8),
            },
        )
        return p

    assert ExactIndex.load(write([b"a\0\0\0", b"a\0\0\1"], [2, 1])).query(b"a\0\0\1") == [1]
    with pytest.raises(IndexFileError, match="not sorted"):
        ExactIndex.load(write([b"b\0\0\0", b"a\0\0\0"], [1, 2]))
    with pytest.raises(IndexFileError, match="duplicate ids"):
        ExactIndex.load(write([b"a\0\0\0", b"b\0\0\0"], [1, 1]))
