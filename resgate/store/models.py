"""The tables of docs/schema.md. Their names and columns are an interface for people who
open the database with `sqlite3`: keep them. The migrations in `migrations/`
create exactly this schema (a test runs `alembic check` against it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from resgate.limits import MAX_AMOUNT, STATUSES


def _amount_check(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} >= 0 AND {column} <= {MAX_AMOUNT}", name=f"{column}_range")


def _seconds_check(column: str) -> CheckConstraint:
    return CheckConstraint(
        f"{column} IS NULL OR ({column} > 0 AND {column} <= {MAX_AMOUNT})", name=f"{column}_range"
    )


def _partial(condition: str, postgresql: str | None = None) -> dict[str, Any]:
    """A partial index's condition (PostgreSQL's, when it is written differently).
    SQLite's is declared here; PostgreSQL's is added by postgresql_options() when
    a PostgreSQL schema is compared: naming `postgresql_where` here makes
    SQLAlchemy import its whole PostgreSQL dialect (tens of ms) on every SQLite
    command (benchmarks/README.md, benchmarks/)."""
    return {"sqlite_where": text(condition), "info": {"where": postgresql or condition}}


def postgresql_options(metadata: MetaData) -> None:
    """Give every partial index its PostgreSQL condition (see _partial)."""
    for table in metadata.tables.values():
        for index in table.indexes:
            where = index.info.get("where")
            if where is not None:
                index.dialect_options["postgresql"]["where"] = text(where)


class Base(DeclarativeBase):
    pass


class Pool(Base):
    __tablename__ = "pools"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    cpu: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(Integer)
    gpu: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Policies (README "Pool policies"): how many active reservations one tenant
    # may hold (null: unlimited), and the default and maximum TTL in seconds.
    # The database default (1) applies to rows written without it; a None set
    # here is stored as null (unlimited).
    per_tenant: Mapped[int | None] = mapped_column(Integer, nullable=True)
    default_ttl: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_ttl: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        _amount_check("cpu"),
        _amount_check("memory"),
        _amount_check("gpu"),
        CheckConstraint(
            f"per_tenant IS NULL OR (per_tenant >= 1 AND per_tenant <= {MAX_AMOUNT})",
            name="per_tenant_range",
        ),
        _seconds_check("default_ttl"),
        _seconds_check("max_ttl"),
        CheckConstraint(
            "default_ttl IS NULL OR max_ttl IS NULL OR default_ttl <= max_ttl",
            name="ttl_policy_order",
        ),
        CheckConstraint("length(name) BETWEEN 1 AND 64", name="name_length"),
        # Names are reusable once the old row is deleted.
        Index(
            "uq_pools_live_name",
            "name",
            unique=True,
            **_partial("deleted_at IS NULL"),
        ),
    )


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Quotas (README "Quotas"): null means no cap.
    max_cpu: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_memory: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_gpu: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        CheckConstraint("priority BETWEEN 1 AND 10", name="priority_range"),
        CheckConstraint(
            f"max_cpu IS NULL OR (max_cpu >= 0 AND max_cpu <= {MAX_AMOUNT})", name="max_cpu_range"
        ),
        CheckConstraint(
            f"max_memory IS NULL OR (max_memory >= 0 AND max_memory <= {MAX_AMOUNT})",
            name="max_memory_range",
        ),
        CheckConstraint(
            f"max_gpu IS NULL OR (max_gpu >= 0 AND max_gpu <= {MAX_AMOUNT})", name="max_gpu_range"
        ),
        CheckConstraint("length(name) BETWEEN 1 AND 64", name="name_length"),
        Index(
            "uq_tenants_live_name",
            "name",
            unique=True,
            **_partial("deleted_at IS NULL"),
        ),
    )


class TenantMember(Base):
    """Who may act for a tenant (README "Tenants and their members"): OS user names."""

    __tablename__ = "tenant_members"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (
        CheckConstraint("length(user_name) BETWEEN 1 AND 64", name="user_name_length"),
        Index("ix_tenant_members_user_name", "user_name"),
    )


class Reservation(Base):
    __tablename__ = "reservations"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"))
    cpu: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(Integer)
    gpu: Mapped[int] = mapped_column(Integer)
    ttl: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    preempted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    preempted_for: Mapped[str | None] = mapped_column(String(16), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # The actor who made it (README "Who is acting"); null when no one is on record
    # (migration 0007 filled in older rows from their reservation.create events).
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # `pid@host` of the `resgate run` whose job runs on it; cleared once the job is gone.
    runner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The window (README "Booking ahead"): the plan is [starts_at, min(ends_at,
    # preempt_at)), nulls open. For a lease (`resgate run`) expires_at is the renewed
    # deadline and ends_at its time limit; otherwise expires_at is the planned end.
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    preempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    lease: Mapped[bool] = mapped_column(Boolean, default=False)
    # PostgreSQL fills it from a sequence (ties in insertion order); SQLite uses
    # its rowid and leaves this null.
    insertion_seq: Mapped[int | None] = mapped_column(
        BigInteger, nullable=True, server_default=FetchedValue()
    )

    __table_args__ = (
        _amount_check("cpu"),
        _amount_check("memory"),
        _amount_check("gpu"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="status_known"),
        CheckConstraint(f"ttl IS NULL OR (ttl > 0 AND ttl <= {MAX_AMOUNT})", name="ttl_range"),
        # An active reservation has not ended; an ended one says when.
        CheckConstraint("(status = 'active') = (ended_at IS NULL)", name="ended_iff_not_active"),
        CheckConstraint("length(id) = 16", name="id_length"),
        # The index every per-pool usage sum runs on. Invariant 2, the pool's
        # per-tenant limit, is the trigger reservations_per_tenant_guard (0008).
        Index(
            "ix_reservations_active_pool_tenant",
            "pool_id",
            "tenant_id",
            **_partial("status = 'active'"),
        ),
        Index(
            "ix_reservations_active_tenant",
            "tenant_id",
            **_partial("status = 'active'"),
        ),
        # The sweep finds due rows without scanning history.
        Index(
            "ix_reservations_active_expires",
            "expires_at",
            **_partial("status = 'active' AND expires_at IS NOT NULL"),
        ),
        Index("ix_reservations_created_at", "created_at"),
        Index("ix_reservations_ended_at", "ended_at"),
        Index("uq_reservations_request_id", "request_id", unique=True),
    )


class Request(Base):
    """A ticket in the line (README "Waiting in line"): a request waiting for room,
    and how it ended. Never deleted; an ended one never changes (migration 0010)."""

    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"))
    cpu: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(Integer)
    gpu: Mapped[int] = mapped_column(Integer)
    gpu_ids: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    duration: Mapped[int | None] = mapped_column(Integer, nullable=True)  # seconds
    preempt: Mapped[bool] = mapped_column(Boolean)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_by: Mapped[str] = mapped_column(String(255))
    enqueued_at: Mapped[datetime] = mapped_column(DateTime)
    deadline: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # `pid@host:start` of the waiting process: its liveness on one host.
    waiter: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # `resgate run --wait`: the lease its reservation gets, and who will run on it.
    lease_ttl: Mapped[int | None] = mapped_column(Integer, nullable=True)
    runner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # waiting, admitted, cancelled, …
    reservation_id: Mapped[str | None] = mapped_column(
        ForeignKey("reservations.id", deferrable=True, initially="DEFERRED"), nullable=True
    )
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (
        CheckConstraint("(status = 'waiting') = (ended_at IS NULL)", name="ended_iff_not_waiting"),
        CheckConstraint(
            "(status = 'admitted') = (reservation_id IS NOT NULL)",
            name="admitted_iff_reservation",
        ),
        # A write with an empty line pays one lookup on this index.
        Index("ix_requests_waiting", "pool_id", "enqueued_at", **_partial("status = 'waiting'")),
        # One key across the line and the reservations (and triggers, migration 0010).
        Index(
            "uq_requests_request_id",
            "request_id",
            unique=True,
            **_partial("request_id IS NOT NULL AND status IN ('waiting', 'admitted')"),
        ),
    )


class Event(Base):
    """The audit log (README "The audit log"): append-only; triggers refuse UPDATE and DELETE."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(128))
    data: Mapped[str] = mapped_column(Text, server_default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("seq >= 1", name="seq_positive"),
        # No index on prev_hash: the primary key on seq already refuses a fork
        # (migrations/versions/0006_drop_events_prev_hash_index.py says why).
        Index("ix_events_at", "at"),
    )


class AuditHead(Base):
    """One row that PostgreSQL writers lock first (README "Many processes at once"), which keeps the
    chain linear; on SQLite, BEGIN IMMEDIATE already does."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class PoolDevice(Base):
    """A pool's GPU ids (README "GPU devices"); the pool's `gpu` total is their number."""

    __tablename__ = "pool_devices"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"), primary_key=True)
    device: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)

    __table_args__ = (CheckConstraint("device >= 0", name="device_range"),)


class ReservationDevice(Base):
    """Which devices a reservation holds (`active`) or held (history)."""

    __tablename__ = "reservation_devices"

    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), primary_key=True)
    device: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"))
    active: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        # Not unique: a device may be booked by reservations whose windows do not
        # overlap; the trigger reservation_devices_guard (0009) refuses overlaps.
        Index(
            "ix_reservation_devices_active",
            "pool_id",
            "device",
            **_partial("active = 1", postgresql="active"),
        ),
    )


class PoolFree(Base):
    """Free capacity over time (README "Booking ahead"): a step function per pool,
    one row per breakpoint, the value holding until the pool's next row. Kept by
    triggers (0009); every pool has a row at FREE_FLOOR."""

    __tablename__ = "pool_free"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    cpu: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(Integer)
    gpu: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("cpu >= 0", name="cpu_free"),
        CheckConstraint("memory >= 0", name="memory_free"),
        CheckConstraint("gpu >= 0", name="gpu_free"),
        Index("ix_pool_free_at", "at"),
    )


FREE_FLOOR = datetime(1, 1, 1)
