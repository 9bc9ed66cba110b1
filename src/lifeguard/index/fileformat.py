"""The index container file: a small JSON header followed by raw little-endian numpy arrays.

Layout (all integers little-endian; see docs/index-format.md)::

    offset 0   8 bytes  magic  b"\\x89LGIDX\\r\\n"
    offset 8   u32      container format version (currently 1)
    offset 12  u32      header length H in bytes (UTF-8 JSON)
    offset 16  u32      CRC-32 of the H header bytes
    offset 20  u32      reserved, 0
    offset 24  H bytes  JSON header: {"kind", "kind_version", "meta", "sections": [...]}
    ...        padding to a multiple of 64, then each section's raw bytes at its 64-aligned offset

Each section entry is ``{"name", "dtype", "shape", "offset", "nbytes", "crc32"}``. Readers pass the
dtype they expect for every section; nothing in the file can choose a Python type (no pickle, no
object arrays).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lifeguard.errors import LifeguardError

MAGIC = b"\x89LGIDX\r\n"
CONTAINER_VERSION = 1
_PREFIX = struct.Struct("<8sIII4x")
_ALIGN = 64
_MAX_HEADER = 16 * 1024 * 1024


class IndexFileError(LifeguardError):
    """An index file is missing, truncated, corrupt, of another kind or of an unsupported version."""

    code = "index_file"


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def write_index_file(
    path: str | os.PathLike[str],
    kind: str,
    kind_version: int,
    meta: Mapping[str, Any],
    sections: Mapping[str, npt.NDArray[Any]],
) -> None:
    """Write ``sections`` (C-contiguous little-endian arrays) atomically to ``path``.

    The file is written to ``path + ".tmp"``, fsynced, then renamed over ``path``.
    """
    path = Path(path)
    arrays: list[tuple[str, npt.NDArray[Any]]] = []
    for name, arr in sections.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        if a.dtype.hasobject:
            raise ValueError(f"section {name!r}: object arrays cannot be stored")
        arrays.append((name, a))

    # Offsets depend on the header length, which depends on the offsets' digits: iterate to a fixpoint.
    entries: list[dict[str, Any]] = []
    header_bytes = b""
    data_start = 0
    for _ in range(8):
        offset = _align(_PREFIX.size + len(header_bytes)) if header_bytes else 0
        data_start = offset
        entries = []
        for name, a in arrays:
            entries.append(
                {
                    "name": name,
                    "dtype": a.dtype.str,
                    "shape": list(a.shape),
                    "offset": offset,
                    "nbytes": int(a.nbytes),
                    "crc32": zlib.crc32(a.data.cast("B")) if a.nbytes else 0,
                }
            )
            offset = _align(offset + a.nbytes)
        header = {
            "kind": kind,
            "kind_version": kind_version,
            "meta": dict(meta),
            "sections": entries,
        }
        new_bytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
        if new_bytes == header_bytes:
            break
        header_bytes = new_bytes
    else:  # pragma: no cover - the fixpoint converges in 2-3 rounds
        raise RuntimeError("index header layout did not converge")

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(_PREFIX.pack(MAGIC, CONTAINER_VERSION, len(header_bytes), zlib.crc32(header_bytes)))
        f.write(header_bytes)
        pos = _PREFIX.size + len(header_bytes)
        assert pos <= data_start or not arrays
        for (_name, a), e in zip(arrays, entries, strict=True):
            f.write(b"\0" * (e["offset"] - pos))
            if a.nbytes:
                f.write(a.data.cast("B"))
            pos = e["offset"] + a.nbytes
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class IndexFile:
    """A parsed, validated index file header. Use :meth:`array` to read each section."""

    def __init__(self, path: Path, kind: str, kind_version: int, meta: dict[str, Any]) -> None:
        self.path = path
        self.kind = kind
        self.kind_version = kind_version
        self.meta = meta
        self._sections: dict[str, dict[str, Any]] = {}
        self._size = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], kind: str, kind_versions: set[int]) -> IndexFile:
        p = Path(path)
        try:
            size = p.stat().st_size
            with open(p, "rb") as f:
                prefix = f.read(_PREFIX.size)
                if len(prefix) < _PREFIX.size:
                    raise IndexFileError(
                        f"{p}: truncated index file ({size} bytes, header needs {_PREFIX.size})"
                    )
                magic, version, hlen, hcrc = _PREFIX.unpack(prefix)
                if magic != MAGIC:
                    raise IndexFileError(f"{p}: not a lifeguard index file (bad magic {magic!r})")
                if version != CONTAINER_VERSION:
                    raise IndexFileError(
                        f"{p}: unsupported index container version {version} "
                        f"(this build reads {CONTAINER_VERSION})"
                    )
                if hlen > _MAX_HEADER or _PREFIX.size + hlen > size:
                    raise IndexFileError(
                        f"{p}: truncated or corrupt header (claims {hlen} bytes, file has {size})"
                    )
                hbytes = f.read(hlen)
        except FileNotFoundError:
            raise IndexFileError(f"{p}: index file not found", code="not_found") from None
        except IsADirectoryError:
            raise IndexFileError(f"{p}: is a directory, expected an index file") from None
        if zlib.crc32(hbytes) != hcrc:
            raise IndexFileError(f"{p}: header checksum mismatch (file is corrupt)")
        try:
            header = json.loads(hbytes)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise IndexFileError(f"{p}: header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise IndexFileError(f"{p}: header is not a JSON object")
        if header.get("kind") != kind:
            raise IndexFileError(f"{p}: index kind is {header.get('kind')!r}, expected {kind!r}")
        kv = header.get("kind_version")
        if kv not in kind_versions:
            raise IndexFileError(
                f"{p}: unsupported {kind} index version {kv!r} (supported: {sorted(kind_versions)})"
            )
        meta = header.get("meta")
        sections = header.get("sections")
        if not isinstance(meta, dict) or not isinstance(sections, list):
            raise IndexFileError(f"{p}: header lacks 'meta' or 'sections'")
        out = cls(p, kind, int(kv), meta)
        out._size = size
        for s in sections:
            if not isinstance(s, dict) or not isinstance(s.get("name"), str):
                raise IndexFileError(f"{p}: malformed section entry {s!r}")
            for key in ("offset", "nbytes", "crc32"):
                if not isinstance(s.get(key), int) or s[key] < 0:
                    raise IndexFileError(f"{p}: section {s['name']!r} has a bad {key!r}")
            if s["offset"] + s["nbytes"] > size:
                raise IndexFileError(
                    f"{p}: truncated: section {s['name']!r} needs bytes up to "
                    f"{s['offset'] + s['nbytes']}, file has {size}"
                )
            out._sections[s["name"]] = s
        return out

    def array(
        self,
        name: str,
        dtype: str,
        shape: tuple[int, ...],
        *,
        mmap: bool = False,
        verify: bool = True,
    ) -> npt.NDArray[Any]:
        """Section ``name`` as an array of the expected ``dtype`` and ``shape`` (else an error)."""
        s = self._sections.get(name)
        if s is None:
            raise IndexFileError(f"{self.path}: section {name!r} is missing")
        dt = np.dtype(dtype)
        if s.get("dtype") != dt.str:
            raise IndexFileError(
                f"{self.path}: section {name!r} has dtype {s.get('dtype')!r}, expected {dt.str!r}"
            )
        if s.get("shape") != list(shape):
            raise IndexFileError(
                f"{self.path}: section {name!r} has shape {s.get('shape')!r}, expected {list(shape)}"
            )
        count = int(np.prod(shape, dtype=np.int64))
        if count * dt.itemsize != s["nbytes"]:
            raise IndexFileError(f"{self.path}: section {name!r} size does not match its shape")
        arr: npt.NDArray[Any]
        if count == 0:
            arr = np.zeros(shape, dtype=dt)
        elif mmap:
            arr = np.memmap(self.path, dtype=dt, mode="r", offset=s["offset"], shape=shape)
        else:
            with open(self.path, "rb") as f:
                f.seek(s["offset"])
                arr = np.empty(shape, dtype=dt)
                got = f.readinto(arr.data.cast("B"))
            if got != s["nbytes"]:
                raise IndexFileError(f"{self.path}: truncated while reading section {name!r}")
        if verify and count and zlib.crc32(np.ascontiguousarray(arr).data.cast("B")) != s["crc32"]:
            raise IndexFileError(
                f"{self.path}: section {name!r} checksum mismatch (file is corrupt)"
            )
        return arr
