"""SQL pieces the engine's operations share: effective status, usage sums,
lookups by name, row locks in the one order of README "Many processes at once", ordering."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)

from resgate.engine.records import Amounts, ReservationInfo
from resgate.errors import Hint, NotFound
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, ReservationDevice, Tenant

if TYPE_CHECKING:
    from sqlalchemy.engine import Row

T = TypeVar("T")

# Written inline (not as a bound parameter) so SQLite can use the partial
# indexes declared WHERE status = 'active'.
ACTIVE: ColumnClause[str] = literal_column("'active'")


def is_active_now(now: datetime) -> ColumnElement[bool]:
    """Effective-active: status active, started, and not yet due (docs/schema.md).
    expires_at is never after the planned end, so it alone says when a row is over."""
    return and_(
        Reservation.status == ACTIVE,
        Reservation.starts_at <= now,
        or_(Reservation.expires_at.is_(None), Reservation.expires_at > now),
    )


def is_booked(now: datetime) -> ColumnElement[bool]:
    """Upcoming or effective-active: stored active and not yet over."""
    return and_(
        Reservation.status == ACTIVE,
        or_(Reservation.expires_at.is_(None), Reservation.expires_at > now),
    )


def booked_phrase(tx: Tx, scope: ColumnElement[bool]) -> str:
    """`1 active reservation(s)`, `1 active and 2 upcoming reservation(s)`: what a
    delete would release, empty if nothing."""
    active, upcoming = tx.session.execute(
        select(
            func.count().filter(is_active_now(tx.now)),
            func.count().filter(Reservation.starts_at > tx.now),
        ).where(scope, is_booked(tx.now))
    ).one()
    if not upcoming:
        return f"{active} active reservation(s)" if active else ""
    return f"{active} active and {upcoming} upcoming reservation(s)"


def is_due(now: datetime) -> ColumnElement[bool]:
    return and_(
        Reservation.status == ACTIVE,
        Reservation.expires_at.is_not(None),
        Reservation.expires_at <= now,
    )


def effective_status(now: datetime) -> ColumnElement[str]:
    """What a reservation shows: upcoming before its start; over at its end
    (preempted when a planned truncation came first or at the same instant)."""
    truncated = and_(
        Reservation.preempt_at.is_not(None), Reservation.preempt_at <= Reservation.expires_at
    )
    return case(
        (and_(is_due(now), truncated), literal_column("'preempted'")),
        (is_due(now), literal_column("'expired'")),
        (
            and_(Reservation.status == ACTIVE, Reservation.starts_at > now),
            literal_column("'upcoming'"),
        ),
        else_=Reservation.status,
    )


def effective_ended_at(now: datetime) -> ColumnElement[datetime]:
    return case((is_due(now), Reservation.expires_at), else_=Reservation.ended_at)


def by_name(tx: Tx, column: Any) -> Any:
    """Byte-wise name order on both databases."""
    return column.collate("C") if tx.is_postgres else column


def insertion_order(tx: Tx, *, active_only: bool = False) -> list[Any]:
    """Creation time, ties in insertion order.

    active_only: the query is limited to active rows. On SQLite the sort key is
    then written `+created_at` (the same value): otherwise the planner walks
    ix_reservations_created_at over the whole history to skip the sort, instead
    of reading the few active rows through a partial index and sorting them."""
    if tx.is_postgres:
        return [Reservation.created_at, Reservation.insertion_seq]
    if active_only:
        return [literal_column("+reservations.created_at"), literal_column("reservations.rowid")]
    return [Reservation.created_at, literal_column("reservations.rowid")]


# Statements on every write's path are built once, with bound parameters, and
# reused: building them anew per call cost more than running them on SQLite
# (benchmarks/, cycles). `now` is bound as the timestamp it is compared with.
RESERVATIONS: Table = Reservation.__table__  # type: ignore[assignment]
NOW: Any = bindparam("now", type_=RESERVATIONS.c.expires_at.type)


@cache
def _live(model: type[Pool] | type[Tenant]) -> Any:
    return select(model).where(model.name == bindparam("name"), model.deleted_at.is_(None))


def live_pool(tx: Tx, name: str) -> Pool:
    """The live pool named `name`, as an ORM object the caller may change."""
    pool: Pool | None = tx.session.scalars(_live(Pool), {"name": name}).one_or_none()
    return _found(tx, pool, "pool", name)


def live_tenant(tx: Tx, name: str) -> Tenant:
    """The live tenant named `name`, as an ORM object the caller may change."""
    tenant: Tenant | None = tx.session.scalars(_live(Tenant), {"name": name}).one_or_none()
    return _found(tx, tenant, "tenant", name)


class PoolRow(Protocol):
    """What reading a pool needs: a row of `pools`, or a Pool object."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def cpu(self) -> int: ...
    @property
    def memory(self) -> int: ...
    @property
    def gpu(self) -> int: ...
    @property
    def per_tenant(self) -> int | None: ...
    @property
    def default_ttl(self) -> int | None: ...
    @property
    def max_ttl(self) -> int | None: ...


class TenantRow(Protocol):
    """What reading a tenant needs: a row of `tenants`, or a Tenant object."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def max_cpu(self) -> int | None: ...
    @property
    def max_memory(self) -> int | None: ...
    @property
    def max_gpu(self) -> int | None: ...


@cache
def _live_row(model: type[Pool] | type[Tenant]) -> Any:
    table = model.__table__
    return select(table).where(table.c.name == bindparam("name"), table.c.deleted_at.is_(None))


def pool_row(tx: Tx, name: str) -> Row[Any]:
    """The live pool named `name`, read only. A Core row: reserve looks its pool
    and tenant up in every call, and loading ORM objects cost several times the
    query (benchmarks/, cycles)."""
    row = tx.connection.execute(_live_row(Pool), {"name": name}).first()
    return _found(tx, row, "pool", name)


def tenant_row(tx: Tx, name: str) -> Row[Any]:
    """The live tenant named `name`, read only (see pool_row)."""
    row = tx.connection.execute(_live_row(Tenant), {"name": name}).first()
    return _found(tx, row, "tenant", name)


def _found(tx: Tx, value: T | None, kind: str, name: str) -> T:
    if value is None:
        raise not_found(tx, kind, name)
    return value


def not_found(tx: Tx, kind: str, name: str) -> NotFound:
    """`pool 'x' not found`, with the hint of the closest live name."""
    return NotFound(f"{kind} '{name}' not found", _missing(tx, kind, name))


def _missing(tx: Tx, kind: str, name: str) -> Hint:
    """The hint for a name that is not there: the closest live name, if one is
    close (difflib's ratio of 0.6 or more)."""
    import difflib

    model = Pool if kind == "pool" else Tenant
    names = tx.session.scalars(select(model.name).where(model.deleted_at.is_(None))).all()
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return Hint("missing", kind, name, close[0] if close else None)


def lock_rows(tx: Tx, model: type[Pool] | type[Tenant], ids: Iterable[int]) -> None:
    """PostgreSQL: lock before checking, ascending ids, pools before tenants.
    SQLite needs nothing: BEGIN IMMEDIATE already holds the one write lock."""
    wanted = sorted(set(ids))
    if tx.is_postgres and wanted:
        tx.session.execute(
            select(model.id).where(model.id.in_(wanted)).order_by(model.id).with_for_update()
        ).all()


def lock_reservation(tx: Tx, reservation_id: str) -> None:
    if tx.is_postgres:
        tx.session.execute(
            select(Reservation.id).where(Reservation.id == reservation_id).with_for_update()
        ).all()


@cache
def _usage_of_one() -> Any:
    return _usage(NOW).where(Reservation.pool_id == bindparam("pool_id"))


def usage_sums(now: Any, by: Any, *, count: bool = False) -> Any:
    """What the effective-active reservations hold, per `by` (a pool or tenant
    column): `by`, [the number of reservations,] cpu, memory, gpu."""
    sums = [func.coalesce(func.sum(getattr(Reservation, r)), 0) for r in RESOURCES]
    counted = [func.count()] if count else []
    return select(by, *counted, *sums).where(is_active_now(now)).group_by(by)


def _usage(now: Any) -> Any:
    return usage_sums(now, Reservation.pool_id)


def pool_usage(tx: Tx, pool_ids: list[int] | None = None) -> dict[int, Amounts]:
    """Sum of effective-active reservations per pool."""
    if pool_ids is not None and len(pool_ids) == 1:
        # On the connection: a Core statement needs none of the session's ORM layer.
        rows = tx.connection.execute(_usage_of_one(), {"now": tx.now, "pool_id": pool_ids[0]})
        return {
            pool_id: Amounts(int(cpu), int(memory), int(gpu)) for pool_id, cpu, memory, gpu in rows
        }
    query = _usage(tx.now)
    if pool_ids is not None:
        query = query.where(Reservation.pool_id.in_(pool_ids))
    return {
        pool_id: Amounts(int(cpu), int(memory), int(gpu))
        for pool_id, cpu, memory, gpu in tx.session.execute(query)
    }


def gpu_ids_column(dialect: str) -> Any:
    """The devices a reservation holds or held, as text `0 1 4` (README "GPU devices")."""
    devices = ReservationDevice.device
    if dialect == "postgresql":
        # Imported here: sqlalchemy.dialects.postgresql pulls in asyncio (~20 ms)
        # that no SQLite command needs (benchmarks/, startup).
        from sqlalchemy.dialects.postgresql import aggregate_order_by

        aggregate = func.string_agg(
            cast(devices, String), aggregate_order_by(literal(" "), devices)
        )
    else:
        # The primary key (reservation_id, device) hands rows over in device order.
        aggregate = func.group_concat(devices, " ")
    ids = (
        select(aggregate)
        .where(ReservationDevice.reservation_id == Reservation.id)
        .scalar_subquery()
    )
    return case((Reservation.gpu > 0, ids), else_=None)


def reservations_query(now: datetime, dialect: str = "sqlite") -> Any:
    """Reservations with their tenant and pool names and effective state."""
    return (
        select(
            Reservation.id,
            Tenant.name.label("tenant"),
            Pool.name.label("pool"),
            Reservation.cpu,
            Reservation.memory,
            Reservation.gpu,
            Reservation.ttl,
            effective_status(now).label("status"),
            Reservation.created_at,
            Reservation.expires_at,
            effective_ended_at(now).label("ended_at"),
            Reservation.preempted_by,
            Reservation.preempted_for,
            Reservation.request_id,
            gpu_ids_column(dialect).label("gpu_ids"),
            Reservation.created_by,
            Reservation.starts_at,
            Reservation.ends_at,
            Reservation.preempt_at,
            Reservation.lease,
        )
        .select_from(Reservation)
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .join(Pool, Pool.id == Reservation.pool_id)
    )


_new = object.__new__
_set = object.__setattr__


def to_info(row: Any) -> ReservationInfo:
    """The same object as ReservationInfo(id=…, …, gpu_ids=…, created_by=…), built without the
    frozen dataclass's __init__ (one object.__setattr__ per field): an export makes
    one per row of the history (benchmarks/, export)."""
    (id_, tenant, pool, cpu, memory, gpu, ttl, status, created_at, expires_at, ended_at,
     preempted_by, preempted_for, request_id, gpu_ids, created_by,
     starts_at, ends_at, preempt_at, lease) = row  # fmt: skip
    info = _new(ReservationInfo)
    _set(
        info,
        "__dict__",
        {
            "id": id_,
            "tenant": tenant,
            "pool": pool,
            "amounts": Amounts(cpu, memory, gpu),
            "ttl": ttl,
            "status": status,
            "created_at": created_at,
            "expires_at": expires_at,
            "ended_at": ended_at,
            "preempted_by": preempted_by,
            "preempted_for": preempted_for,
            "request_id": request_id,
            "gpu_ids": tuple(int(device) for device in gpu_ids.split()) if gpu_ids else (),
            "created_by": created_by,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "preempt_at": preempt_at,
            "lease": bool(lease),
        },
    )
    return info


@cache
def _info_by_id(dialect: str) -> Any:
    return reservations_query(NOW, dialect).where(Reservation.id == bindparam("id"))


def reservation_info(tx: Tx, reservation_id: str) -> ReservationInfo:
    row = tx.connection.execute(
        _info_by_id(tx.dialect), {"now": tx.now, "id": reservation_id}
    ).one_or_none()
    if row is None:
        raise NotFound(f"reservation '{reservation_id}' not found")
    return to_info(row)


def reservation_infos(tx: Tx, ids: list[str]) -> list[ReservationInfo]:
    if not ids:
        return []
    rows = tx.session.execute(
        reservations_query(tx.now, tx.dialect)
        .where(Reservation.id.in_(ids))
        .order_by(*insertion_order(tx))
    )
    return [to_info(row) for row in rows]
