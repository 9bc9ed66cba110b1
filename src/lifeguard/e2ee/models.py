"""Tables of the E2EE room (migration 0008_e2ee): verified franking reports and take-it-down
submissions. Neither holds message text, media or a receipt code: hashes, ids and times only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lifeguard.store.models import Base, utcnow

_BigId = BigInteger().with_variant(Integer, "sqlite")


class FrankingReportRow(Base):
    """One verified franking report. ``tag_sha256`` is unique: a stamped message is reported once
    (replay detection). Text and attachments are kept as SHA-256 only; the content goes to the case."""

    __tablename__ = "e2ee_franking_report"
    __table_args__ = (UniqueConstraint("tag_sha256", name="uq_e2ee_franking_report_tag"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    tag_sha256: Mapped[str] = mapped_column(String(64))
    commitment: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str] = mapped_column(String(256))
    recipient: Mapped[str] = mapped_column(String(256))
    conversation: Mapped[str] = mapped_column(String(256), default="")
    sent_at: Mapped[dt.datetime] = mapped_column()
    reported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    text_sha256: Mapped[str] = mapped_column(String(64))
    attachment_sha256: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="verified")
    case_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    enqueue_error: Mapped[str] = mapped_column(Text, default="")


class TakedownSubmission(Base):
    """One take-it-down submission: the hashes a young person sent (never the image), the bank
    entries they became, and a SHA-256 of the receipt code (the code itself is shown once)."""

    __tablename__ = "takedown_submission"
    __table_args__ = (
        UniqueConstraint("receipt_sha256", name="uq_takedown_submission_receipt"),
        Index("ix_takedown_submission_status", "status"),
    )
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    receipt_sha256: Mapped[str] = mapped_column(String(64))
    bank: Mapped[str] = mapped_column(String(128))
    #: [{"pdq": hex, "pdq_quality": int|None, "md5": hex}, ...]
    hashes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    entry_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    age_band: Mapped[str] = mapped_column(String(16), default="")
    #: active | review | rejected | withdrawn
    status: Mapped[str] = mapped_column(String(16), default="active")
    review_reason: Mapped[str] = mapped_column(Text, default="")
    unrelated_matches: Mapped[int] = mapped_column(Integer, default=0)
    client_key_id: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
