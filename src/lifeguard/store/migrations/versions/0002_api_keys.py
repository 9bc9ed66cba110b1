"""api keys and HMA bank ratios

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rate_limit_per_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "api_hma_bank_ratio",
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("enabled_ratio", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["bank_id"], ["bank.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("bank_id"),
    )


def downgrade() -> None:
    op.drop_table("api_hma_bank_ratio")
    op.drop_table("api_key")
