"""Pools: create, list, show, resize, delete."""

from __future__ import annotations

from sqlalchemy import select, update

from resgate.engine import audit
from resgate.engine.errors import InvalidInput, Refused
from resgate.engine.queries import (
    ACTIVE,
    by_name,
    is_active_now,
    live_pool,
    lock_rows,
    pool_usage,
)
from resgate.engine.records import RESOURCES, Amounts, PoolInfo
from resgate.engine.sweep import sweep
from resgate.engine.validation import check_amounts, check_name
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation


def _info(pool: Pool, reserved: Amounts) -> PoolInfo:
    return PoolInfo(
        name=pool.name,
        total=Amounts(pool.cpu, pool.memory, pool.gpu),
        reserved=reserved,
        created_at=pool.created_at,
    )


def create_pool(tx: Tx, name: str, totals: Amounts) -> PoolInfo:
    check_name("pool", name)
    check_amounts(totals)
    if totals.is_zero():
        raise InvalidInput("a pool needs at least one of --cpu, --memory, --gpu above 0")
    sweep(tx)
    exists = tx.session.scalar(select(Pool.id).where(Pool.name == name, Pool.deleted_at.is_(None)))
    if exists is not None:
        raise Refused(f"pool '{name}' already exists")
    pool = Pool(name=name, cpu=totals.cpu, memory=totals.memory, gpu=totals.gpu, created_at=tx.now)
    tx.session.add(pool)
    tx.session.flush()
    audit.record(tx, [audit.Change("pool.create", name, _amounts(totals))])
    return _info(pool, Amounts())


def list_pools(tx: Tx) -> list[PoolInfo]:
    pools = tx.session.scalars(
        select(Pool).where(Pool.deleted_at.is_(None)).order_by(by_name(tx, Pool.name))
    ).all()
    usage = pool_usage(tx)
    return [_info(pool, usage.get(pool.id, Amounts())) for pool in pools]


def show_pool(tx: Tx, name: str) -> PoolInfo:
    pool = live_pool(tx, name)
    return _info(pool, pool_usage(tx, [pool.id]).get(pool.id, Amounts()))


def resize_pool(
    tx: Tx,
    name: str,
    cpu: int | None = None,
    memory: int | None = None,
    gpu: int | None = None,
) -> PoolInfo:
    if cpu is None and memory is None and gpu is None:
        raise InvalidInput("give at least one of --cpu, --memory, --gpu")
    if cpu == 0 and memory == 0 and gpu == 0:
        raise InvalidInput("a pool cannot have all of cpu, memory and gpu at 0")
    pool = live_pool(tx, name)
    lock_rows(tx, Pool, [pool.id])
    sweep(tx)
    new = Amounts(
        pool.cpu if cpu is None else cpu,
        pool.memory if memory is None else memory,
        pool.gpu if gpu is None else gpu,
    )
    check_amounts(new)
    if new.is_zero():
        raise Refused(f"cannot resize pool '{name}': cpu, memory and gpu would all be 0")
    reserved = pool_usage(tx, [pool.id]).get(pool.id, Amounts())
    for resource in RESOURCES:
        if getattr(new, resource) < getattr(reserved, resource):
            raise Refused(
                f"cannot resize pool '{name}': {resource} {getattr(new, resource)} is below "
                f"the {getattr(reserved, resource)} reserved now"
            )
    old = Amounts(pool.cpu, pool.memory, pool.gpu)
    pool.cpu, pool.memory, pool.gpu = new
    tx.session.flush()
    audit.record(
        tx, [audit.Change("pool.resize", name, {"old": _amounts(old), "new": _amounts(new)})]
    )
    return _info(pool, reserved)


def delete_pool(tx: Tx, name: str, force: bool = False) -> PoolInfo:
    pool = live_pool(tx, name)
    lock_rows(tx, Pool, [pool.id])
    sweep(tx)
    active = tx.session.scalars(
        select(Reservation.id).where(Reservation.pool_id == pool.id, is_active_now(tx.now))
    ).all()
    if active and not force:
        raise Refused(
            f"pool '{name}' has {len(active)} active reservation(s); "
            "release them first or use --force"
        )
    released = release_all(tx, Reservation.pool_id == pool.id, reason="pool.delete")
    pool.deleted_at = tx.now
    tx.session.flush()
    audit.record(tx, [audit.Change("pool.delete", name, {"force": force, "released": released})])
    return _info(pool, Amounts())


def release_all(tx: Tx, condition: object, reason: str) -> list[str]:
    """Release every active reservation matching `condition` (forced deletes),
    logging each release. Returns their ids."""
    released = sorted(
        tx.session.scalars(
            update(Reservation)
            .where(Reservation.status == ACTIVE, condition)  # type: ignore[arg-type]
            .values(status="released", ended_at=tx.now)
            .returning(Reservation.id)
            .execution_options(synchronize_session=False)
        ).all()
    )
    audit.record(
        tx, (audit.Change("reservation.release", rid, {"reason": reason}) for rid in released)
    )
    return released


def _amounts(values: Amounts) -> dict[str, int]:
    return dict(zip(RESOURCES, values, strict=True))
