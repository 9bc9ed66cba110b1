"""law-enforcement report submissions (NCMEC, NCA)

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-25 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "le_submission",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("case_ref", sa.String(length=128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("response_snippet", sa.Text(), nullable=False),
        sa.Column("report_id", sa.String(length=64), nullable=False),
        sa.Column("file_id", sa.String(length=128), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_le_submission_case", "le_submission", ["case_ref"])
    op.create_index("ix_le_submission_report", "le_submission", ["target", "report_id"])


def downgrade() -> None:
    op.drop_index("ix_le_submission_report", table_name="le_submission")
    op.drop_index("ix_le_submission_case", table_name="le_submission")
    op.drop_table("le_submission")
