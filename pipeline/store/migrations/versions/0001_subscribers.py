"""Subscribers, lists, memberships, the consent event log and suppressions.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Spelled out here rather than imported from schema.py: a migration must keep
# describing the schema as it was, whatever schema.py becomes later.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lists",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(500), nullable=False, server_default=""),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lists"),
        sa.UniqueConstraint("name", name="uq_lists_name"),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("attributes", JSONType, nullable=False),
        sa.Column("token_key", sa.String(64), nullable=False),
        sa.Column("consent_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email", name="uq_subscribers_email"),
        sa.UniqueConstraint("email_hash", name="uq_subscribers_email_hash"),
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("list_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("consent_source", sa.String(200), nullable=False),
        sa.Column("consent_at", UTC_TIME, nullable=False),
        sa.Column("confirmed_at", UTC_TIME),
        sa.Column("unsubscribed_at", UTC_TIME),
        sa.Column("consent_seq", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_memberships"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name="fk_memberships_subscriber_id_subscribers",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], ondelete="CASCADE", name="fk_memberships_list_id_lists"
        ),
        sa.UniqueConstraint("subscriber_id", "list_id", name="uq_memberships_subscriber_list"),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'unsubscribed')",
            name="ck_memberships_membership_status",
        ),
    )
    op.create_index(
        "ix_memberships_audience", "memberships", ["list_id", "status", "subscriber_id"]
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("list_id", sa.Integer),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("detail", sa.String(500)),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name="fk_events_subscriber_id_subscribers",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], ondelete="SET NULL", name="fk_events_list_id_lists"
        ),
    )
    op.create_index("ix_events_subscriber", "events", ["subscriber_id", "id"])
    op.create_table(
        "suppressions",
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("address_hash", name="pk_suppressions"),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("ix_events_subscriber", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_memberships_audience", table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("subscribers")
    op.drop_table("lists")
