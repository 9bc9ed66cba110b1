"""ORM for law-enforcement report submissions (NCMEC CyberTipline, UK NCA).

One ``le_submission`` row per HTTP request: the first try and every retry, with the answer (HTTP
status, the service's response code, a body snippet) and the ids it returned. Migration 0005.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lifeguard.store.models import Base, utcnow


class LeSubmission(Base):
    __tablename__ = "le_submission"
    __table_args__ = (
        Index("ix_le_submission_case", "case_ref"),
        Index("ix_le_submission_report", "target", "report_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    target: Mapped[str] = mapped_column(String(16))  # "ncmec" | "nca"
    #: submit | upload | fileinfo | finish | retract | status (NCMEC); submit (NCA)
    kind: Mapped[str] = mapped_column(String(16))
    case_ref: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_snippet: Mapped[str] = mapped_column(Text, default="")
    report_id: Mapped[str] = mapped_column(String(64), default="")
    file_id: Mapped[str] = mapped_column(String(128), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
