"""PdqIndex: exact equality with brute force (random and clustered hashes, every threshold 0..31),
mutations visible to the next query, compaction (also concurrent), persistence and bad input."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TE_DATA
from lifeguard.errors import InvalidSignal
from lifeguard.index import IndexFileError, PdqIndex

U8 = npt.NDArray[np.uint8]
REG = TE_DATA / "pdq-data" / "reg-test-input"

# Index configurations: the bucket probes forced everywhere, defaults (small indexes are scanned),
# and tiny verification blocks (many blocks per batch, queries split across blocks).
PROBE = {"scan_below": 0, "scan_fraction": 1e9}
CONFIGS: list[dict[str, Any]] = [PROBE, {}, {**PROBE, "block": 5, "scan_block": 7}]


def reference(model: dict[int, bytes], q: bytes, t: int) -> list[tuple[int, int]]:
    """Brute force written independently of the index: unpack bits and count."""
    if not model:
        return []
    ids = np.array(list(model), dtype=np.int64)
    h = np.frombuffer(b"".join(model.values()), dtype=np.uint8).reshape(-1, 32)
    qa = np.frombuffer(q, dtype=np.uint8)
    d = np.unpackbits(h ^ qa, axis=1).sum(axis=1)
    hits = [(int(i), int(x)) for i, x in zip(ids, d, strict=True) if x <= t]
    return sorted(hits, key=lambda p: (p[1], p[0]))


def flip_bits(h: bytes, bits: list[int]) -> bytes:
    b = bytearray(h)
    for bit in bits:
        b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def clustered(rng: np.random.Generator, n: int, centres: int, max_flip: int) -> U8:
    c = rng.integers(0, 256, (centres, 32), dtype=np.uint8)
    out = np.empty((n, 32), dtype=np.uint8)
    for i in range(n):
        k = int(rng.integers(0, max_flip + 1))
        out[i] = np.frombuffer(
            flip_bits(
                c[rng.integers(centres)].tobytes(), rng.choice(256, k, replace=False).tolist()
            ),
            dtype=np.uint8,
        )
    return out


def queries_for(rng: np.random.Generator, base: U8, n_near: int, n_random: int) -> U8:
    qs = (
        [
            flip_bits(
                base[rng.integers(len(base))].tobytes(), rng.choice(256, k, replace=False).tolist()
            )
            for k in rng.integers(0, 40, n_near)
        ]
        if len(base)
        else []
    )
    qs += [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(n_random)]
    return np.frombuffer(b"".join(qs), dtype=np.uint8).reshape(-1, 32)


def check_all_thresholds(idx: PdqIndex, model: dict[int, bytes], qs: U8) -> int:
    """Every threshold 0..31 plus a few above: batch == single == reference. Returns #hits."""
    hits = 0
    for t in [*range(32), 32, 47, 256]:
        batch = idx.query_batch(qs, t)
        assert len(batch) == len(qs)
        for q, got in zip(qs, batch, strict=True):
            want = reference(model, q.tobytes(), t)
            assert got == want, (t, q.tobytes().hex())
            assert idx.query(q, t) == want
            hits += len(want)
    return hits


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_exact_vs_brute_force_mid_size(cfg: dict[str, Any], kind: str) -> None:
    rng = np.random.default_rng(7 if kind == "random" else 8)
    n = 5000
    if kind == "random":
        h = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    else:
        h = clustered(rng, n, centres=12, max_flip=24)
    ids = rng.choice(10**9, n, replace=False).astype(np.int64) - 5 * 10**8  # negative ids too
    idx = PdqIndex(**cfg)
    idx.add(ids, h)
    idx.compact()
    assert idx.stats()["main_rows"] == n and len(idx) == n
    model = {int(i): r.tobytes() for i, r in zip(ids, h, strict=True)}
    qs = queries_for(rng, h, 12, 4)
    hits = check_all_thresholds(idx, model, qs)
    assert hits > 0


@st.composite
def corpus(draw: st.DrawFn) -> tuple[U8, U8, bool]:
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(0, 300))
    is_clustered = draw(st.booleans())
    rng = np.random.default_rng(seed)
    if is_clustered:
        h = clustered(rng, n, centres=draw(st.integers(1, 6)), max_flip=draw(st.integers(0, 40)))
    else:
        h = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    qs = queries_for(rng, h, 4, 2)
    return h, qs, is_clustered


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=corpus(), cfg=st.sampled_from(CONFIGS), compacted=st.booleans())
def test_property_exact(data: tuple[U8, U8, bool], cfg: dict[str, Any], compacted: bool) -> None:
    h, qs, _ = data
    ids = np.arange(len(h), dtype=np.int64) * 3 + 1
    idx = PdqIndex(**cfg)
    idx.add(ids, h)
    if compacted:
        idx.compact()
    model = {int(i): r.tobytes() for i, r in zip(ids, h, strict=True)}
    check_all_thresholds(idx, model, qs)


_hash = st.binary(min_size=32, max_size=32)
_op = st.one_of(
    st.tuples(
        st.just("add"), st.lists(st.tuples(st.integers(-5, 40), st.integers(0, 5)), max_size=8)
    ),
    st.tuples(st.just("remove"), st.lists(st.integers(-5, 45), max_size=6)),
    st.tuples(st.just("compact"), st.none()),
    st.tuples(st.just("query"), st.integers(0, 31)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    centres=st.lists(_hash, min_size=6, max_size=6),
    ops=st.lists(_op, max_size=25),
    cfg=st.sampled_from(CONFIGS),
    seed=st.integers(0, 1000),
)
def test_property_mutations(
    centres: list[bytes], ops: list[tuple[str, Any]], cfg: dict[str, Any], seed: int
) -> None:
    """Interleaved add / replace / remove / compact / query against a dict model."""
    rng = np.random.default_rng(seed)
    idx = PdqIndex(**cfg, auto_compact=None)
    model: dict[int, bytes] = {}
    for op, arg in ops:
        if op == "add":
            items = [
                (
                    i,
                    flip_bits(
                        centres[c],
                        rng.choice(256, int(rng.integers(0, 20)), replace=False).tolist(),
                    ),
                )
                for i, c in arg
            ]
            idx.add(
                np.array([i for i, _ in items], dtype=np.int64),
                [hh for _, hh in items],
            )
            for i, hh in items:  # later duplicates in a batch win
                model[i] = hh
        elif op == "remove":
            removed = idx.remove(np.array(arg, dtype=np.int64))
            assert removed == len({i for i in arg if i in model})
            for i in arg:
                model.pop(i, None)
        elif op == "compact":
            idx.compact()
        else:
            q = flip_bits(centres[int(rng.integers(6))], rng.choice(256, 6, replace=False).tolist())
            assert idx.query(q, arg) == reference(model, q, arg)
        assert len(idx) == len(model)
    qs = np.frombuffer(b"".join(centres), dtype=np.uint8).reshape(-1, 32)
    for t in (0, 15, 16, 31):
        assert idx.query_batch(qs, t) == [reference(model, q.tobytes(), t) for q in qs]
    ids, hashes = idx.items()
    assert ids.tolist() == sorted(model)
    assert [r.tobytes() for r in hashes] == [model[i] for i in sorted(model)]


def test_reference_haystack_needles() -> None:
    """Meta's PDQ regression inputs: one 64-hex hash per line."""
    hay = (REG / "haystack.txt").read_text().split()
    needles = (REG / "needles.txt").read_text().split()
    assert len(hay) == 1350 and len(needles) == 100
    assert all(len(x) == 64 for x in hay + needles)
    model = {i: bytes.fromhex(x) for i, x in enumerate(hay)}
    total = 0
    for cfg in CONFIGS[:2]:
        idx = PdqIndex(**cfg)
        idx.add(np.arange(len(hay)), hay)
        idx.compact()
        got = idx.query_batch(needles, 31)
        for nd, res in zip(needles, got, strict=True):
            assert res == reference(model, bytes.fromhex(nd), 31)
            assert idx.query(nd, 31) == res
            total += len(res)
    assert total > 0  # the needles do match some of the haystack


def test_big_bucket_clustered_falls_back_and_stays_exact() -> None:
    """Every hash shares 15 of 16 chunks: each probe bucket is the whole index."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, 32, dtype=np.uint8)
    h = np.tile(base, (3000, 1))
    h[:, 30:32] = rng.integers(0, 256, (3000, 2), dtype=np.uint8)
    idx = PdqIndex(scan_below=0)
    idx.add(np.arange(3000), h)
    idx.compact()
    assert idx.stats()["max_bucket"] == 3000
    model = {i: r.tobytes() for i, r in enumerate(h)}
    qs = queries_for(rng, h, 3, 1)
    for t in (0, 3, 16, 31):
        assert idx.query_batch(qs, t) == [reference(model, q.tobytes(), t) for q in qs]


# --------------------------------------------------------------------------- semantics


def test_add_replace_remove_visible_immediately() -> None:
    rng = np.random.default_rng(1)
    h = rng.integers(0, 256, (4000, 32), dtype=np.uint8)
    idx = PdqIndex(**PROBE)
    idx.add(np.arange(4000), h)
    idx.compact()
    q = h[10].tobytes()
    assert idx.query(q, 0) == [(10, 0)]
    # replace id 10 with a far hash (in delta): the old one must no longer match
    far = bytes(b ^ 0xFF for b in q)
    idx.add([10], [far])
    assert idx.query(q, 31) == []
    assert idx.query(far, 0) == [(10, 0)]
    assert len(idx) == 4000
    # a new id with the same hash as id 11
    idx.add([99999], [h[11]])
    assert idx.query(h[11], 0) == [(11, 0), (99999, 0)]
    assert idx.remove([11, 123456789]) == 1  # unknown id: no-op
    assert idx.remove([11]) == 0
    assert idx.query(h[11], 0) == [(99999, 0)]
    assert len(idx) == 4000
    assert 11 not in idx and 99999 in idx and 10 in idx
    st_ = idx.stats()
    assert st_["tombstones"] == 2 and st_["delta_live"] == 2
    idx.compact()
    st_ = idx.stats()
    assert st_["tombstones"] == 0 and st_["delta_live"] == 0 and st_["main_rows"] == 4000
    assert idx.query(h[11], 0) == [(99999, 0)]
    assert idx.query(far, 0) == [(10, 0)]


def test_auto_compact_and_big_add() -> None:
    rng = np.random.default_rng(2)
    h = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    idx = PdqIndex(auto_compact=50)
    idx.add(np.arange(200), h[:200])  # >= auto_compact: built straight into main
    assert idx.stats()["main_rows"] == 200 and idx.stats()["delta_slots"] == 0
    for i in range(200, 260):
        idx.add([i], h[i : i + 1])
    assert idx.stats()["compactions"] >= 2
    assert idx.stats()["delta_slots"] < 50
    assert len(idx) == 260
    idx.add(np.arange(100, 300), h[100:300])  # big add overlapping existing ids
    assert len(idx) == 300
    model = {i: h[i].tobytes() for i in range(300)}
    for q in h[::37]:
        assert idx.query(q, 31) == reference(model, q.tobytes(), 31)


def test_empty_index_and_empty_batches() -> None:
    idx = PdqIndex()
    assert len(idx) == 0
    assert idx.query(b"\0" * 32, 31) == []
    assert idx.query_batch(np.zeros((0, 32), dtype=np.uint8), 31) == []
    idx.add(np.zeros(0, dtype=np.int64), np.zeros((0, 32), dtype=np.uint8))
    idx.compact()
    assert idx.remove([]) == 0
    assert len(idx) == 0


def test_bad_input_errors() -> None:
    idx = PdqIndex()
    with pytest.raises(InvalidSignal, match="32 bytes"):
        idx.query(b"\0" * 31, 10)
    with pytest.raises(InvalidSignal, match="hexadecimal"):
        idx.query("z" * 64, 10)
    with pytest.raises(InvalidSignal, match="64 hex digits"):
        idx.query("ab", 10)
    with pytest.raises(ValueError, match="threshold"):
        idx.query(b"\0" * 32, -1)
    with pytest.raises(ValueError, match="threshold"):
        idx.query(b"\0" * 32, 257)
    with pytest.raises(ValueError, match="threshold must be an int"):
        idx.query(b"\0" * 32, 3.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidSignal, match=r"shape \(N, 32\)"):
        idx.add([1, 2], np.zeros((2, 31), dtype=np.uint8))
    with pytest.raises(InvalidSignal, match="dtype uint8"):
        idx.add([1], np.zeros((1, 32), dtype=np.int32))
    with pytest.raises(ValueError, match="2 ids but 1 hashes"):
        idx.add([1, 2], np.zeros((1, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected integers"):
        idx.add(np.array([1.5]), np.zeros((1, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="does not fit in int64"):
        idx.remove(np.array([2**63], dtype=np.uint64))
    with pytest.raises(InvalidSignal, match=r"query hashes\[1\]"):
        idx.query_batch([b"\0" * 32, b"\0"], 3)
    assert len(idx) == 0  # nothing half-added


# --------------------------------------------------------------------------- concurrency


def test_background_compaction_with_concurrent_queries_and_mutations() -> None:
    rng = np.random.default_rng(5)
    n = 30000
    h = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    idx = PdqIndex(auto_compact=None)
    idx.add(np.arange(n), h)
    idx.compact()
    extra = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    idx.add(np.arange(n, n + 500), extra)
    stop = threading.Event()
    errors: list[BaseException] = []

    def querier() -> None:
        try:
            probe = h[:50]
            while not stop.is_set():
                for i, res in enumerate(idx.query_batch(probe, 0)):
                    # ids < 50 are never touched below: each must keep matching itself
                    assert (i, 0) in res
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=querier) for _ in range(2)]
    for t in threads:
        t.start()
    model = {i: h[i].tobytes() for i in range(n)}
    model.update({n + j: r.tobytes() for j, r in enumerate(extra)})
    compactor = threading.Thread(target=idx.compact)
    compactor.start()
    for k in range(300):  # mutations racing the compaction
        i = 100 + k
        if k % 3 == 0:
            idx.remove([i])
            model.pop(i, None)
        else:
            newh = rng.integers(0, 256, 32, dtype=np.uint8)
            idx.add([i], newh[None])
            model[i] = newh.tobytes()
    compactor.join()
    idx.compact()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert idx.stats()["compactions"] >= 2
    ids, hashes = idx.items()
    assert ids.tolist() == sorted(model)
    assert [r.tobytes() for r in hashes] == [model[i] for i in sorted(model)]
    assert len(idx) == len(model)
    for i in (100, 101, 102, 399):  # 100 removed, 101, 102, 399 replaced
        q = h[i].tobytes()
        assert idx.query(q, 0) == reference(model, q, 0)
        if i in model:
            assert (i, 0) in idx.query(model[i], 0)


# --------------------------------------------------------------------------- persistence


def _mixed_state_index() -> tuple[PdqIndex, dict[int, bytes]]:
    rng = np.random.default_rng(11)
    h = clustered(rng, 3000, centres=5, max_flip=30)
    idx = PdqIndex(**PROBE, auto_compact=None)
    idx.add(np.arange(3000) * 7, h)
    idx.compact()
    model = {i * 7: r.tobytes() for i, r in enumerate(h)}
    idx.remove([0, 7, 14])
    for i in (0, 7, 14):
        del model[i]
    extra = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    idx.add([21, 5, 6, 7, 8], extra)  # 21 replaces, 7 re-added after removal
    for i, r in zip([21, 5, 6, 7, 8], extra, strict=True):
        model[i] = r.tobytes()
    return idx, model


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path: Path, mmap: bool) -> None:
    idx, model = _mixed_state_index()
    path = tmp_path / "pdq.lgx"
    idx.save(path)
    loaded = PdqIndex.load(path, mmap=mmap, **PROBE)
    assert len(loaded) == len(idx) == len(model)
    st_a, st_b = idx.stats(), loaded.stats()
    for key in ("items", "main_rows", "tombstones", "delta_live", "max_bucket"):
        assert st_a[key] == st_b[key], key
    a_ids, a_h = idx.items()
    b_ids, b_h = loaded.items()
    assert np.array_equal(a_ids, b_ids) and np.array_equal(a_h, b_h)
    rng = np.random.default_rng(0)
    qs = queries_for(rng, np.frombuffer(b"".join(model.values()), np.uint8).reshape(-1, 32), 6, 2)
    for t in (0, 10, 31):
        assert loaded.query_batch(qs, t) == idx.query_batch(qs, t)
    # the loaded index stays mutable (also when memory-mapped)
    loaded.remove([21])
    loaded.add([1], qs[:1])
    loaded.compact()
    assert loaded.query(qs[0], 0)[0] == (1, 0)
    assert 21 not in loaded


def test_save_overwrites_atomically_and_empty_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "x.lgx"
    PdqIndex().save(path)
    assert len(PdqIndex.load(path)) == 0
    idx, _ = _mixed_state_index()
    idx.save(path)
    assert len(PdqIndex.load(path)) == len(idx)
    assert not (tmp_path / "x.lgx.tmp").exists()


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    idx, _ = _mixed_state_index()
    path = tmp_path / "pdq.lgx"
    idx.save(path)
    raw = path.read_bytes()

    def load_bytes(b: bytes, **kw: Any) -> PdqIndex:
        p = tmp_path / "bad.lgx"
        p.write_bytes(b)
        return PdqIndex.load(p, **kw)

    with pytest.raises(IndexFileError, match="truncated"):
        load_bytes(raw[: len(raw) // 2])
    with pytest.raises(IndexFileError, match="truncated"):
        load_bytes(raw[:10])
    with pytest.raises(IndexFileError, match="bad magic"):
        load_bytes(b"PK\x03\x04" + raw[4:])
    # one flipped byte in the last data section (the delta hashes) -> checksum error
    bad = bytearray(raw)
    bad[-5] ^= 0x40
    with pytest.raises(IndexFileError, match="checksum mismatch"):
        load_bytes(bytes(bad))
    # one flipped byte in the header JSON
    bad = bytearray(raw)
    bad[40] ^= 0x01
    with pytest.raises(IndexFileError, match="header checksum"):
        load_bytes(bytes(bad))
    bad = bytearray(raw)
    bad[8] = 9  # container version
    with pytest.raises(IndexFileError, match="unsupported index container version 9"):
        load_bytes(bytes(bad))
    with pytest.raises(IndexFileError, match="not found"):
        PdqIndex.load(tmp_path / "missing.lgx")
    from lifeguard.index import ExactIndex

    ex = ExactIndex(16)
    ex.add([1], ["00" * 16])
    ex.save(tmp_path / "exact.lgx")
    with pytest.raises(IndexFileError, match=r"expected 'lifeguard\.pdq-index'"):
        PdqIndex.load(tmp_path / "exact.lgx")
    assert len(PdqIndex.load(path)) == len(idx)  # the original is fine
