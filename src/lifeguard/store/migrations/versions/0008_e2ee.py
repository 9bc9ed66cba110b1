"""E2EE room: verified franking reports and take-it-down submissions

Revision ID: 0008
Revises: 0001
Create Date: 2026-11-25 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "e2ee_franking_report",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("tag_sha256", sa.String(length=64), nullable=False),
        sa.Column("commitment", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("sender", sa.String(length=256), nullable=False),
        sa.Column("recipient", sa.String(length=256), nullable=False),
        sa.Column("conversation", sa.String(length=256), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("attachment_sha256", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("enqueue_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tag_sha256", name="uq_e2ee_franking_report_tag"),
    )
    op.create_table(
        "takedown_submission",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("receipt_sha256", sa.String(length=64), nullable=False),
        sa.Column("bank", sa.String(length=128), nullable=False),
        sa.Column("hashes", sa.JSON(), nullable=False),
        sa.Column("entry_ids", sa.JSON(), nullable=False),
        sa.Column("age_band", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("review_reason", sa.Text(), nullable=False),
        sa.Column("unrelated_matches", sa.Integer(), nullable=False),
        sa.Column("client_key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("receipt_sha256", name="uq_takedown_submission_receipt"),
    )
    op.create_index("ix_takedown_submission_status", "takedown_submission", ["status"])


def downgrade() -> None:
    op.drop_index("ix_takedown_submission_status", table_name="takedown_submission")
    op.drop_table("takedown_submission")
    op.drop_table("e2ee_franking_report")
