"""The send ledger: one campaign per issue and list, one delivery row per recipient.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Spelled out rather than imported: a migration describes the schema as it was.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issue_number", sa.Integer, nullable=False),
        sa.Column("list_name", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False, server_default=""),
        sa.Column("content_commit", sa.String(64), nullable=False, server_default="unknown"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pause_reason", sa.String(500)),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        # Who is sending right now (host:pid) and when they last proved it; a second
        # sender refuses while the holder is alive.
        sa.Column("holder", sa.String(200)),
        sa.Column("heartbeat", UTC_TIME),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("started_at", UTC_TIME),
        sa.Column("finished_at", UTC_TIME),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.UniqueConstraint("issue_number", "list_name", name="uq_campaigns_issue_list"),
        sa.CheckConstraint(
            "state IN ('sending', 'paused', 'sent')", name="ck_campaigns_campaign_state"
        ),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("campaign_id", sa.Integer, nullable=False),
        sa.Column("issue_number", sa.Integer, nullable=False),
        # No foreign key on purpose: erasing a person must not erase the fact that
        # they were mailed (or a resend could mail them again).
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("permanent", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("provider_id", sa.String(300)),
        sa.Column("last_error", sa.String(500)),
        sa.Column("next_attempt_at", UTC_TIME),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("sent_at", UTC_TIME),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("issue_number", "subscriber_id", name="uq_deliveries_issue_subscriber"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            ondelete="CASCADE",
            name="fk_deliveries_campaign_id_campaigns",
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'inflight', 'sent', 'failed', 'unknown')",
            name="ck_deliveries_delivery_state",
        ),
    )
    op.create_index("ix_deliveries_work", "deliveries", ["campaign_id", "state", "subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_work", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("campaigns")
