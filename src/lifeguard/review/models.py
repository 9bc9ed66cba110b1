"""Tables of the review room (migration ``0006_review``): cases, their items, user reports, the
case history, decisions and appeals, and which match events were already turned into cases.

Cases hold ids, hashes and references. Media attached to a user report lives only in the encrypted
evidence vault (``evidence_item.case_id = "review-case-<id>"``); a case item keeps the vault id.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lifeguard.store.models import Base, utcnow

_BigId = BigInteger().with_variant(Integer, "sqlite")


class ReviewCase(Base):
    """One case: one or more items (a match, a reported message, an uploaded file, an account)
    that are reviewed and decided together. ``version`` is the optimistic lock: every change
    bumps it, and a change made against a stale version is refused."""

    __tablename__ = "review_case"
    __table_args__ = (
        Index("ix_review_case_queue", "status", "priority", "created_at"),
        Index("ix_review_case_account", "reported_account"),
        Index("ix_review_case_decided_at", "decided_at"),
        Index("ix_review_case_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    #: open | assigned | escalated | decided | appealed | closed
    status: Mapped[str] = mapped_column(String(16), default="open")
    priority: Mapped[int] = mapped_column(Integer, default=3)
    #: Taxonomy value of the highest-priority item (csam, grooming, sextortion, ...).
    category: Mapped[str] = mapped_column(String(32), default="other_child_safety")
    surface: Mapped[str] = mapped_column(String(32), default="unknown")
    child_at_risk_now: Mapped[bool] = mapped_column(Boolean, default=False)
    reported_account: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_review_due: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_reviewed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    assigned_to: Mapped[str | None] = mapped_column(String(256), nullable=True)
    assigned_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    #: Set by ``escalate``: from then on only a senior reviewer (or admin) may decide.
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The standing decision: confirm | false_positive | no_violation (None while undecided).
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    decided_by_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


class ReviewCaseItem(Base):
    """One thing under review in a case. ``source``: match | report | signal. ``kind``: media |
    hash | account | message. ``match_event_id`` is unique, so ingesting an event twice cannot
    create two items."""

    __tablename__ = "review_case_item"
    __table_args__ = (
        Index("ix_review_item_case", "case_id"),
        Index("ix_review_item_content", "content_ref"),
        Index("ix_review_item_md5", "md5"),
        Index("ix_review_item_sha256", "sha256"),
        Index("ix_review_item_pdq", "pdq"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(_BigId, ForeignKey("review_case.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    surface: Mapped[str] = mapped_column(String(32), default="unknown")
    priority: Mapped[int] = mapped_column(Integer, default=3)
    content_ref: Mapped[str | None] = mapped_column(String(256), nullable=True)
    md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    match_event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    #: The match as recorded (bank, entry, distance, variant) for ``source == "match"``.
    match: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    report_id: Mapped[int | None] = mapped_column(
        _BigId, ForeignKey("review_report.id", ondelete="SET NULL"), nullable=True
    )
    evidence_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mime: Mapped[str | None] = mapped_column(String(128), nullable=True)
    #: True once attached media was deleted from the vault (decision no_violation/false_positive).
    media_deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class ReviewReport(Base):
    """One user report as received (the reason is from the taxonomy in docs/review.md)."""

    __tablename__ = "review_report"
    __table_args__ = (Index("ix_review_report_created", "created_at"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reporter: Mapped[str] = mapped_column(String(256))
    reported_account: Mapped[str | None] = mapped_column(String(256), nullable=True)
    surface: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    child_at_risk_now: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    received_by: Mapped[str] = mapped_column(String(256), default="")
    case_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ReviewCaseEvent(Base):
    """The case history: created, merged, assigned, decided, appealed, LE-reported, ..."""

    __tablename__ = "review_case_event"
    __table_args__ = (Index("ix_review_event_case", "case_id", "id"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(_BigId, ForeignKey("review_case.id", ondelete="CASCADE"))
    time: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ReviewDecision(Base):
    """Every decision made on a case (confirm, false_positive, escalate, no_violation), in order."""

    __tablename__ = "review_decision"
    __table_args__ = (
        Index("ix_review_decision_case", "case_id"),
        Index("ix_review_decision_time", "time"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(_BigId, ForeignKey("review_case.id", ondelete="CASCADE"))
    time: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    #: What the decision did: bank entry ids added, evidence deleted, webhook events recorded.
    effects: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ReviewAppeal(Base):
    """An appeal against a case's decision, decided by a different reviewer."""

    __tablename__ = "review_appeal"
    __table_args__ = (
        Index("ix_review_appeal_case", "case_id"),
        Index("ix_review_appeal_decided", "decided_at"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(_BigId, ForeignKey("review_case.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    appellant: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text, default="")
    #: The decision appealed against and who made it (that person may not decide the appeal).
    decision: Mapped[str] = mapped_column(String(16))
    decision_by: Mapped[str] = mapped_column(String(256))
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    upheld: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")


class ReviewIngested(Base):
    """Match events already looked at by ``ingest_match_events`` (with the case they went to, or
    None for events that make no case: suppressed matches and review's own confirmations)."""

    __tablename__ = "review_ingested"

    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    case_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReviewLeReport(Base):
    """A law-enforcement report made from a case (NCMEC or NCA): what was built, and the
    submission outcome when an endpoint is configured (each request is in ``le_submission``)."""

    __tablename__ = "review_le_report"
    __table_args__ = (Index("ix_review_le_case", "case_id"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(_BigId, ForeignKey("review_case.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(8))  # ncmec | nca
    actor: Mapped[str] = mapped_column(String(256))
    #: built (no endpoint configured) | submitted | failed
    status: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(128), default="")
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The NCMEC report XML or the NCA package JSON, as built.
    document: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
