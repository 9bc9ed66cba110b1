"""ORM model for API keys (table ``api_key``, migration 0002) and HMA's per-bank ``enabled_ratio``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from lifeguard.store.models import Base, utcnow


class ApiKey(Base):
    """An API key. Only a SHA-256 digest of the secret is stored; the secret is shown once."""

    __tablename__ = "api_key"
    #: Public key id (also the token's prefix after ``lg_``); 16 hex characters.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    #: hex SHA-256 of the secret part of the token.
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(256), default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    #: Requests per second this key may make (token bucket); None: the service default.
    rate_limit_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class HmaBankRatio(Base):
    """HMA's ``matching_enabled_ratio`` for a bank when it is strictly between 0 and 1 (coin-flip
    sampling in ``/m/lookup``). Absent means 1.0 for an enabled bank, 0.0 for a disabled one."""

    __tablename__ = "api_hma_bank_ratio"
    bank_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("bank.id", ondelete="CASCADE"), primary_key=True
    )
    enabled_ratio: Mapped[float] = mapped_column(Float)
