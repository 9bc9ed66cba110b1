"""List media in a bank: hash it (with the extra hashes stored for listed media) and add its signals."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lifeguard.banks.service import AddResult, Banks
from lifeguard.settings import Settings, get_settings
from lifeguard.signals.hasher import MediaHashes, hash_file

#: Signal types listed for media by default (as HMA does for photos: PDQ + MD5).
DEFAULT_IMAGE_SIGNALS = ("pdq", "md5")
DEFAULT_VIDEO_SIGNALS = ("vpdq", "md5")


def add_hashes(
    banks: Banks,
    bank: int | str,
    h: MediaHashes,
    *,
    signal_types: Iterable[str] | None = None,
    external_id: str = "",
    note: str = "",
    source: str = "",
    added_by: str = "",
    categories: Iterable[str] = (),
) -> list[AddResult]:
    """Add the signals of already-hashed media. Only hashes are stored, never the media."""
    wanted = (
        tuple(signal_types)
        if signal_types
        else (DEFAULT_IMAGE_SIGNALS if h.kind == "image" else DEFAULT_VIDEO_SIGNALS)
    )

    def add(signal_type: str, value: str, **extra: Any) -> AddResult:
        return banks.add_entry(
            bank, signal_type, value, external_id=external_id, note=note, source=source,
            added_by=added_by, categories=list(categories), **extra,
        )  # fmt: skip

    results: list[AddResult] = []
    for st in wanted:
        if st == "pdq" and h.kind == "image" and h.pdq:
            variants = {v.name: v.pdq for v in h.listing_variants if v.pdq != h.pdq}
            results.append(add("pdq", h.pdq, quality=h.quality, variants=variants))
        elif st == "vpdq" and h.kind == "video" and h.vpdq:
            from lifeguard.signals.video import frames_to_json

            results.append(add("vpdq", frames_to_json(h.vpdq)))
        elif st == "md5":
            results.append(add("md5", h.md5))
        elif st == "sha256":
            results.append(add("sha256", h.sha256))
    return results


def add_media(
    banks: Banks,
    bank: int | str,
    path: Path | str,
    settings: Settings | None = None,
    *,
    signal_types: Iterable[str] | None = None,
    external_id: str = "",
    note: str = "",
    source: str = "",
    added_by: str = "",
    categories: Iterable[str] = (),
) -> list[AddResult]:
    """Hash ``path`` (raising MediaError if it cannot be) and list its signals in ``bank``."""
    settings = settings or get_settings()
    h = hash_file(path, settings, listing_variants=True)
    return add_hashes(
        banks, bank, h, signal_types=signal_types, external_id=external_id or Path(path).name,
        note=note, source=source, added_by=added_by, categories=categories,
    )  # fmt: skip
