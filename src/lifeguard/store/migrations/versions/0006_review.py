"""review: cases, case items, user reports, history, decisions, appeals, ingested events, LE reports

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-25 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "review_report",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reporter", sa.String(length=256), nullable=False),
        sa.Column("reported_account", sa.String(length=256), nullable=True),
        sa.Column("surface", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("child_at_risk_now", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(length=None), nullable=False),
        sa.Column("received_by", sa.String(length=256), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_report_created", "review_report", ["created_at"])
    op.create_table(
        "review_case",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("surface", sa.String(length=32), nullable=False),
        sa.Column("child_at_risk_now", sa.Boolean(), nullable=False),
        sa.Column("reported_account", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_review_due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_to", sa.String(length=256), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("decided_by_role", sa.String(length=16), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_case_account", "review_case", ["reported_account"])
    op.create_index("ix_review_case_created_at", "review_case", ["created_at"])
    op.create_index("ix_review_case_decided_at", "review_case", ["decided_at"])
    op.create_index("ix_review_case_queue", "review_case", ["status", "priority", "created_at"])
    op.create_table(
        "review_case_item",
        sa.Column("id", _BigId, nullable=False),
        sa.Column(
            "case_id", _BigId, sa.ForeignKey("review_case.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("surface", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("content_ref", sa.String(length=256), nullable=True),
        sa.Column("md5", sa.String(length=32), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("pdq", sa.String(length=64), nullable=True),
        sa.Column("match_event_id", sa.BigInteger(), nullable=True),
        sa.Column("match", sa.JSON(), nullable=True),
        sa.Column(
            "report_id",
            _BigId,
            sa.ForeignKey("review_report.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("evidence_id", sa.String(length=32), nullable=True),
        sa.Column("mime", sa.String(length=128), nullable=True),
        sa.Column("media_deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("match_event_id", name="uq_review_case_item_match_event_id"),
    )
    op.create_index("ix_review_item_case", "review_case_item", ["case_id"])
    op.create_index("ix_review_item_content", "review_case_item", ["content_ref"])
    op.create_index("ix_review_item_md5", "review_case_item", ["md5"])
    op.create_index("ix_review_item_pdq", "review_case_item", ["pdq"])
    op.create_index("ix_review_item_sha256", "review_case_item", ["sha256"])
    op.create_table(
        "review_case_event",
        sa.Column("id", _BigId, nullable=False),
        sa.Column(
            "case_id", _BigId, sa.ForeignKey("review_case.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_event_case", "review_case_event", ["case_id", "id"])
    op.create_table(
        "review_decision",
        sa.Column("id", _BigId, nullable=False),
        sa.Column(
            "case_id", _BigId, sa.ForeignKey("review_case.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=None), nullable=False),
        sa.Column("effects", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_decision_case", "review_decision", ["case_id"])
    op.create_index("ix_review_decision_time", "review_decision", ["time"])
    op.create_table(
        "review_appeal",
        sa.Column("id", _BigId, nullable=False),
        sa.Column(
            "case_id", _BigId, sa.ForeignKey("review_case.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("appellant", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.String(length=None), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decision_by", sa.String(length=256), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("upheld", sa.Boolean(), nullable=True),
        sa.Column("note", sa.String(length=None), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_appeal_case", "review_appeal", ["case_id"])
    op.create_index("ix_review_appeal_decided", "review_appeal", ["decided_at"])
    op.create_table(
        "review_ingested",
        sa.Column("event_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_table(
        "review_le_report",
        sa.Column("id", _BigId, nullable=False),
        sa.Column(
            "case_id", _BigId, sa.ForeignKey("review_case.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("document", sa.String(length=None), nullable=False),
        sa.Column("error", sa.String(length=None), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_le_case", "review_le_report", ["case_id"])


def downgrade() -> None:
    op.drop_table("review_le_report")
    op.drop_table("review_ingested")
    op.drop_table("review_appeal")
    op.drop_table("review_decision")
    op.drop_table("review_case_event")
    op.drop_table("review_case_item")
    op.drop_table("review_case")
    op.drop_table("review_report")
