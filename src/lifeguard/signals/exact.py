"""Exact signals: MD5 and SHA-256 of the bytes, streamed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


def digest_stream(f: BinaryIO) -> tuple[str, str, int]:
    """(md5 hex, sha256 hex, size) of a stream, read in 1 MiB chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    while chunk := f.read(CHUNK):
        md5.update(chunk)
        sha.update(chunk)
        size += len(chunk)
    return md5.hexdigest(), sha.hexdigest(), size


def digest_file(path: Path) -> tuple[str, str, int]:
    with open(path, "rb") as f:
        return digest_stream(f)


def digest_bytes(data: bytes) -> tuple[str, str]:
    return hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest()
