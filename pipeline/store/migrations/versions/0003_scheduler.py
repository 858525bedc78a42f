"""The daemon's tables: the leader lock, once-per-slot events, APScheduler's job store.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # One row per named lock; whoever holds an unexpired row is the only daemon that acts.
    op.create_table(
        "locks",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("heartbeat", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )
    # What the scheduler did once per slot (test copy, skip, missed): the unique key makes
    # the claim atomic, so two daemons cannot both do it.
    op.create_table(
        "slot_events",
        sa.Column("slot", sa.Date, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("issue", sa.Integer),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False, server_default=""),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("slot", "kind", name="pk_slot_events"),
    )
    # APScheduler's SQLAlchemyJobStore layout, created here so the schema has one owner
    # (the job store's own create(checkfirst=True) then finds it).
    op.create_table(
        "brief_apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), nullable=False),
        sa.Column("next_run_time", sa.Float(25)),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_brief_apscheduler_jobs"),
    )
    op.create_index(
        "ix_brief_apscheduler_jobs_next_run_time", "brief_apscheduler_jobs", ["next_run_time"]
    )


def downgrade() -> None:
    op.drop_index("ix_brief_apscheduler_jobs_next_run_time", table_name="brief_apscheduler_jobs")
    op.drop_table("brief_apscheduler_jobs")
    op.drop_table("slot_events")
    op.drop_table("locks")
