"""The matcher: in-memory indexes over the banks, kept in step with the database by revision.

Every bank/entry change bumps a global revision (``store.db.bump_revision``). A matcher remembers the
revision it has applied and, at most every ``index_sync_interval_s``, applies the entries changed since
— so an added, disabled or removed entry takes effect within a second, in every process, without a
rebuild. At start it loads a snapshot (``save_snapshot``) and applies the changes made after it.
``start_background_sync()`` also keeps an idle matcher fresh: PostgreSQL LISTEN/NOTIFY, or a poll
thread (``lifeguard.matching.notify``).

Index item ids encode ``entry_id * SLOTS + listed-variant code`` so one PDQ index holds plain hashes and
the extra hashes of listed media (trimmed, region) without a side table.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from lifeguard.errors import InvalidSignal
from lifeguard.index import ExactIndex, PdqIndex
from lifeguard.matching.notify import BackgroundSync
from lifeguard.matching.results import Match, MatchResult, VariantKind
from lifeguard.settings import Settings, get_settings
from lifeguard.signals.base import normalise
from lifeguard.signals.hasher import MediaHashes
from lifeguard.signals.pdq import hexes_to_array
from lifeguard.store.db import Database, current_revision
from lifeguard.store.models import Bank, Entry

log = logging.getLogger(__name__)

SLOTS = 8
#: Listed-variant codes (low 3 bits of an index item id). Append only: snapshots depend on the order.
LISTED_VARIANTS: tuple[str, ...] = (
    "plain",
    "trimmed",
    "region90",
    "crop90_tl",
    "crop90_tr",
    "crop90_bl",
    "crop90_br",
    "region80",
)
_LISTED_CODE = {n: i for i, n in enumerate(LISTED_VARIANTS)}
SNAPSHOT_VERSION = 1
VPDQ_FRAME_BITS = 20  # vPDQ frame items: entry_id << 20 | frame ordinal
#: After building from the database, save a snapshot when the index holds at least this many items.
AUTO_SNAPSHOT_ITEMS = 50_000


@dataclass(frozen=True, slots=True)
class BankInfo:
    id: int
    name: str
    kind: str
    enabled: bool
    threshold: int
    match_variants: bool
    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Hit:
    entry_id: int
    distance: int
    query_variant: str
    listed_variant: str
    video: tuple[float, float] | None = None


def _variant_kind(query_variant: str, listed_variant: str) -> VariantKind:
    if query_variant in ("md5", "sha256"):
        return "exact"
    if query_variant == "vpdq":
        return "video"
    if query_variant.startswith("frame"):
        return "video_frame"
    if listed_variant.startswith(("region", "crop")):
        return "region"
    if query_variant == "deskewed":
        return "deskewed"
    if "trimmed" in query_variant or listed_variant == "trimmed":
        return "trimmed"
    if query_variant in ("original", "plain"):
        return "plain"
    return "dihedral"


class Matcher:
    """Answers "does this match anything listed?" for media hashes or raw signals."""

    def __init__(self, db: Database, settings: Settings | None = None) -> None:
        self.db = db
        self.settings = settings or get_settings()
        self.pdq = PdqIndex()
        self.md5 = ExactIndex(16)
        self.sha256 = ExactIndex(32)
        self.vpdq_frames = PdqIndex()
        self._vpdq_frames_of: dict[int, int] = {}  # entry id -> number of frame items
        self._vpdq_values: dict[int, list[Any]] = {}  # entry id -> frames (listed videos are few)
        self.banks: dict[int, BankInfo] = {}
        self.revision = 0
        self._last_sync = 0.0
        self._lock = threading.RLock()
        self.loaded = False
        self._background: BackgroundSync | None = None

    # ------------------------------------------------------------------ background sync
    def start_background_sync(self, *, listen: bool = True, **options: Any) -> BackgroundSync:
        """Keep the index fresh while idle too (see :mod:`lifeguard.matching.notify`): on
        PostgreSQL a thread LISTENs for revision notifications and applies changes as they commit
        (request threads then skip their polls); on SQLite, or with ``listen=False``, it polls
        every ``index_sync_interval_s``. ``options`` go to :class:`BackgroundSync`. Idempotent."""
        if self._background is None:
            self._background = BackgroundSync(self, listen=listen, **options)
            self._background.start()
        return self._background

    @property
    def background(self) -> BackgroundSync | None:
        return self._background

    def stop(self) -> None:
        """Stop the background sync thread, if any (the matcher keeps working, polling again)."""
        bg, self._background = self._background, None
        if bg is not None:
            bg.stop()

    # ------------------------------------------------------------------ loading and syncing
    @property
    def snapshot_dir(self) -> Path:
        return self.settings.index_dir

    def load(self, *, use_snapshot: bool = True) -> None:
        """Load the snapshot if there is a usable one, else build from the database; then sync."""
        with self._lock:
            if not (use_snapshot and self._load_snapshot()):
                self._build()
                if (
                    use_snapshot
                    and len(self.pdq) + len(self.md5) + len(self.sha256) >= AUTO_SNAPSHOT_ITEMS
                ):
                    try:  # next start loads in seconds instead of re-reading every entry
                        self.save_snapshot()
                    except OSError as e:
                        log.warning("could not save index snapshot: %s", e)
            self.loaded = True
            self.sync(force=True)

    def _reset(self) -> None:
        self.pdq = PdqIndex()
        self.md5 = ExactIndex(16)
        self.sha256 = ExactIndex(32)
        self.vpdq_frames = PdqIndex()
        self._vpdq_frames_of.clear()
        self._vpdq_values.clear()

    def _build(self) -> None:
        self._reset()
        with self.db.read_session() as s:
            rev = current_revision(s)
            self._load_banks(s)
            q = (
                select(Entry.id, Entry.signal_type, Entry.value, Entry.variants)
                .join(Bank, Bank.id == Entry.bank_id)
                .where(Entry.status == "active", Bank.deleted.is_(False))
                .execution_options(yield_per=20_000)
            )
            batch: list[tuple[int, str, str, dict[str, Any]]] = []
            for row in s.execute(q):
                batch.append((int(row[0]), row[1], row[2], row[3] or {}))
                if len(batch) >= 20_000:
                    self._add_rows(batch)
                    batch = []
            self._add_rows(batch)
        self.revision = rev

    def _load_banks(self, s: Any) -> None:
        banks = {}
        for b in s.execute(select(Bank)).scalars():
            if b.deleted:
                continue
            banks[b.id] = BankInfo(
                id=b.id,
                name=b.name,
                kind=b.kind,
                enabled=b.enabled,
                threshold=b.match_threshold,
                match_variants=b.match_variants,
                categories=tuple(b.categories or ()),
            )
        self.banks = banks

    def _add_rows(self, rows: Sequence[tuple[int, str, str, dict[str, Any]]]) -> None:
        pdq_ids: list[int] = []
        pdq_hex: list[str] = []
        exact: dict[str, tuple[list[int], list[str]]] = {"md5": ([], []), "sha256": ([], [])}
        for entry_id, stype, value, variants in rows:
            if stype == "pdq":
                pdq_ids.append(entry_id * SLOTS)
                pdq_hex.append(value)
                for name, hx in (variants or {}).items():
                    code = _LISTED_CODE.get(name)
                    if code and isinstance(hx, str) and len(hx) == 64:
                        pdq_ids.append(entry_id * SLOTS + code)
                        pdq_hex.append(hx)
            elif stype in exact:
                exact[stype][0].append(entry_id)
                exact[stype][1].append(value)
            elif stype == "vpdq":
                self._add_vpdq(entry_id, value)
        if pdq_ids:
            self.pdq.add(np.asarray(pdq_ids, dtype=np.int64), hexes_to_array(pdq_hex))
        for stype, (ids, vals) in exact.items():
            if ids:
                index = self.md5 if stype == "md5" else self.sha256
                index.add(np.asarray(ids, dtype=np.int64), vals)

    def _add_vpdq(self, entry_id: int, value: str) -> None:
        from lifeguard.signals.video import parse_vpdq

        frames = parse_vpdq(value)
        good = sorted({f.pdq for f in frames if f.quality >= self.settings.pdq_quality_threshold})
        self._remove_vpdq(entry_id)
        self._vpdq_values[entry_id] = frames
        if good:
            ids = (np.int64(entry_id) << VPDQ_FRAME_BITS) + np.arange(len(good), dtype=np.int64)
            self.vpdq_frames.add(ids, hexes_to_array(good))
        self._vpdq_frames_of[entry_id] = len(good)

    def _remove_vpdq(self, entry_id: int) -> None:
        n = self._vpdq_frames_of.pop(entry_id, 0)
        self._vpdq_values.pop(entry_id, None)
        if n:
            self.vpdq_frames.remove(
                (np.int64(entry_id) << VPDQ_FRAME_BITS) + np.arange(n, dtype=np.int64)
            )

    def _remove_entries(self, ids: Iterable[int]) -> None:
        arr = np.asarray(list(ids), dtype=np.int64)
        if not len(arr):
            return
        self.pdq.remove((arr[:, None] * SLOTS + np.arange(SLOTS, dtype=np.int64)[None, :]).ravel())
        self.md5.remove(arr)
        self.sha256.remove(arr)
        for e in arr.tolist():
            if e in self._vpdq_frames_of:
                self._remove_vpdq(e)

    def sync(self, *, force: bool = False) -> int:
        """Apply bank/entry changes committed since the last sync. Returns the number of entries applied."""
        now = time.monotonic()
        if not force and now - self._last_sync < self.settings.index_sync_interval_s:
            return 0
        with self._lock:
            self._last_sync = now
            with self.db.read_session() as s:
                rev = current_revision(s)
                if rev == self.revision:
                    return 0
                self._load_banks(s)
                rows = s.execute(
                    select(
                        Entry.id,
                        Entry.signal_type,
                        Entry.value,
                        Entry.variants,
                        Entry.status,
                        Entry.bank_id,
                    )
                    .where(Entry.rev > self.revision, Entry.rev <= rev)
                    .order_by(Entry.rev, Entry.id)
                ).all()
            removed = [int(r[0]) for r in rows]
            # Replace: drop every changed entry, then add back those that are active in a live bank.
            self._remove_entries(removed)
            self._add_rows(
                [
                    (int(r[0]), r[1], r[2], r[3] or {})
                    for r in rows
                    if r[4] == "active" and int(r[5]) in self.banks
                ]
            )
            self.revision = rev
            return len(rows)

    # ------------------------------------------------------------------ snapshots
    def save_snapshot(self) -> Path:
        """Write the indexes and the revision they reflect (documented in docs/index-format.md).

        Written to a private folder, then swapped in by renames: a reader sees the old snapshot or the
        new one, and two processes saving at once cannot corrupt it (the last one wins)."""
        with self._lock:
            d = self.snapshot_dir
            d.parent.mkdir(parents=True, exist_ok=True)
            tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp = d.with_name(f"{d.name}.tmp-{tag}")
            tmp.mkdir()
            try:
                self.pdq.save(tmp / "pdq")
                self.md5.save(tmp / "md5")
                self.sha256.save(tmp / "sha256")
                meta = {
                    "version": SNAPSHOT_VERSION,
                    "revision": self.revision,
                    "listed_variants": list(LISTED_VARIANTS),
                    "database": self.db.engine.url.render_as_string(hide_password=True),
                    "saved_at": time.time(),
                }
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
                old = d.with_name(f"{d.name}.old-{tag}")
                if d.exists():
                    d.rename(old)
                tmp.rename(d)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(d.with_name(f"{d.name}.old-{tag}"), ignore_errors=True)
            return d

    def _load_snapshot(self) -> bool:
        d = self.snapshot_dir
        meta_path = d / "meta.json"
        if not meta_path.exists():
            return False
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("version") != SNAPSHOT_VERSION or meta.get("listed_variants") != list(
                LISTED_VARIANTS
            ):
                log.warning("index snapshot %s is from another format; rebuilding", d)
                return False
            if meta.get("database") != self.db.engine.url.render_as_string(hide_password=True):
                log.warning("index snapshot %s belongs to another database; rebuilding", d)
                return False
            with self.db.read_session() as s:
                if int(meta["revision"]) > current_revision(s):
                    log.warning("index snapshot is newer than the database; rebuilding")
                    return False
                self._load_banks(s)
            self._reset()
            self.pdq = PdqIndex.load(d / "pdq")
            self.md5 = ExactIndex.load(d / "md5")
            self.sha256 = ExactIndex.load(d / "sha256")
            self.revision = int(meta["revision"])
        except Exception as e:  # a damaged snapshot costs a rebuild, never a wrong answer
            log.warning("cannot use index snapshot %s (%s); rebuilding", d, e)
            self._reset()
            return False
        # vPDQ entries are few: rebuilt from the database rather than snapshotted.
        with self.db.read_session() as s:
            rows = s.execute(
                select(Entry.id, Entry.value)
                .join(Bank, Bank.id == Entry.bank_id)
                .where(
                    Entry.signal_type == "vpdq",
                    Entry.status == "active",
                    Bank.deleted.is_(False),
                    Entry.rev <= self.revision,
                )
            ).all()
        for entry_id, value in rows:
            self._add_vpdq(int(entry_id), value)
        return True

    # ------------------------------------------------------------------ matching
    def _ensure(self) -> None:
        if not self.loaded:
            self.load()
        elif self._background is None or not self._background.listening:
            self.sync()

    def _max_threshold(self) -> int:
        enabled = [
            b.threshold for b in self.banks.values() if b.enabled and b.kind in ("block", "allow")
        ]
        return min(31, max(enabled, default=self.settings.pdq_threshold))

    def match_media(self, media: MediaHashes, *, variants: bool = True) -> MatchResult:
        """Match hashes computed by :func:`lifeguard.signals.hasher.hash_file`."""
        self._ensure()
        hits: list[_Hit] = []
        hits += self._exact_hits("md5", media.md5)
        hits += self._exact_hits("sha256", media.sha256)
        low = False
        if media.kind == "image" and media.pdq:
            low = media.low_quality
            if not low:
                queries: list[tuple[str, str]] = [("original", media.pdq)]
                if variants:
                    queries += [
                        (v.name, v.pdq)
                        for v in media.query_variants
                        if v.quality >= self.settings.pdq_quality_threshold
                    ]
                hits += self._pdq_hits(queries)
        elif media.kind == "video" and media.vpdq:
            hits += self._video_hits(media.vpdq)
        return self._decide(hits, low_quality=low)

    def match_signals(self, signals: Sequence[tuple[str, str]]) -> MatchResult:
        """Match raw signals, e.g. ``[("pdq", "f8f8..."), ("md5", "...")]``. Raises InvalidSignal."""
        self._ensure()
        return self._decide(self._signal_hits(signals))

    def match_signals_no_db(self, signals: Sequence[tuple[str, str]]) -> MatchResult | None:
        """:meth:`match_signals` for the common case that needs no database: the empty result when
        nothing in the indexes is near, None when the full path must answer (an index hit needs the
        entries read; a malformed signal; the index not loaded). Cheap enough for an event loop:
        with LISTEN/NOTIFY no revision poll; without, at most one revision read per
        ``index_sync_interval_s``."""
        if not self.loaded:
            return None
        try:
            self._ensure()
            if self._signal_hits(signals):
                return None
        except InvalidSignal:
            return None
        return MatchResult(revision=self.revision)

    def _signal_hits(self, signals: Sequence[tuple[str, str]]) -> list[_Hit]:
        """Index hits of raw signals (memory only; :meth:`_decide` reads the entries)."""
        hits: list[_Hit] = []
        pdq_queries: list[tuple[str, str]] = []
        for stype, value in signals:
            t, v = normalise(stype, value)
            if t == "pdq":
                pdq_queries.append(("original", v))
            elif t in ("md5", "sha256"):
                hits += self._exact_hits(t, v)
            elif t == "vpdq":
                from lifeguard.signals.video import parse_vpdq

                hits += self._video_hits(parse_vpdq(v))
        hits += self._pdq_hits(pdq_queries)
        return hits

    def _exact_hits(self, stype: str, value: str) -> list[_Hit]:
        index = self.md5 if stype == "md5" else self.sha256
        return [_Hit(int(e), 0, stype, "plain") for e in index.query(value)]

    def _pdq_hits(self, queries: list[tuple[str, str]]) -> list[_Hit]:
        if not queries:
            return []
        seen: dict[str, str] = {}
        for name, hx in queries:  # identical hashes (symmetric images) are looked up once
            seen.setdefault(hx, name)
        names = list(seen.values())
        arr = hexes_to_array(list(seen.keys()))
        results = self.pdq.query_batch(arr, self._max_threshold())
        hits: list[_Hit] = []
        for name, res in zip(names, results, strict=True):
            for item, dist in res:
                hits.append(
                    _Hit(int(item) // SLOTS, int(dist), name, LISTED_VARIANTS[int(item) % SLOTS])
                )
        return hits

    def _video_hits(self, frames: Sequence[Any]) -> list[_Hit]:
        from lifeguard.signals.video import match_videos

        q = self.settings.pdq_quality_threshold
        good = sorted({f.pdq for f in frames if f.quality >= q})
        if not good:
            return []
        thr = self._max_threshold()
        res = self.vpdq_frames.query_batch(hexes_to_array(good), thr)
        candidates = {int(item) >> VPDQ_FRAME_BITS for r in res for item, _ in r}
        hits: list[_Hit] = []
        for entry_id in sorted(candidates):
            listed = self._vpdq_values.get(entry_id)
            if not listed:
                continue
            vm = match_videos(frames, listed, distance=thr, quality=q)
            hits.append(
                _Hit(entry_id, 0, "vpdq", "plain", (vm.query_match_pct, vm.compared_match_pct))
            )
        # Frames of the video against listed images (PDQ banks).
        frame_results = self.pdq.query_batch(hexes_to_array(good), thr)
        best: dict[int, _Hit] = {}
        for r in frame_results:
            for item, dist in r:
                e = int(item) // SLOTS
                if e not in best or dist < best[e].distance:
                    best[e] = _Hit(e, int(dist), "frame", LISTED_VARIANTS[int(item) % SLOTS])
        return hits + list(best.values())

    def _decide(self, hits: list[_Hit], *, low_quality: bool = False) -> MatchResult:
        result = MatchResult(low_quality=low_quality, revision=self.revision)
        if not hits:
            return result
        ids = sorted({h.entry_id for h in hits})
        with self.db.read_session() as s:
            rows = {
                e.id: e
                for e in s.execute(
                    select(Entry).where(Entry.id.in_(ids), Entry.status == "active")
                ).scalars()
            }
        best: dict[int, Match] = {}
        for h in sorted(
            hits,
            key=lambda h: (h.distance, h.query_variant != "original", h.listed_variant != "plain"),
        ):
            e = rows.get(h.entry_id)
            if e is None:
                continue
            bank = self.banks.get(e.bank_id)
            if bank is None or not bank.enabled:
                continue
            kind = _variant_kind(h.query_variant, h.listed_variant)
            if kind not in ("plain", "exact", "video") and not bank.match_variants:
                continue
            if h.distance > bank.threshold:
                continue
            qpct = cpct = None
            if h.video is not None:
                qpct, cpct = h.video
                if (
                    qpct < self.settings.vpdq_query_match_pct
                    or cpct < self.settings.vpdq_index_match_pct
                ):
                    continue
            if h.entry_id in best:
                continue
            best[h.entry_id] = Match(
                bank=bank.name,
                bank_id=bank.id,
                bank_kind=bank.kind,
                entry_id=e.id,
                external_id=e.external_id,
                signal_type=e.signal_type,
                value=e.value
                if e.signal_type != "vpdq"
                else f"vpdq:{len(self._vpdq_values.get(e.id, []))} frames",
                distance=h.distance,
                variant=kind,
                query_variant=h.query_variant,
                listed_variant=h.listed_variant,
                categories=tuple(e.categories or ()) or bank.categories,
                query_match_pct=qpct,
                compared_match_pct=cpct,
            )
        allowed = [m for m in best.values() if m.bank_kind == "allow"]
        allow_ids = tuple(sorted(m.entry_id for m in allowed))
        for m in sorted(best.values(), key=lambda m: (m.distance, m.bank, m.entry_id)):
            if m.bank_kind != "block":
                continue
            if allow_ids:
                from dataclasses import replace

                result.suppressed.append(replace(m, suppressed_by=allow_ids))
            else:
                result.matches.append(m)
        result.allowed = sorted(allowed, key=lambda m: (m.distance, m.entry_id))
        return result
