"""Send outcomes: rows claimed but not handed over (and by which sender), failure causes
as a class, a campaign state for a send whose only remaining rows are unknown, and the
further senders that joined a running campaign.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)
DELIVERY_STATES = "('pending', 'claimed', 'inflight', 'sent', 'failed', 'unknown')"
CAMPAIGN_STATES = "('sending', 'paused', 'unresolved', 'sent')"


def upgrade() -> None:
    # batch_alter_table: SQLite rebuilds the table (it cannot alter a CHECK constraint);
    # PostgreSQL gets plain ALTERs.
    with op.batch_alter_table("deliveries") as batch:
        # The machine part of a failure ("550 5.1.1", "postmark 406"): what status groups by.
        batch.add_column(sa.Column("error_code", sa.String(64)))
        # Who claimed the row while it is claimed or in flight.
        batch.add_column(sa.Column("sender", sa.String(200)))
        batch.drop_constraint("ck_deliveries_delivery_state", type_="check")
        batch.create_check_constraint("ck_deliveries_delivery_state", f"state IN {DELIVERY_STATES}")
    with op.batch_alter_table("campaigns") as batch:
        # Why a campaign paused, as a value the scheduler can match (the reason is for people).
        batch.add_column(sa.Column("pause_kind", sa.String(16)))
        batch.drop_constraint("ck_campaigns_campaign_state", type_="check")
        batch.create_check_constraint("ck_campaigns_campaign_state", f"state IN {CAMPAIGN_STATES}")
    op.create_table(
        "campaign_senders",
        sa.Column("campaign_id", sa.Integer, nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("heartbeat", UTC_TIME, nullable=False),
        sa.Column("joined_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "holder", name="pk_campaign_senders"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            ondelete="CASCADE",
            name="fk_campaign_senders_campaign_id_campaigns",
        ),
    )


def downgrade() -> None:
    op.drop_table("campaign_senders")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_constraint("ck_campaigns_campaign_state", type_="check")
        batch.create_check_constraint(
            "ck_campaigns_campaign_state", "state IN ('sending', 'paused', 'sent')"
        )
        batch.drop_column("pause_kind")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("ck_deliveries_delivery_state", type_="check")
        batch.create_check_constraint(
            "ck_deliveries_delivery_state",
            "state IN ('pending', 'inflight', 'sent', 'failed', 'unknown')",
        )
        batch.drop_column("sender")
        batch.drop_column("error_code")
