"""Exact PDQ near-neighbour index: multi-index hashing (pigeonhole) over a CSR layout, in numpy.

Design (see docs/index-format.md for the file format):

* **Main structure** (immutable except its tombstone mask): items sorted by id; ``hashes`` (n, 32)
  uint8 (gathered as one 32-byte element per candidate: one cache line); for each of the 16 chunks of 16 bits (chunk ``c`` = bytes ``2c, 2c+1`` read as a
  little-endian uint16) a CSR bucket table: ``offsets[c]`` (65537 uint32) and ``positions[c]``
  (n uint32 row numbers, grouped by chunk value).
* **Exactness**: if ``hamming(q, h) <= t`` then, summing over 16 chunks, some chunk differs by at
  most ``t // 16`` bits. For ``t <= 15`` the query probes its 16 exact chunk buckets, for
  ``16 <= t <= 31`` also the 16 one-bit neighbours of each (272 buckets); every candidate is
  verified with XOR + popcount, so the answer equals brute force. For ``t >= 32``, for tiny
  indexes, and for queries whose buckets hold more than a fraction of the index (clustered data),
  it scans all rows instead (also exact).
* **Delta + tombstones**: ``add`` appends to a small brute-forced delta buffer and tombstones the
  id's previous row, ``remove`` tombstones; both take effect for the next query. ``compact`` folds
  everything into a new main structure (built without holding the lock, so queries and mutations
  go on meanwhile; mutations made during the build are replayed onto the new structure).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lifeguard.errors import InvalidSignal
from lifeguard.index.fileformat import IndexFile, IndexFileError, write_index_file

N_CHUNKS = 16
CHUNK_BITS = 16
N_BUCKETS = 1 << CHUNK_BITS
HASH_BYTES = 32
#: Largest threshold answered through the bucket probes (radius 1 per chunk); above: full scan.
MIH_MAX_THRESHOLD = 2 * N_CHUNKS - 1

FILE_KIND = "lifeguard.pdq-index"
FILE_KIND_VERSION = 1

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Match = tuple[int, int]

_CHUNK_BASE = (np.arange(N_CHUNKS, dtype=np.int64) * (N_BUCKETS + 1))[None, :, None]
_FLIPS = np.concatenate([[0], 1 << np.arange(CHUNK_BITS)]).astype(np.int64)[None, None, :]


# --------------------------------------------------------------------------- input checking


def as_ids(ids: Any, what: str = "ids") -> I64:
    """``ids`` (array-like of integers) -> 1-D int64 array, or a precise ``ValueError``."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what}: expected integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{what}: value {int(arr.max())} does not fit in int64")
    return arr.astype(np.int64, copy=False)


def _one_hash(h: Any, where: str) -> bytes:
    if isinstance(h, str):
        s = h.strip().lower()
        if len(s) != 2 * HASH_BYTES:
            raise InvalidSignal(f"{where}: PDQ hex must be 64 hex digits, got {len(s)}")
        try:
            return bytes.fromhex(s)
        except ValueError:
            raise InvalidSignal(f"{where}: PDQ hash is not hexadecimal: {h!r}") from None
    if isinstance(h, (bytes, bytearray, memoryview)):
        b = bytes(h)
        if len(b) != HASH_BYTES:
            raise InvalidSignal(f"{where}: PDQ hash must be 32 bytes, got {len(b)}")
        return b
    if isinstance(h, np.ndarray) and h.dtype == np.uint8 and h.shape == (HASH_BYTES,):
        return h.tobytes()
    raise InvalidSignal(f"{where}: PDQ hash must be bytes, hex str or uint8 array, got {type(h)}")


def as_hash_matrix(hashes: Any, what: str = "hashes") -> U8:
    """(N, 32) uint8 array, or a sequence of 32-byte ``bytes`` / 64-digit hex strings."""
    if isinstance(hashes, np.ndarray):
        if hashes.dtype != np.uint8:
            raise InvalidSignal(f"{what}: expected dtype uint8, got {hashes.dtype}")
        if hashes.ndim == 1 and hashes.shape[0] == HASH_BYTES:
            hashes = hashes.reshape(1, HASH_BYTES)
        if hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES:
            raise InvalidSignal(f"{what}: expected shape (N, 32), got {hashes.shape}")
        return np.ascontiguousarray(hashes)
    if isinstance(hashes, (str, bytes, bytearray, memoryview)):
        raise InvalidSignal(f"{what}: expected a sequence of hashes, got a single {type(hashes)}")
    rows = [_one_hash(h, f"{what}[{i}]") for i, h in enumerate(hashes)]
    if not rows:
        return np.zeros((0, HASH_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, HASH_BYTES).copy()


def as_query_hash(h: Any) -> U8:
    if isinstance(h, np.ndarray):
        if h.dtype != np.uint8 or h.shape not in ((HASH_BYTES,), (1, HASH_BYTES)):
            raise InvalidSignal(
                f"query hash: expected uint8 array of shape (32,), got {h.dtype} {h.shape}"
            )
        return np.ascontiguousarray(h.reshape(1, HASH_BYTES))
    return np.frombuffer(_one_hash(h, "query hash"), dtype=np.uint8).reshape(1, HASH_BYTES)


def check_threshold(threshold: Any) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
        raise ValueError(f"threshold must be an int, got {type(threshold).__name__}")
    t = int(threshold)
    if not 0 <= t <= 8 * HASH_BYTES:
        raise ValueError(f"threshold must be in 0..256, got {t}")
    return t


def _words(hashes: U8) -> U64:
    """(N, 32) uint8 -> (N, 4) little-endian uint64 view."""
    return hashes.view("<u8").reshape(-1, HASH_BYTES // 8)


def _cols(hashes: U8) -> U64:
    """(N, 32) uint8 -> (4, N) uint64 column view (strided, no copy)."""
    return _words(hashes).T


def _dedup_last(ids: I64, hashes: U8) -> tuple[I64, U8]:
    """Keep the last occurrence of each id (a later add of the same id replaces the earlier)."""
    if ids.size < 2:
        return ids, hashes
    rev_ids = ids[::-1]
    _, first = np.unique(rev_ids, return_index=True)
    if first.size == ids.size:
        return ids, hashes
    keep = np.sort(ids.size - 1 - first)
    return ids[keep], hashes[keep]


# --------------------------------------------------------------------------- brute force kernel


def _empty3() -> tuple[I64, I64, I64]:
    e = np.zeros(0, dtype=np.int64)
    return e, e, e


def _scan(qwords: U64, wcols: U64, threshold: int, block: int = 1 << 20) -> tuple[I64, I64, I64]:
    """All (query index, row, distance) with distance <= threshold, by a full XOR + popcount scan
    of the (4, n) columns ``wcols`` for the (Q, 4) query words."""
    nq, n = int(qwords.shape[0]), int(wcols.shape[1])
    if nq == 0 or n == 0:
        return _empty3()
    out_q: list[I64] = []
    out_r: list[I64] = []
    out_d: list[I64] = []
    q_per = min(nq, max(1, block // n))
    rows_per = max(1, block // q_per)
    qc = [np.ascontiguousarray(qwords[:, j])[:, None] for j in range(4)]
    for q0 in range(0, nq, q_per):
        q1 = q0 + q_per
        for r0 in range(0, n, rows_per):
            r1 = min(n, r0 + rows_per)
            # words 0-1 first (uint8 sums stay exact: <= 128); words 2-3 only for survivors
            s01 = np.bitwise_count(wcols[0, None, r0:r1] ^ qc[0][q0:q1])
            s01 += np.bitwise_count(wcols[1, None, r0:r1] ^ qc[1][q0:q1])
            qi, ri = np.nonzero(s01 <= threshold)
            if qi.size == 0:
                continue
            ra = ri + r0
            s23 = np.bitwise_count(wcols[2, ra] ^ qc[2][q0:q1, 0][qi])
            s23 += np.bitwise_count(wcols[3, ra] ^ qc[3][q0:q1, 0][qi])
            d = s01[qi, ri].astype(np.int64) + s23
            keep = d <= threshold
            out_q.append(qi[keep].astype(np.int64) + q0)
            out_r.append(ra[keep].astype(np.int64))
            out_d.append(d[keep])
    if not out_q:
        return _empty3()
    return np.concatenate(out_q), np.concatenate(out_r), np.concatenate(out_d)


# --------------------------------------------------------------------------- main structure


@dataclass(eq=False)
class _Main:
    ids: I64  # (n,) strictly increasing
    hashes: U8  # (n, 32)
    offsets: U32  # (16, 65537)
    positions: U32  # (16, n)
    alive: npt.NDArray[np.bool_]  # (n,) mutable tombstone mask (True = live)
    n_alive: int
    max_bucket: int

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    def live_hashes(self) -> U8:
        if self.n_alive == self.n:
            return self.hashes
        return self.hashes[self.alive]

    def rows32(self) -> npt.NDArray[np.void]:
        """The hashes as (n,) 32-byte elements, for fast ``take``."""
        return self.hashes.view("V32").reshape(self.n)

    @classmethod
    def empty(cls) -> _Main:
        return cls.build(np.zeros(0, dtype=np.int64), np.zeros((0, HASH_BYTES), dtype=np.uint8))

    @classmethod
    def build(cls, ids: I64, hashes: U8) -> _Main:
        """From unique ids (any order) and their hashes."""
        return cls.build_consuming([ids, hashes])

    @classmethod
    def build_consuming(cls, box: list[Any]) -> _Main:
        """:meth:`build` from ``box = [ids, hashes]``, emptied first so that (when the caller
        keeps no other reference) the unsorted arrays are freed once the sorted copies exist."""
        ids: I64 = box.pop(0)
        hashes: U8 = box.pop(0)
        n = int(ids.shape[0])
        if n >= 1 << 32:
            raise ValueError("a PDQ index holds at most 2**32 - 1 items")
        order = np.argsort(ids, kind="stable")
        ids = np.ascontiguousarray(ids[order])
        hashes = np.ascontiguousarray(hashes).view("V32").reshape(n).take(order)
        hashes = hashes.view(np.uint8).reshape(n, HASH_BYTES)
        del order
        if n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise ValueError("duplicate ids in build")
        keys = hashes.view("<u2")  # (n, 16)
        offsets = np.zeros((N_CHUNKS, N_BUCKETS + 1), dtype=np.uint32)
        positions = np.empty((N_CHUNKS, n), dtype=np.uint32)
        max_bucket = 0
        for c in range(N_CHUNKS):
            col = np.ascontiguousarray(keys[:, c])  # hash bytes 2c, 2c+1 as little-endian uint16
            counts = np.bincount(col, minlength=N_BUCKETS)
            max_bucket = max(max_bucket, int(counts.max()) if n else 0)
            np.cumsum(counts, out=offsets[c, 1:], dtype=np.uint32)
            positions[c] = np.argsort(col, kind="stable")
        return cls(ids, hashes, offsets, positions, np.ones(n, dtype=np.bool_), n, max_bucket)

    def rows_of(self, ids: I64) -> I64:
        """Row of each id in this structure, -1 where absent (tombstoned rows still count)."""
        if self.n == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        rows = np.searchsorted(self.ids, ids)
        rows_c = np.minimum(rows, self.n - 1)
        found = self.ids[rows_c] == ids
        return np.where(found, rows_c, -1).astype(np.int64)

    def nbytes(self) -> int:
        return int(
            self.ids.nbytes
            + self.hashes.nbytes
            + self.offsets.nbytes
            + self.positions.nbytes
            + self.alive.nbytes
        )


@dataclass(frozen=True, eq=False)
class _Delta:
    """A consistent view of the delta buffer: slots ``[0, count)`` of the (append-only) buffers."""

    ids: I64
    hashes: U8
    alive: npt.NDArray[np.bool_]
    count: int


@dataclass(frozen=True, eq=False)
class _State:
    main: _Main
    delta: _Delta


# --------------------------------------------------------------------------- the index


class PdqIndex:
    """Exact PDQ index of ``(int64 id, 256-bit hash)`` items.

    Query results equal a brute-force scan for every threshold. Thread safety: queries may run
    in any number of threads concurrently with one mutating thread and with :meth:`compact`
    (mutations are serialised by an internal lock; each query sees every mutation that completed
    before it started).

    Tuning (keyword-only, not persisted): ``auto_compact`` – compact when the delta buffer reaches
    this many slots, synchronously inside that ``add`` call (``None``: never automatically — run
    :meth:`compact` from a background thread instead); an ``add`` of at least this many items
    builds the main structure directly; ``scan_below`` – index sizes up to this are scanned, not probed;
    ``scan_fraction`` – a query whose probed buckets hold more than this fraction of the rows is
    answered by a scan (clustered data); ``block`` – candidates verified per numpy step (bounds
    temporary memory, about 100 bytes per candidate; small blocks stay in cache); ``scan_block`` –
    (query, row) pairs per step of a full scan.
    """

    def __init__(
        self,
        *,
        auto_compact: int | None = 100_000,
        scan_below: int = 2048,
        scan_fraction: float = 0.25,
        block: int = 1 << 16,
        scan_block: int = 1 << 20,
    ) -> None:
        if auto_compact is not None and auto_compact < 1:
            raise ValueError("auto_compact must be >= 1 or None")
        if not scan_fraction > 0:
            raise ValueError(f"scan_fraction must be > 0, got {scan_fraction}")
        if block < 1 or scan_block < 1:
            raise ValueError(f"block and scan_block must be >= 1, got {block}, {scan_block}")
        self.auto_compact = auto_compact
        self.scan_below = scan_below
        self.scan_fraction = scan_fraction
        self.block = block
        self.scan_block = scan_block
        self._lock = threading.RLock()
        self._compact_lock = threading.Lock()
        self._journal: list[tuple[str, I64, U8 | None]] | None = None
        self._main = _Main.empty()
        self._d_ids = np.zeros(64, dtype=np.int64)
        self._d_hashes = np.zeros((64, HASH_BYTES), dtype=np.uint8)
        self._d_alive = np.zeros(64, dtype=np.bool_)
        self._d_count = 0
        self._d_slot: dict[int, int] = {}
        self._state = _State(self._main, _Delta(self._d_ids, self._d_hashes, self._d_alive, 0))
        self._n_compactions = 0
        self._last_compact_s = 0.0
        self._mmapped = False

    # ------------------------------------------------------------------ size / stats

    def __len__(self) -> int:
        with self._lock:
            return self._main.n_alive + len(self._d_slot)

    def __contains__(self, item_id: object) -> bool:
        if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
            return False
        with self._lock:
            if int(item_id) in self._d_slot:
                return True
            row = int(self._main.rows_of(np.array([item_id], dtype=np.int64))[0])
            return row >= 0 and bool(self._main.alive[row])

    def stats(self) -> dict[str, Any]:
        with self._lock:
            m = self._main
            return {
                "items": m.n_alive + len(self._d_slot),
                "main_rows": m.n,
                "main_live": m.n_alive,
                "tombstones": m.n - m.n_alive,
                "delta_live": len(self._d_slot),
                "delta_slots": self._d_count,
                "max_bucket": m.max_bucket,
                "main_bytes": m.nbytes(),
                "delta_bytes": int(
                    self._d_ids.nbytes + self._d_hashes.nbytes + self._d_alive.nbytes
                ),
                "mmapped": self._mmapped,
                "compactions": self._n_compactions,
                "last_compact_seconds": self._last_compact_s,
                "chunks": N_CHUNKS,
                "chunk_bits": CHUNK_BITS,
            }

    # ------------------------------------------------------------------ mutation

    def add(self, ids: Any, hashes: Any) -> None:
        """Add items; an id already present (main or delta) has its hash replaced."""
        id_arr = as_ids(ids)
        h = as_hash_matrix(hashes)
        if id_arr.shape[0] != h.shape[0]:
            raise ValueError(f"add: {id_arr.shape[0]} ids but {h.shape[0]} hashes")
        if id_arr.size == 0:
            return
        id_arr, h = _dedup_last(id_arr, h)
        big = self.auto_compact is not None and id_arr.size >= self.auto_compact
        if big and self._compact_lock.acquire(blocking=False):
            try:
                self._compact_locked(extra=(id_arr, h))
            finally:
                self._compact_lock.release()
            return
        with self._lock:
            self._add_locked(id_arr, h)
            if self._journal is not None:
                self._journal.append(("add", id_arr.copy(), h.copy()))
            need = self.auto_compact is not None and self._d_count >= self.auto_compact
        if need:
            self.compact(wait=False)

    def remove(self, ids: Any) -> int:
        """Remove items by id (unknown ids are ignored). Returns how many were live."""
        id_arr = as_ids(ids)
        if id_arr.size == 0:
            return 0
        with self._lock:
            n = self._remove_locked(id_arr)
            if self._journal is not None:
                self._journal.append(("remove", id_arr.copy(), None))
            return n

    def _tombstone_main(self, ids: I64) -> int:
        m = self._main
        rows = m.rows_of(ids)
        rows = rows[rows >= 0]
        if rows.size == 0:
            return 0
        rows = np.unique(rows)
        live = rows[m.alive[rows]]
        if live.size:
            if not m.alive.flags.writeable:  # pragma: no cover - alive is always a private copy
                m.alive = m.alive.copy()
            m.alive[live] = False
            m.n_alive -= int(live.size)
        return int(live.size)

    def _remove_locked(self, ids: I64) -> int:
        n = self._tombstone_main(ids)
        for i in ids.tolist():
            slot = self._d_slot.pop(i, None)
            if slot is not None:
                self._d_alive[slot] = False
                n += 1
        return n

    def _add_locked(self, ids: I64, hashes: U8) -> None:
        self._tombstone_main(ids)
        k = int(ids.shape[0])
        need = self._d_count + k
        if need > self._d_ids.shape[0]:
            cap = max(need, 2 * self._d_ids.shape[0])
            for name in ("_d_ids", "_d_hashes", "_d_alive"):
                old = getattr(self, name)
                new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
                new[: self._d_count] = old[: self._d_count]
                setattr(self, name, new)
        c0 = self._d_count
        self._d_ids[c0:need] = ids
        self._d_hashes[c0:need] = hashes
        self._d_alive[c0:need] = True
        slot_map = self._d_slot
        for j, i in enumerate(ids.tolist()):
            old_slot = slot_map.get(i)
            if old_slot is not None:
                self._d_alive[old_slot] = False
            slot_map[i] = c0 + j
        self._d_count = need
        self._publish()

    def _publish(self) -> None:
        self._state = _State(
            self._main, _Delta(self._d_ids, self._d_hashes, self._d_alive, self._d_count)
        )

    def _reset_delta(self) -> None:
        self._d_ids = np.zeros(64, dtype=np.int64)
        self._d_hashes = np.zeros((64, HASH_BYTES), dtype=np.uint8)
        self._d_alive = np.zeros(64, dtype=np.bool_)
        self._d_count = 0
        self._d_slot = {}

    # ------------------------------------------------------------------ compaction

    def compact(self, *, wait: bool = True) -> bool:
        """Fold the delta and tombstones into a new main structure.

        Safe to call from a background thread while other threads query and mutate. The heavy
        build runs without the lock; mutations made meanwhile are replayed onto the result.
        Returns False (doing nothing) if another compaction is running and ``wait`` is False.
        """
        if not self._compact_lock.acquire(blocking=wait):
            return False
        try:
            self._compact_locked(extra=None)
        finally:
            self._compact_lock.release()
        return True

    def _snapshot_live(self) -> tuple[I64, U8]:
        """Live (ids, hashes) of main + delta; call with the lock held."""
        m = self._main
        mi = m.ids if m.n_alive == m.n else m.ids[m.alive]
        mh = m.live_hashes()
        slots = np.fromiter(self._d_slot.values(), dtype=np.int64, count=len(self._d_slot))
        if slots.size:
            mi = np.concatenate([mi, self._d_ids[slots]])
            mh = np.concatenate([mh, self._d_hashes[slots]])
        return mi, mh

    def _compact_locked(self, extra: tuple[I64, U8] | None) -> None:
        t0 = time.perf_counter()
        with self._lock:
            if extra is None and self._d_count == 0 and self._main.n_alive == self._main.n:
                return
            ids, hashes = self._snapshot_live()
            self._journal = []
        try:
            if extra is not None:
                e_ids, e_h = extra
                if ids.size:
                    keep = ~np.isin(ids, e_ids)
                    ids = np.concatenate([ids[keep], e_ids])
                    hashes = np.concatenate([hashes[keep], e_h])
                else:
                    ids, hashes = e_ids, e_h
            box: list[Any] = [ids, hashes]
            del ids, hashes
            new_main = _Main.build_consuming(box)
        except BaseException:
            with self._lock:
                self._journal = None
            raise
        with self._lock:
            journal, self._journal = self._journal, None
            self._main = new_main
            self._mmapped = False
            self._reset_delta()
            for op, j_ids, j_h in journal or []:
                if op == "add":
                    assert j_h is not None
                    self._add_locked(j_ids, j_h)
                else:
                    self._remove_locked(j_ids)
            self._publish()
            self._n_compactions += 1
            self._last_compact_s = time.perf_counter() - t0

    # ------------------------------------------------------------------ queries

    def query(self, hash32: bytes | str | U8, threshold: int) -> list[Match]:
        """Live items within ``threshold`` bits of ``hash32``: ``[(id, distance)]`` sorted by
        distance, then id."""
        return self._query(as_query_hash(hash32), check_threshold(threshold))[0]

    def query_batch(self, hashes: Any, threshold: int) -> list[list[Match]]:
        """:meth:`query` for each row of ``hashes`` ((Q, 32) uint8 or a sequence of hashes)."""
        return self._query(as_hash_matrix(hashes, "query hashes"), check_threshold(threshold))

    def _query(self, qh: U8, t: int) -> list[list[Match]]:
        st = self._state
        nq = int(qh.shape[0])
        if nq == 0:
            return []
        qwords = _words(qh)
        parts_q: list[I64] = []
        parts_id: list[I64] = []
        parts_d: list[I64] = []
        m = st.main
        if m.n_alive:
            qi, rows, d = self._query_main(m, qh, qwords, t)
            if rows.size and m.n_alive != m.n:
                live = m.alive[rows]
                qi, rows, d = qi[live], rows[live], d[live]
            parts_q.append(qi)
            parts_id.append(m.ids[rows])
            parts_d.append(d)
        dl = st.delta
        if dl.count:
            qi, rows, d = _scan(qwords, _cols(dl.hashes[: dl.count]), t, self.scan_block)
            if rows.size:
                live = dl.alive[rows]
                parts_q.append(qi[live])
                parts_id.append(dl.ids[rows[live]])
                parts_d.append(d[live])
        return _assemble(nq, parts_q, parts_id, parts_d)

    def _query_main(self, m: _Main, qh: U8, qwords: U64, t: int) -> tuple[I64, I64, I64]:
        n = m.n
        if t > MIH_MAX_THRESHOLD or n <= self.scan_below:
            return _scan(qwords, _cols(m.hashes), t, self.scan_block)
        nq = int(qh.shape[0])
        keys = qh.view("<u2").astype(np.int64)[:, :, None]  # (Q, 16, 1)
        probes = keys if t < N_CHUNKS else keys ^ _FLIPS  # (Q, 16, F)
        flat_off = m.offsets.reshape(-1)
        bucket = probes + _CHUNK_BASE
        starts = flat_off[bucket].astype(np.int64)
        lens = flat_off[bucket + 1].astype(np.int64) - starts
        starts += (np.arange(N_CHUNKS, dtype=np.int64) * n)[None, :, None]
        starts = starts.reshape(nq, -1)
        lens = lens.reshape(nq, -1)
        per_q = lens.sum(axis=1)
        heavy = per_q > self.scan_fraction * n
        out_q: list[I64] = []
        out_r: list[I64] = []
        out_d: list[I64] = []
        if heavy.any():
            hq = np.nonzero(heavy)[0]
            qi, rows, d = _scan(qwords[hq], _cols(m.hashes), t, self.scan_block)
            out_q.append(hq[qi])
            out_r.append(rows)
            out_d.append(d)
            light = np.nonzero(~heavy)[0]
        else:
            light = None
        positions = m.positions.reshape(-1)
        rows32 = m.rows32()
        lq = np.arange(nq) if light is None else light
        # Blocks of consecutive light queries with at most ``block`` candidates (or one query).
        cum = np.cumsum(per_q[lq])
        i = 0
        while i < lq.size:
            base = int(cum[i - 1]) if i else 0
            j = int(np.searchsorted(cum, base + self.block, side="right"))
            j = max(j, i + 1)
            sel = lq[i:j]
            qi, rows, d = _probe(starts[sel], lens[sel], positions, rows32, qwords[sel], t)
            if rows.size:
                out_q.append(sel[qi])
                out_r.append(rows)
                out_d.append(d)
            i = j
        if not out_q:
            return _empty3()
        return np.concatenate(out_q), np.concatenate(out_r), np.concatenate(out_d)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole state (main structure, tombstones, delta) to one file, atomically."""
        with self._lock:
            m = self._main
            slots = np.fromiter(self._d_slot.values(), dtype=np.int64, count=len(self._d_slot))
            d_ids = self._d_ids[slots]
            d_h = self._d_hashes[slots]
            alive = m.alive.copy()
            n_alive = m.n_alive
        write_index_file(
            path,
            FILE_KIND,
            FILE_KIND_VERSION,
            {
                "n_main": m.n,
                "n_main_live": n_alive,
                "n_delta": int(d_ids.shape[0]),
                "chunks": N_CHUNKS,
                "chunk_bits": CHUNK_BITS,
                "max_bucket": m.max_bucket,
            },
            {
                "ids": m.ids,
                "hashes": m.hashes,
                "alive": alive.view(np.uint8),
                "offsets": m.offsets,
                "positions": m.positions,
                "delta_ids": d_ids,
                "delta_hashes": d_h,
            },
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        mmap: bool = False,
        verify: bool = True,
        **tuning: Any,
    ) -> PdqIndex:
        """Read an index written by :meth:`save`.

        ``mmap=True`` maps the large arrays read-only (pages load on demand, shared between
        processes); otherwise each array is read with one ``readinto``. ``verify`` checks every
        section's CRC-32 and the structure (ids sorted and unique, offsets monotone, positions in
        range). Any problem raises :class:`IndexFileError` with the reason.
        """
        f = IndexFile.open(path, FILE_KIND, {FILE_KIND_VERSION})
        meta = f.meta

        def meta_int(key: str) -> int:
            v = meta.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise IndexFileError(f"{path}: header field {key!r} is missing or invalid")
            return v

        n, n_live, n_delta = meta_int("n_main"), meta_int("n_main_live"), meta_int("n_delta")
        if meta_int("chunks") != N_CHUNKS or meta_int("chunk_bits") != CHUNK_BITS:
            raise IndexFileError(f"{path}: unsupported chunk layout {meta}")
        ids = f.array("ids", "<i8", (n,), mmap=mmap, verify=verify)
        hashes = f.array("hashes", "|u1", (n, HASH_BYTES), mmap=mmap, verify=verify)
        alive = f.array("alive", "|u1", (n,), verify=verify) != 0
        offsets = f.array("offsets", "<u4", (N_CHUNKS, N_BUCKETS + 1), verify=verify)
        positions = f.array("positions", "<u4", (N_CHUNKS, n), mmap=mmap, verify=verify)
        d_ids = f.array("delta_ids", "<i8", (n_delta,), verify=verify)
        d_h = f.array("delta_hashes", "|u1", (n_delta, HASH_BYTES), verify=verify)
        if int(alive.sum()) != n_live:
            raise IndexFileError(f"{path}: tombstone mask disagrees with n_main_live")
        if np.any(offsets[:, 0] != 0) or np.any(offsets[:, -1] != n):
            raise IndexFileError(f"{path}: bucket offsets do not span the rows")
        if np.any(np.diff(offsets.astype(np.int64), axis=1) < 0):
            raise IndexFileError(f"{path}: bucket offsets are not monotone")
        if verify:
            if n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
                raise IndexFileError(f"{path}: ids are not strictly increasing")
            if n and int(positions.max()) >= n:
                raise IndexFileError(f"{path}: bucket positions out of range")
        if n_delta > 1 and np.unique(d_ids).size != n_delta:
            raise IndexFileError(f"{path}: duplicate ids in the delta section")
        max_bucket = int(np.diff(offsets.astype(np.int64), axis=1).max()) if n else 0
        main = _Main(ids, hashes, offsets, positions, alive, n_live, max_bucket)
        if n_delta:
            rows = main.rows_of(d_ids)
            if np.any(rows >= 0) and bool(np.any(alive[rows[rows >= 0]])):
                raise IndexFileError(f"{path}: an id is live in both main and delta sections")
        idx = cls(**tuning)
        idx._main = main
        idx._mmapped = mmap
        if n_delta:
            idx._add_locked(d_ids, d_h)
        idx._publish()
        return idx

    # ------------------------------------------------------------------ helpers

    def items(self) -> tuple[I64, U8]:
        """All live (ids, hashes), sorted by id (a copy)."""
        with self._lock:
            ids, hashes = self._snapshot_live()
        order = np.argsort(ids, kind="stable")
        return ids[order], hashes[order]


def _probe(
    starts: I64, lens: I64, positions: U32, rows32: npt.NDArray[np.void], qwords: U64, t: int
) -> tuple[I64, I64, I64]:
    """Verify every row in the given bucket ranges; (query index in block, row, distance).

    ``starts``/``lens`` are (B, P) flat ranges into ``positions`` for the B queries ``qwords``;
    ``t`` <= 127 (sums of popcounts stay exact in uint8)."""
    s = starts.reshape(-1)
    ln = lens.reshape(-1)
    nz = np.nonzero(ln)[0]
    s, ln = s[nz], ln[nz]
    total = int(ln.sum())
    if total == 0:
        return _empty3()
    ends = np.cumsum(ln)
    idx = np.arange(total, dtype=np.int64)
    idx += np.repeat(s - (ends - ln), ln)
    rows = positions.take(idx)
    del idx
    g = _words(rows32.take(rows).view(np.uint8))  # (k, 4) candidate words
    if qwords.shape[0] == 1:
        q = qwords[0]
        # words 0-1 for every candidate, words 2-3 only for the few survivors
        s01 = np.bitwise_count(g[:, 0] ^ q[0])
        s01 += np.bitwise_count(g[:, 1] ^ q[1])
        k = np.nonzero(s01 <= t)[0]
        if k.size == 0:
            return _empty3()
        gk = g[k]
        d = s01[k]
        d += np.bitwise_count(gk[:, 2] ^ q[2])
        d += np.bitwise_count(gk[:, 3] ^ q[3])
        hit = np.nonzero(d <= t)[0]
        return (
            np.zeros(hit.size, dtype=np.int64),
            rows[k[hit]].astype(np.int64),
            d[hit].astype(np.int64),
        )
    qi_all = np.repeat(nz // starts.shape[1], ln)
    g ^= _words(qwords.view("V32").reshape(-1).take(qi_all).view(np.uint8))
    b = np.bitwise_count(g)  # (k, 4) uint8
    s01 = b[:, 0] + b[:, 1]
    k = np.nonzero(s01 <= t)[0]
    if k.size == 0:
        return _empty3()
    bk = b[k]
    d = s01[k]
    d += bk[:, 2]
    d += bk[:, 3]
    hit = np.nonzero(d <= t)[0]
    kh = k[hit]
    return qi_all[kh], rows[kh].astype(np.int64), d[hit].astype(np.int64)


def _assemble(
    nq: int, parts_q: Sequence[I64], parts_id: Sequence[I64], parts_d: Sequence[I64]
) -> list[list[Match]]:
    if not parts_q or sum(p.size for p in parts_q) == 0:
        return [[] for _ in range(nq)]
    qi = np.concatenate(parts_q)
    ids = np.concatenate(parts_id)
    d = np.concatenate(parts_d)
    order = np.lexsort((ids, d, qi))
    qi, ids, d = qi[order], ids[order], d[order]
    if qi.size > 1:  # the same row found through several chunks: drop adjacent duplicates
        keep = np.ones(qi.size, dtype=np.bool_)
        keep[1:] = (qi[1:] != qi[:-1]) | (ids[1:] != ids[:-1])
        if not keep.all():
            qi, ids, d = qi[keep], ids[keep], d[keep]
    pairs = list(zip(ids.tolist(), d.tolist(), strict=True))
    if nq == 1:
        return [pairs]
    bounds = np.searchsorted(qi, np.arange(nq + 1)).tolist()
    return [pairs[bounds[k] : bounds[k + 1]] for k in range(nq)]


def brute_force(ids: Iterable[int] | I64, hashes: U8, query: U8, threshold: int) -> list[Match]:
    """Reference answer by a full scan (used by tests and benchmarks)."""
    id_arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
    q = _words(as_query_hash(query))
    d = np.bitwise_count(_words(as_hash_matrix(hashes)) ^ q).sum(axis=1, dtype=np.int64)
    hit = np.nonzero(d <= threshold)[0]
    return sorted(
        zip(id_arr[hit].tolist(), d[hit].tolist(), strict=True), key=lambda p: (p[1], p[0])
    )
