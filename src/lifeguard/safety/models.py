"""Tables of URL and keyword lists (migration ``0010_safety``): lists, their entries, import jobs
and every rejected line of an import."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lifeguard.store.models import Base, utcnow

_BigId = BigInteger().with_variant(Integer, "sqlite")


class SafetyList(Base):
    """A named list of ``url`` or ``keyword`` entries. ``rev`` goes up with every change, so
    matchers know when to reload."""

    __tablename__ = "safety_list"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    rev: Mapped[int] = mapped_column(BigInteger, default=0)


class SafetyListEntry(Base):
    """One entry in canonical form (``value``: a URL key, a host for ``domain`` entries, or a
    folded keyword); ``raw`` is the value as the supplier wrote it."""

    __tablename__ = "safety_list_entry"
    __table_args__ = (UniqueConstraint("list_id", "kind", "value", name="uq_safety_list_entry"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("safety_list.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64), default="")
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class SafetyListImport(Base):
    __tablename__ = "safety_list_import"
    __table_args__ = (Index("ix_safety_list_import_list", "list_id"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    list_id: Mapped[int] = mapped_column(Integer)
    source_name: Mapped[str] = mapped_column(String(512), default="")
    mode: Mapped[str] = mapped_column(String(16), default="add")
    status: Mapped[str] = mapped_column(String(16), default="running")
    lines: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")


class SafetyListRejection(Base):
    __tablename__ = "safety_list_rejection"
    __table_args__ = (Index("ix_safety_list_rejection_job", "job_id", "line_no"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("safety_list_import.id", ondelete="CASCADE")
    )
    line_no: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text, default="")
