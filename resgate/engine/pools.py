"""Pools: create, list, show, resize, delete."""

from __future__ import annotations

from dataclasses import asdict, replace

from sqlalchemy import select, update

from resgate.clock import local
from resgate.engine import audit, devices, windows
from resgate.engine.policies import (
    DEFAULT_POLICY,
    Policy,
    check_policy_order,
    check_policy_values,
    policy_of,
)
from resgate.engine.queries import (
    ACTIVE,
    booked_phrase,
    by_name,
    is_active_now,
    is_booked,
    live_pool,
    lock_rows,
    pool_usage,
    reservation_infos,
)
from resgate.engine.records import Amounts, PoolInfo, Removal, Truncation
from resgate.engine.sweep import sweep
from resgate.engine.validation import (
    FIELD_NAMES,
    Spelling,
    check_amounts,
    check_name,
    check_pool_totals,
    check_resize,
)
from resgate.errors import Hint, InvalidInput, Refused
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, ReservationDevice


def _info(pool: Pool, reserved: Amounts) -> PoolInfo:
    return PoolInfo(
        name=pool.name,
        total=Amounts(pool.cpu, pool.memory, pool.gpu),
        reserved=reserved,
        created_at=pool.created_at,
        per_tenant=pool.per_tenant,
        default_ttl=pool.default_ttl,
        max_ttl=pool.max_ttl,
    )


def create_pool(
    tx: Tx,
    name: str,
    totals: Amounts,
    gpu_ids: list[int] | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> PoolInfo:
    """A new pool; its GPUs are the devices `gpu_ids`, else 0..gpu-1."""
    check_name("pool", name)
    totals, ids = check_pool_totals(totals, gpu_ids)
    check_policy_values(asdict(policy))
    sweep(tx)
    exists = tx.session.scalar(select(Pool.id).where(Pool.name == name, Pool.deleted_at.is_(None)))
    if exists is not None:
        raise Refused(f"pool '{name}' already exists", Hint("exists", "pool", name))
    pool = Pool(
        name=name,
        cpu=totals.cpu,
        memory=totals.memory,
        gpu=totals.gpu,
        created_at=tx.now,
        **asdict(policy),
    )
    tx.session.add(pool)
    tx.session.flush()
    devices.add(tx, pool.id, range(totals.gpu) if ids is None else ids)
    data: dict[str, object] = dict(totals._asdict())
    # Policies other than the defaults only: the events of pools made before
    # policies existed keep their shape.
    data.update({k: v for k, v in asdict(policy).items() if v != getattr(DEFAULT_POLICY, k)})
    audit.record(tx, [audit.Change("pool.create", name, data)])
    return _info(pool, Amounts())


def update_pool(tx: Tx, name: str, changes: dict[str, int | None]) -> PoolInfo:
    """Change a pool's policies (README "Pool policies"); keys of `changes` are
    policy fields, None meaning unlimited / none. Totals stay with resize."""
    if not changes:
        raise InvalidInput("nothing to change: give at least one policy")
    check_policy_values(changes)
    pool = live_pool(tx, name)
    lock_rows(tx, Pool, [pool.id])
    sweep(tx)
    old = policy_of(pool)
    new = replace(old, **changes)
    check_policy_order(name, new)
    for field, value in changes.items():
        setattr(pool, field, value)
    tx.session.flush()
    changed = [field for field in changes if getattr(old, field) != getattr(new, field)]
    audit.record(
        tx,
        [
            audit.Change(
                "pool.update",
                name,
                {
                    "old": {f: getattr(old, f) for f in changed},
                    "new": {f: getattr(new, f) for f in changed},
                },
            )
        ],
    )
    return _info(pool, pool_usage(tx, [pool.id]).get(pool.id, Amounts()))


def list_pools(tx: Tx) -> list[PoolInfo]:
    pools = tx.session.scalars(
        select(Pool).where(Pool.deleted_at.is_(None)).order_by(by_name(tx, Pool.name))
    ).all()
    usage = pool_usage(tx)
    return [_info(pool, usage.get(pool.id, Amounts())) for pool in pools]


def show_pool(tx: Tx, name: str) -> PoolInfo:
    """Totals and usage, and each GPU id with the reservation holding it and that
    reservation's tenant."""
    from resgate.store.models import Tenant

    pool = live_pool(tx, name)
    rows = tx.session.execute(
        select(ReservationDevice.device, ReservationDevice.reservation_id, Tenant.name)
        .join(Reservation, Reservation.id == ReservationDevice.reservation_id)
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(ReservationDevice.pool_id == pool.id, devices.HELD, is_active_now(tx.now))
    ).all()
    held = {device: rid for device, rid, _ in rows}
    info = _info(pool, pool_usage(tx, [pool.id]).get(pool.id, Amounts()))
    truncated = tx.session.execute(
        select(Reservation.id, Tenant.name, Reservation.preempt_at, Reservation.preempted_by)
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(
            Reservation.pool_id == pool.id,
            is_booked(tx.now),
            Reservation.preempt_at.is_not(None),
            Reservation.preempt_at > tx.now,
        )
        .order_by(Reservation.preempt_at, Reservation.id)
    ).all()
    return replace(
        info,
        devices=tuple((d, held.get(d)) for d in devices.pool_ids(tx, pool.id)),
        holders=tuple(sorted({(rid, tenant) for _, rid, tenant in rows})),
        truncations=tuple(Truncation(rid, who, at, by) for rid, who, at, by in truncated if at),
    )


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
    gpu, gpu_ids = check_resize(cpu, memory, gpu, gpu_ids)
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
    # The database's guard moves every row of pool_free, the past's too: fold it away.
    windows.prune(tx, force=True)
    old_totals = Amounts(pool.cpu, pool.memory, pool.gpu)
    # Every instant from now on (README "Booking ahead"): what is held then is the
    # old totals less what is free.
    for at, free in windows.free_steps(tx, pool.id, windows.Window(tx.now, None)):
        held = old_totals - free
        for resource in RESOURCES:
            if getattr(new, resource) < getattr(held, resource):
                when = "now" if at <= tx.now else f"from {local(at)}"
                raise Refused(
                    f"cannot resize pool '{name}': {resource} {getattr(new, resource)} is below "
                    f"the {getattr(held, resource)} reserved {when}"
                )
    if gpu is not None:
        devices.resize(tx, name, pool.id, gpu, gpu_ids)
    old = Amounts(pool.cpu, pool.memory, pool.gpu)
    pool.cpu, pool.memory, pool.gpu = new
    tx.session.flush()
    audit.record(
        tx, [audit.Change("pool.resize", name, {"old": old._asdict(), "new": new._asdict()})]
    )
    return _info(pool, reserved)


def delete_pool(
    tx: Tx, name: str, force: bool = False, spelled: Spelling = FIELD_NAMES
) -> PoolInfo:
    return delete_pool_and_report(tx, name, force, spelled).removed


def delete_pool_and_report(
    tx: Tx, name: str, force: bool = False, spelled: Spelling = FIELD_NAMES
) -> Removal[PoolInfo]:
    """Delete a pool; with `force`, release its active reservations first (listed)."""
    pool = live_pool(tx, name)
    lock_rows(tx, Pool, [pool.id])
    sweep(tx)
    # Upcoming bookings count too (README "Booking ahead"): --force cancels them.
    booked = booked_phrase(tx, Reservation.pool_id == pool.id)
    if booked and not force:
        raise Refused(
            f"pool '{name}' has {booked}; release them first or use {spelled.get('force', 'force')}"
        )
    released = release_all(tx, Reservation.pool_id == pool.id, reason="pool.delete")
    pool.deleted_at = tx.now
    tx.session.flush()
    audit.record(tx, [audit.Change("pool.delete", name, {"force": force, "released": released})])
    return Removal(_info(pool, Amounts()), reservation_infos(tx, released))


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
