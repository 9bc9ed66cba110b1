"""E2EE private matching: blinded tables (sealed blinding key), accounts, opened vouchers only

Revision ID: 0009
Revises: 0001
Create Date: 2026-11-25 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pm_table",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("table_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("listed", sa.LargeBinary(), nullable=False),
        sa.Column("alpha_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("root", name="uq_pm_table_root"),
    )
    op.create_table(
        "pm_account",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("table_id", _BigId, nullable=False),
        sa.Column("account_id", sa.String(length=256), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("threshold_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["table_id"], ["pm_table.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("table_id", "account_id", name="uq_pm_account"),
    )
    op.create_table(
        "pm_voucher",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("account_pk", _BigId, nullable=False),
        sa.Column("voucher_id", sa.String(length=32), nullable=False),
        sa.Column("share_x", sa.String(length=64), nullable=False),
        sa.Column("share_y", sa.String(length=64), nullable=False),
        sa.Column("inner", sa.LargeBinary(), nullable=False),
        sa.Column("opened_chunks", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pdq", sa.String(length=64), nullable=True),
        sa.Column("distance", sa.Integer(), nullable=True),
        sa.Column("listed_index", sa.Integer(), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=True),
        sa.Column("associated_data", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_pk"], ["pm_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_pk", "voucher_id", name="uq_pm_voucher"),
    )


def downgrade() -> None:
    op.drop_table("pm_voucher")
    op.drop_table("pm_account")
    op.drop_table("pm_table")
