"""The public side's tables: processed webhook events and subscribe-form rate-limit hits.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # One row per provider event applied: a replayed webhook finds its id here and changes nothing.
    op.create_table(
        "webhook_events",
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("received_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("provider", "event_id", name="pk_webhook_events"),
    )
    # Subscribe attempts per hashed address / hashed IP, shared by every worker process.
    op.create_table(
        "rate_hits",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rate_hits"),
    )
    op.create_index("ix_rate_hits_scope_key_at", "rate_hits", ["scope", "key_hash", "at"])


def downgrade() -> None:
    op.drop_index("ix_rate_hits_scope_key_at", table_name="rate_hits")
    op.drop_table("rate_hits")
    op.drop_table("webhook_events")
