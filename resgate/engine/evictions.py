"""Making room by preemption (README "Preemption"): who holds the GPUs asked for by
id, evicting the victims engine/preemption.py chooses (now) or engine/window_victims.py
chooses (over a window that reaches into the booked future), and logging each eviction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, select, update

from resgate.clock import iso, local
from resgate.engine import audit, devices, members, window_victims, windows
from resgate.engine.pardon import pardon
from resgate.engine.preemption import Candidate, Shortfall, choose_victims
from resgate.engine.queries import (
    ACTIVE,
    PoolRow,
    TenantRow,
    insertion_order,
    is_booked,
    lock_reservation,
    lock_rows,
    pool_row,
    reservation_infos,
    tenant_row,
)
from resgate.engine.records import Amounts, Caller, PreemptResult, ReservationInfo, Victim
from resgate.engine.sweep import sweep
from resgate.engine.window_victims import Booked, Room
from resgate.engine.windows import Window
from resgate.errors import InsufficientResources, NotFound, Refused
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, Tenant


def device_holders(
    tx: Tx, tenant: TenantRow, pool: PoolRow, requested: list[int], preempt: bool
) -> list[Candidate]:
    """The reservations holding GPUs asked for by id. Without --preempt any is
    a refusal (exit 3); with it they must all rank below the requester."""
    held = devices.holders(tx, pool.id)
    busy = [device for device in requested if device in held]
    if not busy:
        return []
    if not preempt:
        raise devices.held_elsewhere(pool.name, busy[0], held[busy[0]])
    rows = tx.session.execute(
        select(Reservation, Tenant.priority, Tenant.name)
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(Reservation.id.in_({held[device] for device in busy}))
    ).all()
    for _row, priority, name in rows:
        if priority >= tenant.priority:
            raise InsufficientResources(
                f"insufficient resources in '{pool.name}': GPU(s) asked for are held by "
                f"'{name}' (priority {priority}), which '{tenant.name}' (priority "
                f"{tenant.priority}) does not outrank"
            )
    return [
        Candidate(row.id, priority, row.created_at, Amounts(row.cpu, row.memory, row.gpu))
        for row, priority, _ in rows
    ]


def evict_for(
    tx: Tx,
    tenant: TenantRow,
    pool: PoolRow,
    available: Amounts,
    need: Amounts,
    new_id_: str,
    forced: list[Candidate],
) -> list[Victim]:
    """README "Preemption": evict the best set of lower-priority reservations that makes
    room, in this transaction, or refuse (exit 3) with the shortfall."""
    rows = tx.session.execute(
        select(Reservation, Tenant.priority)
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(
            Reservation.pool_id == pool.id,
            Reservation.status == ACTIVE,
            Tenant.priority < tenant.priority,
        )
        .order_by(*insertion_order(tx))
    ).all()
    candidates = [
        Candidate(row.id, priority, row.created_at, Amounts(row.cpu, row.memory, row.gpu))
        for row, priority in rows
    ]
    chosen = choose_victims(
        candidates, available, need, Amounts(pool.cpu, pool.memory, pool.gpu), forced
    )
    if isinstance(chosen, Shortfall):
        short = chosen.missing
        raise InsufficientResources(
            f"insufficient resources in '{pool.name}' even after preempting every "
            f"lower-priority reservation: short cpu={short.cpu} mem={short.memory} "
            f"gpu={short.gpu}"
        )
    ids = [victim.id for victim in chosen]
    priorities = {victim.id: victim.priority for victim in chosen}
    devices.free(tx, ids)
    for reservation_id in sorted(ids):
        lock_reservation(tx, reservation_id)
    if ids:
        mark_preempted(tx, ids, tenant.name, new_id_)
    victims = [Victim(info, priorities[info.id]) for info in reservation_infos(tx, ids)]
    log_preempted(tx, [v.reservation for v in victims], tenant.name, new_id_)
    return victims


def log_preempted(
    tx: Tx, victims: list[ReservationInfo], by: str, for_id: str | None = None
) -> None:
    changes = []
    for victim in victims:
        data: dict[str, object] = {"by": by, "tenant": victim.tenant, "pool": victim.pool}
        if for_id is not None:
            data["for"] = for_id
        changes.append(audit.Change("reservation.preempt", victim.id, data))
    audit.record(tx, changes)


def mark_preempted(tx: Tx, ids: Sequence[str], by: str, for_id: str | None = None) -> None:
    """End `ids` as preempted by tenant `by` (for reservation `for_id`, if one)."""
    tx.session.execute(
        update(Reservation)
        .where(Reservation.id.in_(ids))
        .values(status="preempted", ended_at=tx.now, preempted_by=by, preempted_for=for_id)
        .execution_options(synchronize_session=False)
    )


def preempt(
    tx: Tx,
    preemptor: str,
    target: str,
    pool_name: str | None = None,
    caller: Caller | None = None,
    upcoming: bool = False,
) -> PreemptResult:
    """End every reservation of `target` that has started (in the pool, or in
    every pool); `upcoming`: cancel its bookings that have not started too."""
    attacker = tenant_row(tx, preemptor)
    victim = tenant_row(tx, target)
    pool = pool_row(tx, pool_name) if pool_name is not None else None
    members.check_may_act(tx, attacker, caller)
    if attacker.priority <= victim.priority:
        raise Refused(
            f"cannot preempt: '{attacker.name}' (priority {attacker.priority}) must outrank "
            f"'{victim.name}' (priority {victim.priority})"
        )
    scope = [Reservation.tenant_id == victim.id, Reservation.status == ACTIVE]
    if not upcoming:
        scope.append(Reservation.starts_at <= tx.now)
    if pool is not None:
        scope.append(Reservation.pool_id == pool.id)
    pool_ids = tx.session.scalars(select(Reservation.pool_id).where(*scope)).all()
    lock_rows(tx, Pool, pool_ids)
    lock_rows(tx, Tenant, [attacker.id, victim.id])
    sweep(tx)
    ids = tx.session.scalars(
        select(Reservation.id).where(*scope).order_by(*insertion_order(tx))
    ).all()
    if not ids:
        where = f" in pool '{pool.name}'" if pool is not None else ""
        which = "active or upcoming" if upcoming else "active"
        raise NotFound(f"tenant '{victim.name}' has no {which} reservations to preempt{where}")
    mark_preempted(tx, ids, attacker.name)
    devices.free(tx, list(ids))
    preempted = reservation_infos(tx, list(ids))
    log_preempted(tx, preempted, attacker.name)
    return PreemptResult(victim.name, preempted, pardon(tx, list(ids)))


# ------------------------------------------------------------ preempting the future


def evict_over_window(
    tx: Tx,
    tenant: TenantRow,
    pool: PoolRow,
    need: Amounts,
    requested: list[int] | None,
    window: Window,
    new_id_: str,
) -> list[Victim]:
    """README "Booking ahead": make room over the whole window with the best set of
    lower-priority plans that overlap it (engine/window_victims.py), or refuse (exit
    3). A victim that starts before a window that has not started is truncated to end
    at the window's start; any other is ended now (cancelled, if it had not started)."""
    candidates = _booked_candidates(tx, tenant, pool, window)
    holders = devices.holders_over(tx, pool.id, window)
    forced: list[Booked] = []
    if requested:
        by_id = {c.id: c for c in candidates}
        in_the_way = sorted({rid for d in requested for rid in holders.get(d, ())})
        for rid in in_the_way:
            if rid not in by_id:
                raise InsufficientResources(
                    f"insufficient resources in '{pool.name}': GPU(s) asked for are booked by "
                    f"reservation '{rid}', which '{tenant.name}' (priority {tenant.priority}) "
                    "does not outrank"
                )
            forced.append(by_id[rid])
    room = Room(
        window.start,
        window.end,
        windows.free_steps(tx, pool.id, window),
        need,
        Amounts(pool.cpu, pool.memory, pool.gpu),
        holders,
        None if requested is None else tuple(requested),
    )
    chosen = window_victims.choose(candidates, room, forced)
    if chosen is None:
        raise InsufficientResources(
            f"insufficient resources in '{pool.name}' from {local(window.start)} even after "
            "preempting every lower-priority reservation over the window"
        )
    truncated = [v.id for v in chosen if v.start < window.start and window.start > tx.now]
    ended = [v.id for v in chosen if v.id not in truncated]
    for reservation_id in sorted(v.id for v in chosen):
        lock_reservation(tx, reservation_id)
    if truncated:
        truncate(tx, truncated, window.start, tenant.name, new_id_)
    if ended:
        devices.free(tx, ended)
        mark_preempted(tx, ended, tenant.name, new_id_)
    priorities = {v.id: v.priority for v in chosen}
    infos = reservation_infos(tx, [v.id for v in chosen])
    log_preempted(tx, [i for i in infos if i.id in ended], tenant.name, new_id_)
    audit.record(
        tx,
        [
            audit.Change(
                "reservation.truncate",
                info.id,
                {
                    "by": tenant.name,
                    "for": new_id_,
                    "tenant": info.tenant,
                    "pool": info.pool,
                    "preempt_at": iso(window.start),
                },
            )
            for info in infos
            if info.id in truncated
        ],
    )
    return [Victim(info, priorities[info.id]) for info in infos]


def _booked_candidates(tx: Tx, tenant: TenantRow, pool: PoolRow, window: Window) -> list[Booked]:
    """The plans of strictly lower-priority tenants in the pool that overlap `window`."""
    rows = tx.session.execute(
        select(
            Reservation.id,
            Tenant.priority,
            Reservation.created_at,
            Reservation.cpu,
            Reservation.memory,
            Reservation.gpu,
            Reservation.starts_at,
            windows.plan_end(),
        )
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(
            Reservation.pool_id == pool.id,
            windows.overlaps(window),
            is_booked(tx.now),
            Tenant.priority < tenant.priority,
        )
        .order_by(*insertion_order(tx)),
        windows.bounds(window),
    ).all()
    return [
        Booked(rid, priority, created, Amounts(cpu, memory, gpu), start, end)
        for rid, priority, created, cpu, memory, gpu, start, end in rows
    ]


def truncate(tx: Tx, ids: Sequence[str], at: datetime, by: str, for_id: str) -> None:
    """Plan `ids` to end at `at` as preempted by tenant `by` for reservation `for_id`
    (expires_at is never after the planned end)."""
    tx.session.execute(
        update(Reservation)
        .where(Reservation.id.in_(ids))
        .values(
            preempt_at=at,
            expires_at=case(
                (Reservation.expires_at.is_(None), at),
                (Reservation.expires_at > at, at),
                else_=Reservation.expires_at,
            ),
            preempted_by=by,
            preempted_for=for_id,
        )
        .execution_options(synchronize_session=False)
    )
