"""Exact-match index for fixed-width digests (MD5: 16 bytes, SHA-256: 32 bytes).

Main structure: digests as a sorted fixed-width bytes array (numpy ``S<d>``) with the item ids
alongside, looked up with ``searchsorted``; an id-sorted copy of the ids (+ row numbers) finds the
row to tombstone on remove/replace. Recent changes live in a small delta (two dicts) until
:meth:`ExactIndex.compact`. About ``d + 20`` bytes per item (52 for SHA-256), not a Python dict of
strings.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from lifeguard.errors import InvalidSignal
from lifeguard.index.fileformat import IndexFile, IndexFileError, write_index_file
from lifeguard.index.pdq import I64, U8, as_ids

FILE_KIND = "lifeguard.exact-index"
FILE_KIND_VERSION = 1


def _sort_order(keys: U8, ids: I64) -> I64:
    """Row order sorting by (key bytes lexicographically, id)."""
    n, d = keys.shape
    if d % 8 == 0 and n:
        cols = keys.view(">u8")  # big-endian words compare like the bytes
        return np.lexsort((ids, *[cols[:, j] for j in range(cols.shape[1] - 1, -1, -1)]))
    s = np.ascontiguousarray(keys).view(f"S{d}").reshape(n)
    return np.lexsort((ids, s))


class ExactIndex:
    """Exact index of ``(int64 id, digest)`` items; many ids may share a digest.

    ``add`` of an existing id replaces its digest; ``remove`` of an unknown id is a no-op; changes
    are visible to the next query. Thread safety as for :class:`lifeguard.index.PdqIndex`:
    mutations and compaction are serialised by a lock, queries read a consistent snapshot.
    """

    def __init__(self, digest_bytes: int, *, auto_compact: int | None = 100_000) -> None:
        if isinstance(digest_bytes, bool) or not isinstance(digest_bytes, int):
            raise ValueError("digest_bytes must be an int")
        if not 1 <= digest_bytes <= 64:
            raise ValueError(f"digest_bytes must be in 1..64, got {digest_bytes}")
        self.digest_bytes = digest_bytes
        self.auto_compact = auto_compact
        self._dtype = np.dtype(f"S{digest_bytes}")
        self._lock = threading.RLock()
        self._set_main(
            np.zeros((0, digest_bytes), dtype=np.uint8), np.zeros(0, dtype=np.int64), None
        )
        self._d_key: dict[int, bytes] = {}  # delta: id -> digest
        self._d_ids: dict[bytes, set[int]] = {}  # delta: digest -> ids
        self._n_compactions = 0
        self._last_compact_s = 0.0

    # ------------------------------------------------------------------ input

    def _key(self, k: Any, where: str) -> bytes:
        d = self.digest_bytes
        if isinstance(k, str):
            s = k.strip().lower()
            if s.startswith("0x"):
                s = s[2:]
            if len(s) != 2 * d:
                raise InvalidSignal(f"{where}: expected {2 * d} hex digits, got {len(s)}")
            try:
                return bytes.fromhex(s)
            except ValueError:
                raise InvalidSignal(f"{where}: not hexadecimal: {k!r}") from None
        if isinstance(k, (bytes, bytearray, memoryview)):
            b = bytes(k)
            if len(b) != d:
                raise InvalidSignal(f"{where}: expected {d} bytes, got {len(b)}")
            return b
        if isinstance(k, np.ndarray) and k.dtype == np.uint8 and k.shape == (d,):
            return k.tobytes()
        raise InvalidSignal(f"{where}: expected a hex str or {d} bytes, got {type(k).__name__}")

    def _keys(self, keys: Any, what: str) -> U8:
        d = self.digest_bytes
        if isinstance(keys, np.ndarray):
            if keys.dtype == np.uint8 and keys.ndim == 2 and keys.shape[1] == d:
                return np.ascontiguousarray(keys)
            if keys.dtype.kind in "SUO" and keys.ndim == 1:
                keys = keys.tolist()
            else:
                raise InvalidSignal(
                    f"{what}: expected uint8 array of shape (N, {d}), got {keys.dtype} {keys.shape}"
                )
        if isinstance(keys, (str, bytes, bytearray, memoryview)):
            raise InvalidSignal(f"{what}: expected a sequence of digests, got a single one")
        rows = [self._key(k, f"{what}[{i}]") for i, k in enumerate(keys)]
        if not rows:
            return np.zeros((0, d), dtype=np.uint8)
        return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, d).copy()

    # ------------------------------------------------------------------ main structure

    def _set_main(self, keys: U8, ids: I64, alive: npt.NDArray[np.bool_] | None) -> None:
        """Install a main structure: ``keys``/``ids`` already sorted by (key, id)."""
        n = int(ids.shape[0])
        self._m_keys = keys  # (n, d) uint8
        self._m_sk = keys.view(self._dtype).reshape(n) if n else np.zeros(0, self._dtype)
        self._m_ids = ids
        self._m_alive = np.ones(n, dtype=np.bool_) if alive is None else alive
        self._m_live = int(self._m_alive.sum())
        by_id = np.argsort(ids, kind="stable")
        self._m_id_sorted = ids[by_id]
        self._m_id_row = by_id.astype(np.uint32)

    def _main_rows(self, ids: I64) -> I64:
        n = self._m_ids.shape[0]
        if n == 0 or ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._m_id_sorted, ids), n - 1)
        found = self._m_id_sorted[pos] == ids
        rows: I64 = self._m_id_row[pos[found]].astype(np.int64)
        return rows

    # ------------------------------------------------------------------ API

    def __len__(self) -> int:
        with self._lock:
            return self._m_live + len(self._d_key)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            n = int(self._m_ids.shape[0])
            return {
                "items": self._m_live + len(self._d_key),
                "digest_bytes": self.digest_bytes,
                "main_rows": n,
                "main_live": self._m_live,
                "tombstones": n - self._m_live,
                "delta_live": len(self._d_key),
                "main_bytes": int(
                    self._m_keys.nbytes
                    + self._m_ids.nbytes
                    + self._m_alive.nbytes
                    + self._m_id_sorted.nbytes
                    + self._m_id_row.nbytes
                ),
                "compactions": self._n_compactions,
                "last_compact_seconds": self._last_compact_s,
            }

    def add(self, ids: Any, keys: Any) -> None:
        """Add items; an id already present gets its digest replaced (the last one in a batch wins)."""
        id_arr = as_ids(ids)
        k = self._keys(keys, "keys")
        if id_arr.shape[0] != k.shape[0]:
            raise ValueError(f"add: {id_arr.shape[0]} ids but {k.shape[0]} keys")
        if id_arr.size == 0:
            return
        with self._lock:
            if self.auto_compact is not None and id_arr.size >= self.auto_compact:
                self._compact_locked(extra=(id_arr, k))
                return
            self._tombstone(id_arr)
            for i, row in zip(id_arr.tolist(), k.tolist(), strict=True):
                key = bytes(row)
                self._delta_remove(i)
                self._d_key[i] = key
                self._d_ids.setdefault(key, set()).add(i)
            if self.auto_compact is not None and len(self._d_key) >= self.auto_compact:
                self._compact_locked(extra=None)

    def remove(self, ids: Any) -> int:
        """Remove items by id (unknown ids are ignored). Returns how many were live."""
        id_arr = as_ids(ids)
        with self._lock:
            n = self._tombstone(id_arr)
            for i in id_arr.tolist():
                n += self._delta_remove(i)
            return n

    def _tombstone(self, ids: I64) -> int:
        rows = self._main_rows(ids)
        if rows.size == 0:
            return 0
        rows = np.unique(rows)
        live = rows[self._m_alive[rows]]
        if live.size:
            self._m_alive[live] = False
            self._m_live -= int(live.size)
        return int(live.size)

    def _delta_remove(self, i: int) -> int:
        key = self._d_key.pop(i, None)
        if key is None:
            return 0
        s = self._d_ids[key]
        s.discard(i)
        if not s:
            del self._d_ids[key]
        return 1

    def query(self, key: str | bytes | U8) -> list[int]:
        """Ids of live items with exactly this digest, ascending."""
        return self._query([self._key(key, "query key")])[0]

    def query_batch(self, keys: Any) -> list[list[int]]:
        k = self._keys(keys, "query keys")
        return self._query([bytes(r) for r in k.tolist()])

    def _query(self, keys: list[bytes]) -> list[list[int]]:
        with self._lock:
            sk, ids, alive = self._m_sk, self._m_ids, self._m_alive
            d_ids = self._d_ids
            out: list[list[int]] = []
            if not keys:
                return out
            if sk.shape[0]:
                q = np.array(keys, dtype=self._dtype)
                lo = np.searchsorted(sk, q, side="left").tolist()
                hi = np.searchsorted(sk, q, side="right").tolist()
            else:
                lo = hi = [0] * len(keys)
            for key, a, b in zip(keys, lo, hi, strict=True):
                res: list[int] = []
                if b > a:
                    sl = slice(a, b)
                    res = ids[sl][alive[sl]].tolist()
                extra = d_ids.get(key)
                if extra:
                    res = sorted([*res, *extra])
                out.append(res)
            return out

    # ------------------------------------------------------------------ compaction

    def compact(self) -> None:
        """Fold the delta and tombstones into a new sorted main structure."""
        with self._lock:
            self._compact_locked(extra=None)

    def _compact_locked(self, extra: tuple[I64, U8] | None) -> None:
        t0 = time.perf_counter()
        if extra is None and not self._d_key and self._m_live == self._m_ids.shape[0]:
            return
        keys, ids = self._m_keys[self._m_alive], self._m_ids[self._m_alive]
        if self._d_key:
            d_i = np.fromiter(self._d_key.keys(), dtype=np.int64, count=len(self._d_key))
            d_k = np.frombuffer(b"".join(self._d_key.values()), dtype=np.uint8).reshape(
                -1, self.digest_bytes
            )
            keys, ids = np.concatenate([keys, d_k]), np.concatenate([ids, d_i])
        if extra is not None:
            e_ids, e_k = extra
            rev = e_ids[::-1]
            _, first = np.unique(rev, return_index=True)
            keep_e = np.sort(e_ids.size - 1 - first)
            e_ids, e_k = e_ids[keep_e], e_k[keep_e]
            keep = ~np.isin(ids, e_ids)
            keys, ids = np.concatenate([keys[keep], e_k]), np.concatenate([ids[keep], e_ids])
        order = _sort_order(keys, ids)
        self._set_main(np.ascontiguousarray(keys[order]), np.ascontiguousarray(ids[order]), None)
        self._d_key = {}
        self._d_ids = {}
        self._n_compactions += 1
        self._last_compact_s = time.perf_counter() - t0

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole state (sorted digests, ids, tombstones, delta) to one file."""
        with self._lock:
            n = int(self._m_ids.shape[0])
            d_i = np.fromiter(self._d_key.keys(), dtype=np.int64, count=len(self._d_key))
            d_k = (
                np.frombuffer(b"".join(self._d_key.values()), dtype=np.uint8).reshape(
                    -1, self.digest_bytes
                )
                if self._d_key
                else np.zeros((0, self.digest_bytes), dtype=np.uint8)
            )
            write_index_file(
                path,
                FILE_KIND,
                FILE_KIND_VERSION,
                {
                    "digest_bytes": self.digest_bytes,
                    "n_main": n,
                    "n_main_live": self._m_live,
                    "n_delta": int(d_i.shape[0]),
                },
                {
                    "keys": self._m_keys,
                    "ids": self._m_ids,
                    "alive": self._m_alive.view(np.uint8),
                    "delta_ids": d_i,
                    "delta_keys": d_k,
                },
            )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, verify: bool = True, **kwargs: Any
    ) -> ExactIndex:
        """Read an index written by :meth:`save`; problems raise :class:`IndexFileError`."""
        f = IndexFile.open(path, FILE_KIND, {FILE_KIND_VERSION})

        def meta_int(key: str) -> int:
            v = f.meta.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise IndexFileError(f"{path}: header field {key!r} is missing or invalid")
            return v

        d = meta_int("digest_bytes")
        if not 1 <= d <= 64:
            raise IndexFileError(f"{path}: invalid digest_bytes {d}")
        n, n_live, n_delta = meta_int("n_main"), meta_int("n_main_live"), meta_int("n_delta")
        keys = f.array("keys", "|u1", (n, d), verify=verify)
        ids = f.array("ids", "<i8", (n,), verify=verify)
        alive = f.array("alive", "|u1", (n,), verify=verify) != 0
        d_i = f.array("delta_ids", "<i8", (n_delta,), verify=verify)
        d_k = f.array("delta_keys", "|u1", (n_delta, d), verify=verify)
        if int(alive.sum()) != n_live:
            raise IndexFileError(f"{path}: tombstone mask disagrees with n_main_live")
        if n > 1:  # adjacent rows strictly increasing in (digest, id): linear, no sort
            sk = keys.view(f"S{d}").reshape(n)
            ok = (sk[1:] > sk[:-1]) | ((sk[1:] == sk[:-1]) & (ids[1:] > ids[:-1]))
            if not bool(ok.all()):
                raise IndexFileError(f"{path}: digests are not sorted by (digest, id)")
        idx = cls(d, **kwargs)
        with idx._lock:
            idx._set_main(keys, ids, alive)
            if n > 1 and not bool(np.all(idx._m_id_sorted[1:] > idx._m_id_sorted[:-1])):
                raise IndexFileError(f"{path}: duplicate ids in the main section")
            if n_delta:
                if np.unique(d_i).size != n_delta:
                    raise IndexFileError(f"{path}: duplicate ids in the delta section")
                if idx._main_rows(d_i).size and bool(np.any(alive[idx._main_rows(d_i)])):
                    raise IndexFileError(f"{path}: an id is live in both main and delta")
                for i, row in zip(d_i.tolist(), d_k.tolist(), strict=True):
                    key = bytes(row)
                    idx._d_key[i] = key
                    idx._d_ids.setdefault(key, set()).add(i)
        return idx
