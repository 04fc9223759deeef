"""GPU devices (README "GPU devices"): a pool's ids, and which reservation holds each.

A reservation of n GPUs holds n specific devices over its window; the trigger
reservation_devices_guard makes the database refuse a device held by two
reservations whose windows overlap. Every way a reservation ends frees its devices in the same
transaction (free_ended)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, select, true, update

from resgate.engine.validation import check_device_ids
from resgate.engine.windows import Window, bounds, overlap_clause
from resgate.errors import InsufficientResources, InvalidInput, NotFound, Refused
from resgate.limits import MAX_DEVICES
from resgate.store.database import Tx
from resgate.store.models import PoolDevice, Reservation, ReservationDevice

# Rendered `active = 1` / `active = true`, so both databases use the partial
# unique index declared WHERE active.
HELD = ReservationDevice.active == true()


def pool_ids(tx: Tx, pool_id: int) -> list[int]:
    return list(
        tx.session.scalars(
            select(PoolDevice.device)
            .where(PoolDevice.pool_id == pool_id)
            .order_by(PoolDevice.device)
        )
    )


def holders(tx: Tx, pool_id: int, window: Window | None = None) -> dict[int, str]:
    """Device → a reservation holding it over `window` (None: now) — call after the
    sweep, or for display."""
    if window is None:
        window = Window(tx.now, tx.now + timedelta(microseconds=1))
    rows = tx.connection.execute(
        _holders(window.end is None), {"pool_id": pool_id, **bounds(window)}
    )
    held: dict[int, str] = {}
    for device, rid in rows:
        held.setdefault(device, rid)
    return held


@cache
def _holders(open_ended: bool) -> Any:
    return (
        select(ReservationDevice.device, ReservationDevice.reservation_id)
        .join(Reservation, Reservation.id == ReservationDevice.reservation_id)
        .where(ReservationDevice.pool_id == bindparam("pool_id"), HELD, overlap_clause(open_ended))
        .order_by(Reservation.starts_at)
    )


def add(tx: Tx, pool_id: int, ids: Iterable[int]) -> None:
    rows = [{"pool_id": pool_id, "device": device} for device in ids]
    if rows:
        tx.session.execute(insert(PoolDevice), rows)


def remove(tx: Tx, pool_id: int, ids: Iterable[int]) -> None:
    wanted = list(ids)
    if wanted:
        tx.session.execute(
            delete(PoolDevice).where(PoolDevice.pool_id == pool_id, PoolDevice.device.in_(wanted))
        )


def resize(tx: Tx, pool_name: str, pool_id: int, count: int | None, ids: list[int] | None) -> int:
    """Apply `pool resize --gpu N` or `--gpu-ids …`; returns the new GPU total.
    Growing adds ids above the highest; shrinking drops the highest free ids."""
    current = pool_ids(tx, pool_id)
    # A device goes only if it is free at every instant from now on.
    held = holders(tx, pool_id, Window(tx.now, None))
    if ids is not None:
        wanted = check_device_ids(ids)
        going = sorted(set(current) - set(wanted))
        taken = [device for device in going if device in held]
        if taken:
            raise Refused(
                f"cannot resize pool '{pool_name}': GPU {taken[0]} is held by reservation "
                f"'{held[taken[0]]}'"
            )
        remove(tx, pool_id, going)
        add(tx, pool_id, sorted(set(wanted) - set(current)))
        return len(wanted)
    assert count is not None
    if count > MAX_DEVICES:
        raise InvalidInput(f"a pool can have at most {MAX_DEVICES} GPUs")
    if count >= len(current):
        start = (current[-1] + 1) if current else 0
        add(tx, pool_id, range(start, start + count - len(current)))
        return count
    free = [device for device in current if device not in held]
    drop = len(current) - count
    if len(free) < drop:
        raise Refused(
            f"cannot resize pool '{pool_name}': {drop} GPU(s) must go but only {len(free)} are free"
        )
    remove(tx, pool_id, free[-drop:])
    return count


def assign(
    tx: Tx,
    pool_name: str,
    pool_id: int,
    reservation_id: str,
    count: int,
    requested: Sequence[int] | None = None,
    window: Window | None = None,
) -> list[int]:
    """Give a new reservation its devices over its window (None: now): the
    requested ids, else the lowest free for the whole window."""
    held = holders(tx, pool_id, window)
    if requested is not None:
        chosen = sorted(requested)
        busy = [device for device in chosen if device in held]
        if busy:
            raise held_elsewhere(pool_name, busy[0], held[busy[0]])
    else:
        chosen = [device for device in pool_ids(tx, pool_id) if device not in held][:count]
    if len(chosen) != count:
        raise InsufficientResources(
            f"insufficient resources in '{pool_name}': need gpu={count}, "
            f"{len(chosen)} device(s) free"
        )
    if chosen:
        tx.session.execute(
            insert(ReservationDevice),
            [
                {"reservation_id": reservation_id, "device": d, "pool_id": pool_id, "active": True}
                for d in chosen
            ],
        )
    return chosen


def held_elsewhere(pool_name: str, device: int, reservation_id: str) -> InsufficientResources:
    """A GPU asked for by id is another reservation's (exit 3)."""
    return InsufficientResources(
        f"insufficient resources in '{pool_name}': GPU {device} is held by "
        f"reservation '{reservation_id}'"
    )


def check_requested(tx: Tx, pool_name: str, pool_id: int, ids: Sequence[int]) -> list[int]:
    """`--gpu-ids`: every id must be one of the pool's (exit 1 otherwise)."""
    present = set(pool_ids(tx, pool_id))
    for device in ids:
        if device not in present:
            raise NotFound(f"pool '{pool_name}' has no GPU {device}")
    return sorted(ids)


def free(tx: Tx, reservation_ids: Sequence[str]) -> None:
    """Release the devices of reservations that just ended."""
    if reservation_ids:
        tx.session.execute(
            update(ReservationDevice)
            .where(
                ReservationDevice.reservation_id.in_(list(reservation_ids)),
                HELD,
            )
            .values(active=False)
        )


def free_ended(tx: Tx) -> None:
    """Release every device still marked held by a reservation that has ended:
    one statement whatever their number (used by the sweep)."""
    tx.connection.execute(_FREE_ENDED)


# Driven by the held devices (a partial index), each looking up its reservation:
# `reservation_id IN (SELECT id … WHERE status != 'active')` had SQLite gather
# the ids of the whole history first (benchmarks/, sweep).
_FREE_ENDED = (
    update(ReservationDevice)
    .where(
        HELD,
        exists()
        .where(
            Reservation.id == ReservationDevice.reservation_id,
            Reservation.status != "active",
        )
        .correlate(ReservationDevice),
    )
    .values(active=False)
)


def held_by(tx: Tx, reservation_id: str) -> list[int]:
    """The devices a live reservation holds."""
    return list(
        tx.session.scalars(
            select(ReservationDevice.device)
            .where(ReservationDevice.reservation_id == reservation_id, HELD)
            .order_by(ReservationDevice.device)
        )
    )


def holders_over(tx: Tx, pool_id: int, window: Window) -> dict[int, frozenset[str]]:
    """Every device of the pool → the reservations holding it at some instant of
    `window` (none: free for the whole window)."""
    found: dict[int, set[str]] = {device: set() for device in pool_ids(tx, pool_id)}
    rows = tx.connection.execute(
        _holders(window.end is None), {"pool_id": pool_id, **bounds(window)}
    )
    for device, rid in rows:
        found.setdefault(device, set()).add(rid)
    return {device: frozenset(ids) for device, ids in found.items()}
