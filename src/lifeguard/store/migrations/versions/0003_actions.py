"""actions: rules, match events, webhook outbox

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "action_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=256), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("max_distance", sa.Integer(), nullable=True),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["bank_id"], ["bank.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("bank_id", "url", name="uq_action_rule_bank_url"),
    )
    with op.batch_alter_table("action_rule", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_action_rule_bank_id"), ["bank_id"], unique=False)

    op.create_table(
        "match_event",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("query_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("bank_name", sa.String(length=128), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("external_id", sa.String(length=256), nullable=False),
        sa.Column("signal_type", sa.String(length=32), nullable=False),
        sa.Column("listed_value", sa.Text(), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=16), nullable=False),
        sa.Column("query_variant", sa.String(length=64), nullable=False),
        sa.Column("listed_variant", sa.String(length=64), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("suppressed_by", sa.JSON(), nullable=False),
        sa.Column("content_id", sa.String(length=256), nullable=True),
        sa.Column("media_kind", sa.String(length=16), nullable=True),
        sa.Column("query_md5", sa.String(length=32), nullable=True),
        sa.Column("query_sha256", sa.String(length=64), nullable=True),
        sa.Column("query_pdq", sa.String(length=64), nullable=True),
        sa.Column("query_hash", sa.String(length=64), nullable=True),
        sa.Column("index_revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("match_event", schema=None) as batch_op:
        batch_op.create_index("ix_match_event_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_match_event_content_id", ["content_id"], unique=False)
        batch_op.create_index(
            "ix_match_event_bank_created", ["bank_id", "created_at"], unique=False
        )

    op.create_table(
        "webhook_delivery",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("event_id", _BigId, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=False),
        sa.Column("lease_token", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("last_attempt_at", _TS, nullable=True),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["match_event.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rule_id"], ["action_rule.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_delivery_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_webhook_delivery_event", ["event_id"], unique=False)
        batch_op.create_index("ix_webhook_delivery_rule", ["rule_id"], unique=False)


def downgrade() -> None:
    op.drop_table("webhook_delivery")
    op.drop_table("match_event")
    op.drop_table("action_rule")
