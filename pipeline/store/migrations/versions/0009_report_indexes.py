"""Report indexes (issue 14): an issue's clicks counted from an index alone, and a
provider's message id mapped back to its delivery (webhook attribution).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Covers every column the report reads from clicks: COUNT and COUNT(DISTINCT) per
    # link for humans and machines without touching the table (1M clicks in < 1 s).
    op.create_index(
        "ix_clicks_report",
        "clicks",
        ["issue_number", "kind", "machine", "link_id", "subscriber_id"],
    )
    op.create_index("ix_deliveries_provider_id", "deliveries", ["provider_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_provider_id", table_name="deliveries")
    op.drop_index("ix_clicks_report", table_name="clicks")
