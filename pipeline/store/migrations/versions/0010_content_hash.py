"""Edits after sending (issue 15): each campaign keeps the fingerprint of the content it
sent (``sha256  path`` lines for the issue file and the entries and stories it carries),
so ``brief check`` and the archive can tell when a sent issue was edited, and which file.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: campaigns sent before this migration have no fingerprint to compare.
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("content_hash", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("content_hash")
