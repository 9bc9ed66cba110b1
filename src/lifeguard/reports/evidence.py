"""Evidence vault: content and metadata encrypted at rest with AES-256-GCM.

Each item gets a fresh random 256-bit data key. The data key is wrapped (AES-256-GCM) by a master
key; the item records the master key's id, so master keys can rotate (``rewrap``). Associated data
binds every ciphertext to its item id, so ciphertexts swapped between items fail to decrypt.
Blobs live on disk at ``<data_dir>/evidence/<id[:2]>/<id>.lgev``; index data (case id, hashes,
sizes, media type, retention, legal hold) and the wrapped key and encrypted metadata live in the
``evidence_item`` table. Every put, reveal, export, hold, release, rewrap and deletion is audited
(ids and hashes only, never content). Formats in docs/audit-and-evidence.md.
"""

from __future__ import annotations

import base64
import builtins
import datetime as dt
import hashlib
import json
import os
import secrets
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from lifeguard.errors import LifeguardError, NotFound
from lifeguard.keyfiles import keys_from_env, parse_keys
from lifeguard.reports import audit
from lifeguard.reports.models import EvidenceItem
from lifeguard.settings import Settings
from lifeguard.store.db import Database
from lifeguard.store.models import utcnow

KEY_ENV = "LIFEGUARD_EVIDENCE_KEY"
KEY_FILE_ENV = "LIFEGUARD_EVIDENCE_KEY_FILE"
_KEY_WHAT = "AES-256; base64 of 32 random bytes"
MAGIC = b"LGEV1\x00"
NONCE = 12
DEFAULT_RETENTION = dt.timedelta(days=365)
_WRAP_AAD = b"lifeguard-evidence-key-v1\x00"
_CONTENT_AAD = b"lifeguard-evidence-content-v1\x00"
_META_AAD = b"lifeguard-evidence-metadata-v1\x00"


class EvidenceError(LifeguardError):
    code = "evidence_error"


class EvidenceKeyError(EvidenceError):
    """Master key configuration missing or malformed, or the item's key is not configured."""

    code = "evidence_key"


class EvidenceIntegrityError(EvidenceError):
    """A ciphertext, wrapped key or blob failed authentication (tampered, swapped or wrong key)."""

    code = "evidence_integrity"


# --------------------------------------------------------------------------- keys


def master_key_id(key: bytes) -> str:
    """A key's id: derived from the key, so no id needs configuring and ids never collide by hand."""
    return hashlib.sha256(b"lifeguard-evidence-key-id\x00" + key).hexdigest()[:16]


class Keyring:
    """Master keys: the first is current (wraps new items), the rest only unwrap (for rotation)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise EvidenceKeyError("no evidence master key configured")
        for k in keys:
            if len(k) != 32:
                raise EvidenceKeyError(f"evidence master keys must be 32 bytes (got {len(k)})")
        self.current = keys[0]
        self.current_id = master_key_id(keys[0])
        self.by_id = {master_key_id(k): k for k in keys}

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        """Base64 keys separated by commas or newlines; ``#`` starts a comment line."""
        return cls(
            parse_keys(text, source, EvidenceKeyError, min_bytes=32, max_bytes=32, what=_KEY_WHAT)
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Keyring:
        """From ``LIFEGUARD_EVIDENCE_KEY`` (base64) or the file ``LIFEGUARD_EVIDENCE_KEY_FILE``."""
        return cls(
            keys_from_env(
                KEY_ENV,
                KEY_FILE_ENV,
                EvidenceKeyError,
                missing=f"no evidence master key: set {KEY_ENV} (base64 of 32 random bytes) "
                f"or {KEY_FILE_ENV}",
                environ=environ,
                min_bytes=32,
                max_bytes=32,
                what=_KEY_WHAT,
            )
        )

    def get(self, kid: str, item_id: str) -> bytes:
        try:
            return self.by_id[kid]
        except KeyError:
            raise EvidenceKeyError(
                f"evidence {item_id} is wrapped with master key {kid}, which is not configured "
                f"(configured: {', '.join(self.by_id)})"
            ) from None


def generate_key() -> str:
    """A new master key, base64 (for the key file or environment variable)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _wrap(master: bytes, kid: str, item_id: str, data_key: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE)
    aad = _WRAP_AAD + f"{item_id}\x00{kid}".encode()
    return nonce + AESGCM(master).encrypt(nonce, data_key, aad)


def _unwrap(master: bytes, kid: str, item_id: str, wrapped: bytes) -> bytes:
    aad = _WRAP_AAD + f"{item_id}\x00{kid}".encode()
    try:
        return AESGCM(master).decrypt(wrapped[:NONCE], wrapped[NONCE:], aad)
    except InvalidTag:
        raise EvidenceIntegrityError(
            f"evidence {item_id}: data key does not unwrap with master key {kid} "
            "(wrong key or tampered/swapped wrapped key)"
        ) from None


def _seal(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, aad: bytes, blob: bytes, what: str) -> bytes:
    if len(blob) < NONCE + 16:
        raise EvidenceIntegrityError(f"{what}: ciphertext truncated")
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], aad)
    except InvalidTag:
        raise EvidenceIntegrityError(
            f"{what}: authentication failed (ciphertext tampered or belongs to another item)"
        ) from None


# --------------------------------------------------------------------------- vault


@dataclass(frozen=True)
class EvidenceInfo:
    id: str
    case_id: str
    content_id: str
    sha256: str
    md5: str
    size: int
    media_type: str
    created_at: dt.datetime
    retention_until: dt.datetime
    legal_hold: bool
    hold_reason: str
    key_id: str

    @classmethod
    def of(cls, r: EvidenceItem) -> EvidenceInfo:
        return cls(
            id=r.id,
            case_id=r.case_id,
            content_id=r.content_id,
            sha256=r.sha256,
            md5=r.md5,
            size=int(r.size),
            media_type=r.media_type,
            created_at=_aware(r.created_at),
            retention_until=_aware(r.retention_until),
            legal_hold=bool(r.legal_hold),
            hold_reason=r.hold_reason,
            key_id=r.key_id,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["created_at"] = audit.format_time(self.created_at)
        d["retention_until"] = audit.format_time(self.retention_until)
        return d


@dataclass(frozen=True)
class Evidence:
    info: EvidenceInfo
    content: bytes
    metadata: dict[str, Any]


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _check_id(item_id: str) -> str:
    if len(item_id) != 32 or any(c not in "0123456789abcdef" for c in item_id):
        raise NotFound(f"evidence {item_id!r}: not a valid item id (32 lowercase hex digits)")
    return item_id


class EvidenceVault:
    """``EvidenceVault(db, root, keyring)``; ``keyring`` may be None for purge/list/hold (which
    need no key), and is then loaded from the environment on first use."""

    def __init__(self, db: Database, root: Path, keyring: Keyring | None = None) -> None:
        self.db = db
        self.root = Path(root)
        self._keyring = keyring

    @classmethod
    def from_settings(
        cls, db: Database, settings: Settings, keyring: Keyring | None = None
    ) -> EvidenceVault:
        return cls(db, settings.data_dir / "evidence", keyring)

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = Keyring.from_env()
        return self._keyring

    def path_for(self, item_id: str) -> Path:
        return self.root / item_id[:2] / f"{item_id}.lgev"

    # -- writing

    def put(
        self,
        case_id: str,
        content: bytes,
        *,
        actor: str,
        content_id: str = "",
        media_type: str = "application/octet-stream",
        metadata: dict[str, Any] | None = None,
        retention: dt.timedelta = DEFAULT_RETENTION,
        now: dt.datetime | None = None,
    ) -> EvidenceInfo:
        """Encrypt and store one item; returns its index data. Audited as ``evidence.put``."""
        if not case_id or len(case_id) > 128:
            raise EvidenceError("case_id is required (at most 128 characters)")
        if len(content_id) > 256 or len(media_type) > 128:
            raise EvidenceError("content_id at most 256, media_type at most 128 characters")
        if not isinstance(content, bytes):
            raise EvidenceError("content must be bytes")
        if retention <= dt.timedelta(0):
            raise EvidenceError("retention must be positive")
        meta_json = audit.canonical_json(metadata or {})
        ring = self.keyring
        item_id = uuid.uuid4().hex
        now = _aware(now or utcnow())
        data_key = secrets.token_bytes(32)
        wrapped = _wrap(ring.current, ring.current_id, item_id, data_key)
        blob = MAGIC + _seal(data_key, _CONTENT_AAD + item_id.encode(), content)
        meta_ct = _seal(data_key, _META_AAD + item_id.encode(), meta_json.encode("utf-8"))
        sha = hashlib.sha256(content).hexdigest()
        md5 = hashlib.md5(content, usedforsecurity=False).hexdigest()
        path = self.path_for(item_id)
        _atomic_write(path, blob)
        try:
            with self.db.session() as s:
                row = EvidenceItem(
                    id=item_id,
                    case_id=case_id,
                    content_id=content_id,
                    sha256=sha,
                    md5=md5,
                    size=len(content),
                    media_type=media_type,
                    created_at=now,
                    retention_until=now + retention,
                    legal_hold=False,
                    hold_reason="",
                    key_id=ring.current_id,
                    wrapped_key=wrapped,
                    metadata_ct=meta_ct,
                )
                s.add(row)
                audit.record(
                    s,
                    actor=actor,
                    action="evidence.put",
                    subject_type="evidence",
                    subject_id=item_id,
                    details={
                        "case_id": case_id,
                        "sha256": sha,
                        "md5": md5,
                        "size": len(content),
                        "key_id": ring.current_id,
                    },
                )
                s.flush()
                info = EvidenceInfo.of(row)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return info

    # -- reading

    def info(self, item_id: str) -> EvidenceInfo:
        _check_id(item_id)
        with self.db.read_session() as s:
            row = s.get(EvidenceItem, item_id)
            if row is None:
                raise NotFound(f"evidence {item_id}: no such item")
            return EvidenceInfo.of(row)

    def list(self, case_id: str | None = None) -> list[EvidenceInfo]:
        with self.db.read_session() as s:
            q = select(EvidenceItem).order_by(EvidenceItem.created_at, EvidenceItem.id)
            if case_id is not None:
                q = q.where(EvidenceItem.case_id == case_id)
            return [EvidenceInfo.of(r) for r in s.execute(q).scalars()]

    def get(
        self, item_id: str, *, actor: str, reason: str = "", action: str = "evidence.reveal"
    ) -> Evidence:
        """Decrypt one item. The access is audited (committed) before any plaintext is returned;
        a failed decryption is audited too (``evidence.reveal_failed``)."""
        _check_id(item_id)
        with self.db.session() as s:
            row = s.get(EvidenceItem, item_id)
            if row is None:
                raise NotFound(f"evidence {item_id}: no such item")
            info = EvidenceInfo.of(row)
            wrapped, meta_ct = bytes(row.wrapped_key), bytes(row.metadata_ct)
            audit.record(
                s,
                actor=actor,
                action=action,
                subject_type="evidence",
                subject_id=item_id,
                details={
                    "case_id": info.case_id,
                    "sha256": info.sha256,
                    "reason": reason,
                    "key_id": info.key_id,
                },
            )
        try:
            return self._decrypt(info, wrapped, meta_ct)
        except EvidenceError as e:
            audit.append(
                self.db,
                actor=actor,
                action=f"{action}_failed",
                subject_type="evidence",
                subject_id=item_id,
                details={"error": e.code, "message": e.message},
            )
            raise

    def _decrypt(self, info: EvidenceInfo, wrapped: bytes, meta_ct: bytes) -> Evidence:
        master = self.keyring.get(info.key_id, info.id)
        data_key = _unwrap(master, info.key_id, info.id, wrapped)
        path = self.path_for(info.id)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise EvidenceIntegrityError(f"evidence {info.id}: blob {path} is missing") from None
        if not blob.startswith(MAGIC):
            raise EvidenceIntegrityError(f"evidence {info.id}: {path} is not an evidence blob")
        content = _open(
            data_key,
            _CONTENT_AAD + info.id.encode(),
            blob[len(MAGIC) :],
            f"evidence {info.id} content",
        )
        meta = _open(
            data_key, _META_AAD + info.id.encode(), meta_ct, f"evidence {info.id} metadata"
        )
        if hashlib.sha256(content).hexdigest() != info.sha256:
            raise EvidenceIntegrityError(
                f"evidence {info.id}: content does not match its recorded sha256"
            )
        metadata: dict[str, Any] = json.loads(meta.decode("utf-8"))
        return Evidence(info=info, content=content, metadata=metadata)

    def export(self, item_id: str, dest: Path, *, actor: str, reason: str = "") -> EvidenceInfo:
        """Write the decrypted content to ``dest`` (created, never overwritten; mode 0600).
        Audited as ``evidence.export``."""
        if dest.exists():
            raise EvidenceError(f"{dest} exists; not overwriting")
        ev = self.get(item_id, actor=actor, reason=reason, action="evidence.export")
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(ev.content)
        return ev.info

    # -- retention

    def hold(self, item_id: str, reason: str, *, actor: str) -> EvidenceInfo:
        """Put an item on legal hold (purge skips it until released)."""
        if not reason.strip():
            raise EvidenceError("a legal hold needs a reason")
        return self._set_hold(item_id, True, reason, actor)

    def release(self, item_id: str, *, actor: str, reason: str = "") -> EvidenceInfo:
        return self._set_hold(item_id, False, reason, actor)

    def _set_hold(self, item_id: str, on: bool, reason: str, actor: str) -> EvidenceInfo:
        _check_id(item_id)
        with self.db.session() as s:
            row = s.execute(
                select(EvidenceItem).where(EvidenceItem.id == item_id).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"evidence {item_id}: no such item")
            row.legal_hold = on
            row.hold_reason = reason if on else ""
            audit.record(
                s,
                actor=actor,
                action="evidence.hold" if on else "evidence.release",
                subject_type="evidence",
                subject_id=item_id,
                details={"case_id": row.case_id, "reason": reason},
            )
            s.flush()
            return EvidenceInfo.of(row)

    def purge(
        self, now: dt.datetime | None = None, *, actor: str = "system:retention"
    ) -> builtins.list[str]:
        return purge(self.db, now, root=self.root, actor=actor)

    # -- rotation

    def rewrap(self, *, actor: str, batch: int = 500) -> int:
        """Re-wrap every item's data key under the current master key (content is not
        re-encrypted). Returns how many items changed; audited as one ``key.rewrap`` record per
        batch transaction with the item ids."""
        ring = self.keyring
        changed = 0
        while True:
            with self.db.session() as s:
                rows = list(
                    s.execute(
                        select(EvidenceItem)
                        .where(EvidenceItem.key_id != ring.current_id)
                        .order_by(EvidenceItem.id)
                        .limit(batch)
                        .with_for_update()
                    ).scalars()
                )
                if not rows:
                    return changed
                old_ids: set[str] = set()
                for r in rows:
                    old = ring.get(r.key_id, r.id)
                    dk = _unwrap(old, r.key_id, r.id, bytes(r.wrapped_key))
                    old_ids.add(r.key_id)
                    r.wrapped_key = _wrap(ring.current, ring.current_id, r.id, dk)
                    r.key_id = ring.current_id
                audit.record(
                    s,
                    actor=actor,
                    action="key.rewrap",
                    subject_type="evidence_key",
                    subject_id=ring.current_id,
                    details={"from": sorted(old_ids), "items": [r.id for r in rows]},
                )
                changed += len(rows)


def purge(
    db: Database,
    now: dt.datetime | None = None,
    *,
    root: Path,
    actor: str = "system:retention",
    batch: int = 500,
) -> list[str]:
    """Delete every item whose ``retention_until`` has passed and which is not on legal hold.
    Each deletion is audited (``evidence.delete``: item id, case id, hashes, size, never content)
    in the transaction that deletes the row (the row holds the only copy of the wrapped data key,
    so the blob is unreadable from then on); the blob file is removed after commit. Returns the ids."""
    now = _aware(now or utcnow())
    deleted: list[str] = []
    while True:
        with db.session() as s:
            rows = list(
                s.execute(
                    select(EvidenceItem)
                    .where(EvidenceItem.retention_until <= now, EvidenceItem.legal_hold.is_(False))
                    .order_by(EvidenceItem.retention_until, EvidenceItem.id)
                    .limit(batch)
                    .with_for_update()
                ).scalars()
            )
            for r in rows:
                audit.record(
                    s,
                    actor=actor,
                    action="evidence.delete",
                    subject_type="evidence",
                    subject_id=r.id,
                    details={
                        "case_id": r.case_id,
                        "sha256": r.sha256,
                        "md5": r.md5,
                        "size": int(r.size),
                        "retention_until": audit.format_time(r.retention_until),
                        "reason": "retention expired",
                        "purge_time": audit.format_time(now),
                    },
                )
                s.delete(r)
            ids = [r.id for r in rows]
        for i in ids:
            p = root / i[:2] / f"{i}.lgev"
            p.unlink(missing_ok=True)
        deleted += ids
        if len(ids) < batch:
            return deleted


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
