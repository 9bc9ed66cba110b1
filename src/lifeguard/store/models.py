"""SQLAlchemy 2 models. Every bank/entry change bumps a global revision so matchers can apply deltas."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: DateTime(timezone=True)}  # noqa: RUF012


class Revision(Base):
    """A single-row counter. Writers lock and bump it, so revisions are committed in order."""

    __tablename__ = "revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Bank(Base):
    __tablename__ = "bank"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default="block")  # "block" | "allow"
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    match_threshold: Mapped[int] = mapped_column(Integer, default=31)
    #: Whether matches through query/listing variants (dihedral, trimmed, region) count for this bank.
    match_variants: Mapped[bool] = mapped_column(Boolean, default=True)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    supplier: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    rev: Mapped[int] = mapped_column(BigInteger, default=0, index=True)

    entries: Mapped[list[Entry]] = relationship(back_populates="bank", lazy="raise")


class Entry(Base):
    """One listed signal with provenance. ``status``: active | disabled | removed (tombstone)."""

    __tablename__ = "entry"
    __table_args__ = (
        UniqueConstraint("bank_id", "signal_type", "value", name="uq_entry_bank_signal"),
        Index("ix_entry_rev", "rev"),
        Index("ix_entry_lookup", "signal_type", "value"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("bank.id", ondelete="CASCADE"))
    signal_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(Text)
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String(256), default="")
    external_id: Mapped[str] = mapped_column(String(256), default="")
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    added_by: Mapped[str] = mapped_column(String(256), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    status_changed_by: Mapped[str] = mapped_column(String(256), default="")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    rev: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Extra hashes computed from the listed media (trimmed, region, ...): {"variant": "hex"}.
    variants: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    bank: Mapped[Bank] = relationship(back_populates="entries", lazy="joined")


class ImportJob(Base):
    """One import run: counts, and every rejected line (see :class:`ImportRejection`)."""

    __tablename__ = "import_job"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("bank.id", ondelete="CASCADE"))
    source_name: Mapped[str] = mapped_column(String(512), default="")
    format: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    added: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")


class ImportRejection(Base):
    __tablename__ = "import_rejection"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("import_job.id", ondelete="CASCADE"), index=True)
    line_no: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text, default="")
