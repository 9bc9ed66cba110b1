"""Tables of the audit log and the evidence vault (migration 0004_audit_evidence)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lifeguard.store.models import Base, utcnow

GENESIS_HASH = "0" * 64


class AuditRecord(Base):
    """One audit record. ``hash`` is SHA-256 over the canonical encoding documented in
    docs/audit-and-evidence.md; ``prev_hash`` is the previous record's ``hash`` (zeros for seq 1).
    ``details_json`` holds the canonical JSON text exactly as it was hashed."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[dt.datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(64), default="")
    subject_id: Mapped[str] = mapped_column(String(256), default="")
    details_json: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_action", "action"),
        Index("ix_audit_log_subject", "subject_type", "subject_id"),
    )


class AuditHead(Base):
    """A single-row chain head. Appenders lock it (like ``revision``), so the chain cannot fork."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64), default=GENESIS_HASH)


class AuditCheckpoint(Base):
    """An HMAC-SHA256 signed statement "record ``seq`` has hash ``hash``", made with a key the
    database does not hold. Detects truncation and whole-chain rewrites up to the checkpoint."""

    __tablename__ = "audit_checkpoint"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    key_id: Mapped[str] = mapped_column(String(32))
    mac: Mapped[str] = mapped_column(String(64))


class EvidenceItem(Base):
    """Index data of one evidence item (plaintext, for retention and lookup); the content and the
    caller's free-form metadata are AES-256-GCM ciphertexts (content on disk, metadata here)."""

    __tablename__ = "evidence_item"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(128), index=True)
    content_id: Mapped[str] = mapped_column(String(256), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(128), default="application/octet-stream")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    retention_until: Mapped[dt.datetime] = mapped_column(index=True)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    hold_reason: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[str] = mapped_column(String(32))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    metadata_ct: Mapped[bytes] = mapped_column(LargeBinary)
