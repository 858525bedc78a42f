"""Lists get a title for people and a visibility (issue 13); ``brief db copy`` records
its progress in the target, so a copy that was interrupted resumes where it stopped.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # batch_alter_table: SQLite rebuilds the table to add a CHECK; PostgreSQL gets ALTERs.
    with op.batch_alter_table("lists") as batch:
        # Empty means "show the slug": lists made before titles existed keep working.
        batch.add_column(sa.Column("title", sa.String(200), nullable=False, server_default=""))
        # Every existing list was public (shown on the forms), so that is the default.
        batch.add_column(
            sa.Column("visibility", sa.String(16), nullable=False, server_default="public")
        )
        batch.create_check_constraint(
            "ck_lists_list_visibility", "visibility IN ('public', 'private')"
        )
    op.create_table(
        "copy_progress",
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("last_key", sa.JSON()),
        sa.Column("copied", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("finished_at", UTC_TIME),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("table_name", name="pk_copy_progress"),
    )


def downgrade() -> None:
    op.drop_table("copy_progress")
    with op.batch_alter_table("lists") as batch:
        batch.drop_constraint("ck_lists_list_visibility", type_="check")
        batch.drop_column("visibility")
        batch.drop_column("title")
