"""actions: room for sealed webhook secrets (action_rule.secret 256 -> 512 characters)

Revision ID: 0011
Revises: 0003
Create Date: 2026-11-25 15:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("action_rule") as batch:
        batch.alter_column(
            "secret",
            existing_type=sa.String(length=256),
            type_=sa.String(length=512),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("action_rule") as batch:
        batch.alter_column(
            "secret",
            existing_type=sa.String(length=512),
            type_=sa.String(length=256),
            existing_nullable=False,
        )
