"""reviewer accounts, login sessions and exposure counters (review web UI)

Revision ID: 0007
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviewer_account",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "reviewer_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_reviewer_session_reviewer", "reviewer_session", ["reviewer"])
    op.create_index("ix_reviewer_session_expires_at", "reviewer_session", ["expires_at"])
    op.create_table(
        "reviewer_exposure",
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("reveals", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("reviewer", "day"),
    )


def downgrade() -> None:
    op.drop_table("reviewer_exposure")
    op.drop_index("ix_reviewer_session_expires_at", table_name="reviewer_session")
    op.drop_index("ix_reviewer_session_reviewer", table_name="reviewer_session")
    op.drop_table("reviewer_session")
    op.drop_table("reviewer_account")
