"""Per-tenant quotas (README "Quotas"): caps on what a tenant holds across all pools.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MAX_AMOUNT = 2_147_483_647
COLUMNS = ("max_cpu", "max_memory", "max_gpu")


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: SQLite's batch mode would rebuild the
    # table, which foreign keys and the views make needlessly risky.
    for column in COLUMNS:
        op.execute(
            f"ALTER TABLE tenants ADD COLUMN {column} INTEGER CONSTRAINT {column}_range "
            f"CHECK ({column} IS NULL OR ({column} >= 0 AND {column} <= {MAX_AMOUNT}))"
        )


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.execute(f"ALTER TABLE tenants DROP COLUMN {column}")
