"""Reports (issue 14): events name the issue they came from; the links of each issue,
their clicks and opens, and the per-link counts old clicks are rolled up into.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("issue_number", sa.Integer))
        batch.create_index("ix_events_issue_kind", ["issue_number", "kind"])
    op.create_table(
        "links",
        sa.Column("issue_number", sa.Integer, nullable=False),
        sa.Column("link_id", sa.Integer, nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("text", sa.String(500), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("issue_number", "link_id", name="pk_links"),
    )
    op.create_table(
        "clicks",
        sa.Column("id", BigId, nullable=False),
        sa.Column("issue_number", sa.Integer, nullable=False),
        sa.Column("link_id", sa.Integer),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("machine", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reasons", sa.String(200), nullable=False, server_default=""),
        sa.Column("network", sa.String(64)),
        sa.CheckConstraint("kind IN ('click', 'open')", name="ck_clicks_click_kind"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_clicks_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_clicks"),
    )
    op.create_index(
        "ix_clicks_issue", "clicks", ["issue_number", "kind", "link_id", "subscriber_id"]
    )
    op.create_index("ix_clicks_subscriber", "clicks", ["subscriber_id"])
    op.create_index("ix_clicks_at", "clicks", ["at"])
    op.create_table(
        "link_counts",
        sa.Column("issue_number", sa.Integer, nullable=False),
        sa.Column("link_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("human", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("machine", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("human_people", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rolled_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("issue_number", "link_id", "kind", name="pk_link_counts"),
    )


def downgrade() -> None:
    op.drop_table("link_counts")
    op.drop_index("ix_clicks_at", "clicks")
    op.drop_index("ix_clicks_subscriber", "clicks")
    op.drop_index("ix_clicks_issue", "clicks")
    op.drop_table("clicks")
    op.drop_table("links")
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_issue_kind")
        batch.drop_column("issue_number")
