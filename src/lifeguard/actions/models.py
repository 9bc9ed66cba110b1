"""Tables of the actions room: rules (which webhook to call on a match in a bank), match events, and
the webhook outbox. Defined on the shared declarative ``Base``; created by migration ``0003``.

Events hold hashes and ids only — never media, file names or paths.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from lifeguard.store.models import Base, utcnow

_BigId = BigInteger().with_variant(Integer, "sqlite")


class ActionRule(Base):
    """On a match in ``bank_id`` that passes the filters, POST a signed webhook to ``url``."""

    __tablename__ = "action_rule"
    __table_args__ = (UniqueConstraint("bank_id", "url", name="uq_action_rule_bank_url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("bank.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    url: Mapped[str] = mapped_column(String(2048))
    #: HMAC key for the ``Lifeguard-Signature`` header: sealed (``lgsec1:…``, AES-256-GCM) when
    #: ``LIFEGUARD_SECRETS_KEY`` is set, else as given (the worker needs it in clear to sign).
    secret: Mapped[str] = mapped_column(String(512))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Only matches with ``distance <= max_distance`` (None: every match the bank reports).
    max_distance: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Only these variant kinds (``plain``, ``exact``, ``dihedral``, ...); empty: all.
    variants: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Only matches carrying at least one of these categories; empty: all.
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    created_by: Mapped[str] = mapped_column(String(256), default="")


class MatchEvent(Base):
    """One match (or one allow-list-suppressed match) of one query against one listed entry."""

    __tablename__ = "match_event"
    __table_args__ = (
        Index("ix_match_event_created_at", "created_at"),
        Index("ix_match_event_content_id", "content_id"),
        Index("ix_match_event_bank_created", "bank_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: Shared by every event recorded from one ``record_match`` call (one query).
    query_id: Mapped[str] = mapped_column(String(36))
    #: ``match`` (a block-list match that stands) or ``suppressed`` (an allow-list hit suppressed it).
    type: Mapped[str] = mapped_column(String(16), default="match")
    #: No foreign keys to bank/entry: events are an audit trail and outlive tombstones and deletes.
    bank_id: Mapped[int] = mapped_column(Integer)
    bank_name: Mapped[str] = mapped_column(String(128))
    entry_id: Mapped[int] = mapped_column(BigInteger)
    external_id: Mapped[str] = mapped_column(String(256), default="")
    signal_type: Mapped[str] = mapped_column(String(32))
    #: The listed hash (for vPDQ a summary, as in :class:`~lifeguard.matching.Match`).
    listed_value: Mapped[str] = mapped_column(Text)
    distance: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str] = mapped_column(String(16))
    query_variant: Mapped[str] = mapped_column(String(64))
    listed_variant: Mapped[str] = mapped_column(String(64))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    suppressed_by: Mapped[list[int]] = mapped_column(JSON, default=list)
    content_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    media_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    query_md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    query_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    query_pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The query-side hash that produced this match (variant PDQ, or the MD5/SHA-256), if known.
    query_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    index_revision: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookDelivery(Base):
    """The outbox: one row per (event, rule), written in the event's transaction.

    ``status``: ``pending`` (due at ``next_attempt_at``; leased while ``lease_until`` is in the future),
    ``delivered`` or ``dead``. ``attempts`` counts claims, so a worker that died mid-request used one.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_event", "event_id"),
        Index("ix_webhook_delivery_rule", "rule_id"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(_BigId, ForeignKey("match_event.id", ondelete="CASCADE"))
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("action_rule.id", ondelete="SET NULL"), nullable=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    lease_owner: Mapped[str] = mapped_column(String(128), default="")
    lease_token: Mapped[str] = mapped_column(String(36), default="")
    #: The URL of the last attempt (rules may change; the worker always uses the rule's current URL).
    url: Mapped[str] = mapped_column(String(2048), default="")
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    replays: Mapped[int] = mapped_column(Integer, default=0)
