"""Pools: create, list, show, resize, delete."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select, update

from resgate.engine import audit, devices
from resgate.engine.queries import (
    ACTIVE,
    by_name,
    is_active_now,
    live_pool,
    lock_rows,
    pool_usage,
)
from resgate.engine.records import Amounts, PoolInfo
from resgate.engine.sweep import sweep
from resgate.engine.validation import check_amounts, check_name
from resgate.errors import InvalidInput, Refused
from resgate.limits import MAX_DEVICES, RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, ReservationDevice


def _info(pool: Pool, reserved: Amounts) -> PoolInfo:
    return PoolInfo(
        name=pool.name,
        total=Amounts(pool.cpu, pool.memory, pool.gpu),
        reserved=reserved,
        created_at=pool.created_at,
    )


def create_pool(tx: Tx, name: str, totals: Amounts, gpu_ids: list[int] | None = None) -> PoolInfo:
    """A new pool; its GPUs are the devices `gpu_ids`, else 0..gpu-1."""
    check_name("pool", name)
    check_amounts(totals)
    if gpu_ids is not None:
        ids = devices.check_ids(gpu_ids)
        if totals.gpu not in (0, len(ids)):
            raise InvalidInput("--gpu and --gpu-ids name different numbers of GPUs")
        totals = totals._replace(gpu=len(ids))
    elif totals.gpu > MAX_DEVICES:
        raise InvalidInput(f"a pool can have at most {MAX_DEVICES} GPUs")
    if totals.is_zero():
        raise InvalidInput("a pool needs at least one of --cpu, --memory, --gpu above 0")
    sweep(tx)
    exists = tx.session.scalar(select(Pool.id).where(Pool.name == name, Pool.deleted_at.is_(None)))
    if exists is not None:
        raise Refused(f"pool '{name}' already exists")
    pool = Pool(name=name, cpu=totals.cpu, memory=totals.memory, gpu=totals.gpu, created_at=tx.now)
    tx.session.add(pool)
    tx.session.flush()
    devices.add(tx, pool.id, range(totals.gpu) if gpu_ids is None else ids)
    audit.record(tx, [audit.Change("pool.create", name, _amounts(totals))])
    return _info(pool, Amounts())


def list_pools(tx: Tx) -> list[PoolInfo]:
    pools = tx.session.scalars(
        select(Pool).where(Pool.deleted_at.is_(None)).order_by(by_name(tx, Pool.name))
    ).all()
    usage = pool_usage(tx)
    return [_info(pool, usage.get(pool.id, Amounts())) for pool in pools]


def show_pool(tx: Tx, name: str) -> PoolInfo:
    """Totals and usage, and each GPU id with the reservation holding it."""
    pool = live_pool(tx, name)
    held = dict(
        tx.session.execute(
            select(ReservationDevice.device, ReservationDevice.reservation_id)
            .join(Reservation, Reservation.id == ReservationDevice.reservation_id)
            .where(ReservationDevice.pool_id == pool.id, devices.HELD, is_active_now(tx.now))
        ).all()
    )
    info = _info(pool, pool_usage(tx, [pool.id]).get(pool.id, Amounts()))
    return replace(info, devices=tuple((d, held.get(d)) for d in devices.pool_ids(tx, pool.id)))


def resize_pool(
    tx: Tx,
    name: str,
    cpu: int | None = None,
    memory: int | None = None,
    gpu: int | None = None,
    gpu_ids: list[int] | None = None,
) -> PoolInfo:
    """Options not given stay. `gpu` grows with ids above the highest and shrinks
    by dropping the highest free ids; `gpu_ids` sets the list exactly."""
    if gpu_ids is not None:
        gpu_ids = devices.check_ids(gpu_ids)
        if gpu not in (None, len(gpu_ids)):
            raise InvalidInput("--gpu and --gpu-ids name different numbers of GPUs")
        gpu = len(gpu_ids)
    if cpu is None and memory is None and gpu is None:
        raise InvalidInput("give at least one of --cpu, --memory, --gpu, --gpu-ids")
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
    if gpu is not None:
        devices.resize(tx, name, pool.id, gpu, gpu_ids)
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
    devices.free(tx, released)
    audit.record(
        tx, (audit.Change("reservation.release", rid, {"reason": reason}) for rid in released)
    )
    return released


def _amounts(values: Amounts) -> dict[str, int]:
    return dict(zip(RESOURCES, values, strict=True))
