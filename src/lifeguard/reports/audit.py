"""Append-only, hash-chained audit log with HMAC-signed checkpoints.

Record hash (format ``lifeguard-audit-v1``, see docs/audit-and-evidence.md)::

    hash = SHA-256( canonical_json([
        "lifeguard-audit-v1", seq, time, actor, action, subject_type, subject_id,
        details_json, prev_hash ]) )

where ``time`` is ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds), ``details_json`` is the
canonical JSON text of the details (sorted keys, no whitespace, UTF-8, no floats) and
``canonical_json`` is the same serialisation applied to the array. Appends lock the single
``audit_head`` row, so two writers cannot fork the chain.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lifeguard.errors import LifeguardError
from lifeguard.reports.models import GENESIS_HASH, AuditCheckpoint, AuditHead, AuditRecord
from lifeguard.store.db import Database
from lifeguard.store.models import utcnow

FORMAT = "lifeguard-audit-v1"
CHECKPOINT_FORMAT = "lifeguard-audit-checkpoint-v1"
KEY_ENV = "LIFEGUARD_AUDIT_HMAC_KEY"
KEY_FILE_ENV = "LIFEGUARD_AUDIT_HMAC_KEY_FILE"
_LIMITS = {"actor": 256, "action": 64, "subject_type": 64, "subject_id": 256}


class AuditError(LifeguardError):
    """Bad input to the audit log (details not canonically encodable, a field too long, ...)."""

    code = "audit_error"


class AuditKeyError(AuditError):
    """The checkpoint HMAC key is missing or malformed."""

    code = "audit_key"


# --------------------------------------------------------------------------- canonical encoding


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise AuditError(f"details{path}: floats are not allowed (use an int or a string)")
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise AuditError(f"details{path}: key {k!r} is not a string")
            _check_json(v, f"{path}.{k}")
        return
    raise AuditError(
        f"details{path}: {type(value).__name__} is not JSON (str, int, bool, null, list, dict)"
    )


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII kept as UTF-8, no floats/NaN. Raises AuditError."""
    _check_json(value, "")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_time(t: dt.datetime) -> str:
    """UTC, microsecond precision, ``Z`` suffix. Naive datetimes (SQLite) are taken as UTC."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(
    *,
    seq: int,
    time: dt.datetime,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details_json: str,
    prev_hash: str,
) -> str:
    enc = canonical_json(
        [
            FORMAT,
            seq,
            format_time(time),
            actor,
            action,
            subject_type,
            subject_id,
            details_json,
            prev_hash,
        ]
    )
    return hashlib.sha256(enc.encode("utf-8")).hexdigest()


def _hash_of(r: AuditRecord) -> str:
    return record_hash(
        seq=r.seq,
        time=r.time,
        actor=r.actor,
        action=r.action,
        subject_type=r.subject_type,
        subject_id=r.subject_id,
        details_json=r.details_json,
        prev_hash=r.prev_hash,
    )


# --------------------------------------------------------------------------- append


def _lock_head(session: Session) -> AuditHead:
    q = (
        select(AuditHead)
        .where(AuditHead.id == 1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    head = session.execute(q).scalar_one_or_none()
    if head is None:  # created by the migration; only a hand-made schema lacks it
        session.add(AuditHead(id=1, seq=0, hash=GENESIS_HASH))
        session.flush()
        head = session.execute(q).scalar_one()
    return head


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str = "",
    subject_id: str | int = "",
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> AuditRecord:
    """Append one record inside the caller's transaction (it commits or rolls back with it).
    Locks the chain head until that transaction ends."""
    fields = {
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": str(subject_id),
    }
    for name, value in fields.items():
        if not isinstance(value, str):
            raise AuditError(f"{name} must be a string")
        if len(value) > _LIMITS[name]:
            raise AuditError(f"{name} is {len(value)} characters; at most {_LIMITS[name]}")
    if not actor or not action:
        raise AuditError("actor and action are required")
    details_json = canonical_json(details if details is not None else {})
    if now is not None and now.tzinfo is None:
        raise AuditError("now must be timezone-aware")
    t = (now or utcnow()).astimezone(dt.UTC)
    head = _lock_head(session)
    seq = int(head.seq) + 1
    prev = head.hash
    h = record_hash(
        seq=seq,
        time=t,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=fields["subject_id"],
        details_json=details_json,
        prev_hash=prev,
    )
    rec = AuditRecord(
        seq=seq,
        time=t,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=fields["subject_id"],
        details_json=details_json,
        prev_hash=prev,
        hash=h,
    )
    session.add(rec)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=seq, hash=h))
    session.flush()
    return rec


def append(db: Database, **kwargs: Any) -> AuditRecord:
    """``record`` in a transaction of its own."""
    with db.session() as s:
        return record(s, **kwargs)


def iter_records(
    session: Session,
    *,
    after_seq: int = 0,
    action: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    batch: int = 1000,
) -> Iterator[AuditRecord]:
    """Records in seq order (keyset-paged, so it streams any length)."""
    last = after_seq
    while True:
        q = select(AuditRecord).where(AuditRecord.seq > last)
        if action is not None:
            q = q.where(AuditRecord.action == action)
        if subject_type is not None:
            q = q.where(AuditRecord.subject_type == subject_type)
        if subject_id is not None:
            q = q.where(AuditRecord.subject_id == subject_id)
        rows = list(session.execute(q.order_by(AuditRecord.seq).limit(batch)).scalars())
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def record_to_dict(r: AuditRecord) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "time": format_time(r.time),
        "actor": r.actor,
        "action": r.action,
        "subject_type": r.subject_type,
        "subject_id": r.subject_id,
        "details": json.loads(r.details_json),
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    }


# --------------------------------------------------------------------------- checkpoints


def load_hmac_key(key: bytes | None = None) -> bytes:
    """The checkpoint key: ``key`` if given, else base64 from ``LIFEGUARD_AUDIT_HMAC_KEY`` or the
    file named by ``LIFEGUARD_AUDIT_HMAC_KEY_FILE`` (base64 text or >= 32 raw bytes)."""
    if key is not None:
        if len(key) < 32:
            raise AuditKeyError("audit HMAC key must be at least 32 bytes")
        return key
    env = os.environ.get(KEY_ENV, "").strip()
    path = os.environ.get(KEY_FILE_ENV, "").strip()
    if env:
        try:
            k = base64.b64decode(env, validate=True)
        except (binascii.Error, ValueError) as e:
            raise AuditKeyError(f"{KEY_ENV} is not valid base64: {e}") from None
    elif path:
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise AuditKeyError(f"{KEY_FILE_ENV}={path}: cannot read ({e.strerror})") from None
        try:
            k = base64.b64decode(raw.strip(), validate=True)
        except (binascii.Error, ValueError):
            k = raw
    else:
        raise AuditKeyError(f"no audit HMAC key: set {KEY_ENV} (base64) or {KEY_FILE_ENV}")
    if len(k) < 32:
        raise AuditKeyError(f"audit HMAC key is {len(k)} bytes; at least 32 required")
    return k


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"lifeguard-audit-key-id\x00" + key).hexdigest()[:16]


def _checkpoint_mac(key: bytes, seq: int, h: str, created_at: dt.datetime) -> str:
    msg = canonical_json([CHECKPOINT_FORMAT, seq, h, format_time(created_at)])
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    created_at: dt.datetime
    key_id: str
    mac: str

    def to_json(self) -> str:
        return canonical_json(
            {
                "seq": self.seq,
                "hash": self.hash,
                "created_at": format_time(self.created_at),
                "key_id": self.key_id,
                "mac": self.mac,
            }
        )


def checkpoint(
    db: Database,
    *,
    key: bytes | None = None,
    file: Path | None = None,
    now: dt.datetime | None = None,
) -> Checkpoint:
    """Sign the current head (seq, hash) with the HMAC key and store it in ``audit_checkpoint``;
    with ``file``, also append it as a JSON line there (keep that file off the database host)."""
    k = load_hmac_key(key)
    t = (now or utcnow()).astimezone(dt.UTC)
    with db.session() as s:
        head = _lock_head(s)
        if head.seq > 0:
            last = s.get(AuditRecord, int(head.seq))
            if last is None or last.hash != head.hash:
                raise AuditError(
                    f"head row (seq {head.seq}) does not match the log; run `lifeguard audit "
                    "verify` before checkpointing"
                )
        cp = Checkpoint(
            seq=int(head.seq),
            hash=head.hash,
            created_at=t,
            key_id=key_id(k),
            mac=_checkpoint_mac(k, int(head.seq), head.hash, t),
        )
        s.add(AuditCheckpoint(seq=cp.seq, hash=cp.hash, created_at=t, key_id=cp.key_id, mac=cp.mac))
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        with file.open("a", encoding="utf-8") as f:
            f.write(cp.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
    return cp


def _read_checkpoint_file(path: Path) -> list[tuple[str, Checkpoint | str]]:
    out: list[tuple[str, Checkpoint | str]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path}:{n}"
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            t = dt.datetime.strptime(d["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=dt.UTC
            )
            out.append(
                (
                    where,
                    Checkpoint(int(d["seq"]), str(d["hash"]), t, str(d["key_id"]), str(d["mac"])),
                )
            )
        except (ValueError, KeyError, TypeError) as e:
            out.append((where, f"unreadable checkpoint line ({e})"))
    return out


# --------------------------------------------------------------------------- verify


@dataclass
class VerifyResult:
    """``ok`` is False on the first problem found; ``seq`` is the first bad record and ``kind`` one
    of hash_mismatch, seq_gap, seq_order, prev_mismatch, head_mismatch, truncated,
    checkpoint_mismatch, checkpoint_forged, checkpoint_unreadable."""

    ok: bool
    records: int
    head_seq: int
    head_hash: str
    seq: int | None = None
    kind: str | None = None
    reason: str | None = None
    checkpoints_checked: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "seq": self.seq,
            "kind": self.kind,
            "reason": self.reason,
            "checkpoints_checked": self.checkpoints_checked,
            "warnings": self.warnings,
        }


def verify(
    db: Database,
    *,
    key: bytes | None = None,
    checkpoint_file: Path | None = None,
    require_checkpoints: bool = False,
) -> VerifyResult:
    """Walk the whole chain and report the first bad record and why; then compare the chain with
    the head row and with every checkpoint (table, and ``checkpoint_file`` if given). Without an
    HMAC key (argument or environment) checkpoints are compared but not authenticated (a warning)."""
    try:
        k: bytes | None = load_hmac_key(key)
    except AuditKeyError as e:
        if require_checkpoints:
            raise
        k = None
        key_warning = str(e)
    else:
        key_warning = ""

    with db.read_session() as s:
        res = VerifyResult(ok=True, records=0, head_seq=0, head_hash=GENESIS_HASH)
        hashes_at: dict[int, str] = {}
        cps = list(s.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.id)).scalars())
        sources: list[tuple[str, Checkpoint | str]] = [
            (
                f"audit_checkpoint id {c.id}",
                Checkpoint(c.seq, c.hash, c.created_at, c.key_id, c.mac),
            )
            for c in cps
        ]
        if checkpoint_file is not None:
            if checkpoint_file.exists():
                sources += _read_checkpoint_file(checkpoint_file)
            else:
                res.warnings.append(f"checkpoint file {checkpoint_file} does not exist")
        wanted = {c.seq for _, c in sources if isinstance(c, Checkpoint)}

        expected_seq = 1
        prev = GENESIS_HASH
        for r in iter_records(s):
            if r.seq != expected_seq:
                if r.seq > expected_seq:
                    missing = (
                        f"{expected_seq}"
                        if r.seq == expected_seq + 1
                        else f"{expected_seq}..{r.seq - 1}"
                    )
                    return _fail(
                        res,
                        r.seq,
                        "seq_gap",
                        f"seq {missing} missing before seq {r.seq} (deleted records)",
                    )
                return _fail(
                    res, r.seq, "seq_order", f"seq {r.seq} out of order (expected {expected_seq})"
                )
            if r.prev_hash != prev:
                return _fail(
                    res,
                    r.seq,
                    "prev_mismatch",
                    f"prev_hash {r.prev_hash[:16]}… is not the hash of the record before "
                    f"({prev[:16]}…): a record was inserted, deleted or rewritten before seq {r.seq}",
                )
            try:
                h = _hash_of(r)
            except AuditError as e:
                return _fail(res, r.seq, "hash_mismatch", f"record cannot be re-encoded: {e}")
            if h != r.hash:
                return _fail(
                    res,
                    r.seq,
                    "hash_mismatch",
                    "stored hash does not match the record's fields (record edited)",
                )
            try:
                json.loads(r.details_json)
            except ValueError:
                return _fail(res, r.seq, "hash_mismatch", "details are not JSON")
            if r.seq in wanted:
                hashes_at[r.seq] = r.hash
            res.records += 1
            res.head_seq, res.head_hash = r.seq, r.hash
            prev = r.hash
            expected_seq += 1

        head = s.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
        if head is not None and (int(head.seq), head.hash) != (res.head_seq, res.head_hash):
            if int(head.seq) > res.head_seq:
                return _fail(
                    res,
                    res.head_seq + 1,
                    "truncated",
                    f"head row says seq {head.seq} but the chain ends at seq {res.head_seq} "
                    "(newest records deleted)",
                )
            return _fail(
                res,
                int(head.seq) + 1 if int(head.seq) < res.head_seq else int(head.seq),
                "head_mismatch",
                f"head row (seq {head.seq}, {head.hash[:16]}…) does not match the chain's last record "
                f"(seq {res.head_seq}, {res.head_hash[:16]}…)",
            )

    for where, cp in sources:
        if isinstance(cp, str):
            return _fail(res, None, "checkpoint_unreadable", f"{where}: {cp}")
        if k is not None:
            if cp.key_id != key_id(k):
                res.warnings.append(f"{where}: signed with key {cp.key_id}, not the configured key")
            elif not hmac.compare_digest(
                cp.mac, _checkpoint_mac(k, cp.seq, cp.hash, cp.created_at)
            ):
                return _fail(
                    res,
                    cp.seq,
                    "checkpoint_forged",
                    f"{where}: HMAC does not verify (forged or edited checkpoint)",
                )
        if cp.seq > res.head_seq:
            return _fail(
                res,
                res.head_seq + 1,
                "truncated",
                f"{where} vouches for seq {cp.seq} but the chain ends at seq {res.head_seq} "
                "(newest records deleted)",
            )
        if cp.seq > 0 and hashes_at.get(cp.seq) != cp.hash:
            return _fail(
                res,
                cp.seq,
                "checkpoint_mismatch",
                f"{where}: record seq {cp.seq} has a different hash than was checkpointed (chain rewritten)",
            )
        res.checkpoints_checked += 1
    if k is None and sources:
        res.warnings.append(f"checkpoints not authenticated: {key_warning}")
    if not sources:
        res.warnings.append(
            "no checkpoints: deleting the newest records or rewriting the whole chain is not detectable"
        )
    return res


def _fail(res: VerifyResult, seq: int | None, kind: str, reason: str) -> VerifyResult:
    res.ok = False
    res.seq = seq
    res.kind = kind
    res.reason = reason
    return res


def count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(AuditRecord)).scalar_one())
