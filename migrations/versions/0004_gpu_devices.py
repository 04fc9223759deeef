"""GPU devices (README "GPU devices"): which ids a pool has, and which reservation holds each.

Existing pools get ids 0..gpu-1; existing active reservations with GPUs get the
lowest free ids, in creation order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_devices",
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id"), primary_key=True),
        sa.Column("device", sa.Integer, primary_key=True, autoincrement=False),
        sa.CheckConstraint("device >= 0", name="device_range"),
    )
    op.create_table(
        "reservation_devices",
        sa.Column(
            "reservation_id", sa.String(16), sa.ForeignKey("reservations.id"), primary_key=True
        ),
        sa.Column("device", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id"), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    # No device is held by two active reservations: the database says so.
    op.create_index(
        "uq_reservation_devices_active",
        "reservation_devices",
        ["pool_id", "device"],
        unique=True,
        sqlite_where=sa.text("active = 1"),
        postgresql_where=sa.text("active"),
    )
    _backfill()


def _backfill() -> None:
    bind = op.get_bind()
    pools = bind.execute(sa.text("SELECT id, gpu FROM pools")).all()
    for pool_id, gpu in pools:
        if gpu:
            bind.execute(
                sa.text("INSERT INTO pool_devices (pool_id, device) VALUES (:pool, :device)"),
                [{"pool": pool_id, "device": device} for device in range(gpu)],
            )
    holders = bind.execute(
        sa.text(
            "SELECT id, pool_id, gpu FROM reservations WHERE status = 'active' AND gpu > 0 "
            "ORDER BY created_at, id"
        )
    ).all()
    next_free: dict[int, int] = {}
    for reservation_id, pool_id, gpu in holders:
        start = next_free.get(pool_id, 0)
        bind.execute(
            sa.text(
                "INSERT INTO reservation_devices (reservation_id, device, pool_id, active) "
                "VALUES (:rid, :device, :pool, :active)"
            ),
            [
                {"rid": reservation_id, "device": d, "pool": pool_id, "active": True}
                for d in range(start, start + gpu)
            ],
        )
        next_free[pool_id] = start + gpu


def downgrade() -> None:
    op.drop_table("reservation_devices")
    op.drop_table("pool_devices")
