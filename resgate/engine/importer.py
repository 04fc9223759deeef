"""Moving from the Go tool (README "Coming from the Go version"): `resgate import-state`.

Three steps, each complete before the next, so the first failing check of the order in
README "Coming from the Go version" wins:

1. `read_state` (resgate/engine/statefile.py) parses the file and checks its shape and
   names (exit 1). It touches no database.
2. `plan` (resgate/engine/import_plan.py) checks resgate's invariants (exit 1) and
   decides every row. It is pure, so the command runs it once before opening the
   database and again inside the transaction at the transaction's own `now`.
3. `apply`, here, compares the plan with what the database holds
   (resgate/engine/import_checks.py; clashes: exit 4), then writes it with its audit
   events, in the caller's transaction.

Decisions the earlier documents left open are listed in the README ("Coming from the Go
version") and in the docstrings of these modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import insert, update

from resgate.clock import iso
from resgate.engine import audit, devices, statefile, windows
from resgate.engine.import_checks import (
    Ended,
    check_against_existing,
    classify,
    existing_reservations,
    known_ids,
    refuse_clashing_pools_and_tenants,
)
from resgate.engine.import_plan import PlannedPool, PlannedReservation, PlannedTenant, plan
from resgate.engine.queries import lock_rows
from resgate.engine.records import ImportSummary
from resgate.engine.statefile import DEFAULT_PATH, StateFile
from resgate.engine.sweep import sweep
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, Tenant

__all__ = ["DEFAULT_PATH", "MAX_STATE_BYTES", "apply", "plan", "read_state"]

# The size bound of read_state, looked up at each call so that it can be lowered
# (tests/test_import_hostile.py does).
MAX_STATE_BYTES = statefile.MAX_STATE_BYTES
# With someone to tell how far the import is (apply's on_progress), reservations and
# events are written this many at a time, and told after each batch.
PROGRESS_BATCH = 5000

OnProgress = Callable[[int, int | None], None]


def read_state(path: Path, display: str) -> StateFile:
    """Step 1: resgate.engine.statefile.read_state, bounded by MAX_STATE_BYTES."""
    return statefile.read_state(path, display, MAX_STATE_BYTES)


@dataclass
class _Import:
    """One import in progress: its counts, the row ids of the pools and tenants the plan
    names (those it creates added after the flush), and its audit events so far."""

    tx: Tx
    summary: ImportSummary
    pool_ids: dict[str, int]
    tenant_ids: dict[str, int]
    changes: list[audit.Change] = field(default_factory=list)
    # The deletions of pools and tenants created as deleted: recorded after all the
    # other events, so the log shows a deleted pool's reservations before its deletion.
    ends: list[audit.Change] = field(default_factory=list)


_Planned = TypeVar("_Planned", PlannedPool, PlannedTenant)
_Row = TypeVar("_Row", Pool, Tenant)
_Item = TypeVar("_Item")


def apply(tx: Tx, state: StateFile, on_progress: OnProgress | None = None) -> ImportSummary:
    """Step 3: import `state` in the caller's transaction (README "Coming from the Go
    version"). `on_progress(done, total)` is told, as the rows are written, how many
    of the new reservations and audit events are."""
    sweep(tx)  # as every write does: due rows are expired before anything is compared
    the_plan = plan(state, tx.now)
    summary = ImportSummary(statuses={"active": 0, "expired": 0, "released": 0})
    live_pools, live_tenants = refuse_clashing_pools_and_tenants(tx, the_plan)
    existing = existing_reservations(tx, [r.id for r in the_plan.reservations])
    new, to_release = classify(the_plan.reservations, existing, summary)
    run = _Import(tx, summary, *known_ids(the_plan, existing, live_pools, live_tenants))
    lock_rows(tx, Pool, sorted(run.pool_ids.values()))
    lock_rows(tx, Tenant, sorted(run.tenant_ids.values()))
    check_against_existing(tx, (run.pool_ids, run.tenant_ids), the_plan, new, to_release)

    new_pools = _create_pools(run, the_plan.pools)
    new_tenants = _create_tenants(run, the_plan.tenants)
    tx.session.flush()  # the new rows' ids
    run.pool_ids.update((p.name, pool.id) for p, pool in new_pools)
    run.tenant_ids.update((t.name, tenant.id) for t, tenant in new_tenants)
    _add_pool_devices(tx, [pool for _, pool in new_pools])
    _release_ended(run, to_release)
    rows = _reservation_rows(run, new)
    events = [*run.changes, *run.ends]
    written = _Written(on_progress, len(rows) + len(events))
    for batch in written.batches(rows):
        tx.session.execute(insert(Reservation), batch)
    _assign_devices(run, [r for r in new if r.status == "active" and r.amounts.gpu > 0])
    for chunk in written.batches(events):
        audit.record(tx, chunk)
    # Imported reservations started in the past: fold those starts into pool_free's
    # floor now, as the next write would (an import that changes nothing writes nothing).
    windows.prune(tx, force=True)
    return summary


@dataclass
class _Written:
    """How many of `total` rows are written, for `on_progress`: with no one to tell,
    everything goes in one batch (one statement)."""

    on_progress: OnProgress | None
    total: int
    done: int = 0

    def batches(self, items: Sequence[_Item]) -> Iterable[Sequence[_Item]]:
        if self.on_progress is None:
            if items:
                yield items
            return
        self.on_progress(self.done, self.total)
        for start in range(0, len(items), PROGRESS_BATCH):
            batch = items[start : start + PROGRESS_BATCH]
            yield batch
            self.done += len(batch)
            self.on_progress(self.done, self.total)


# ---------------------------------------------------------------- writing


def _create_pools(run: _Import, pools: list[PlannedPool]) -> list[tuple[PlannedPool, Pool]]:
    created = _add_missing(run, pools, run.pool_ids, Pool, lambda p: p.total._asdict())
    run.summary.reused_pools += len(pools) - len(created)
    for p, pool in created:
        run.summary.created_pools += 1
        run.summary.deleted_pools += p.deleted
        data = {**p.total._asdict(), "imported": True, "created_at": iso(pool.created_at)}
        run.changes.append(audit.Change("pool.create", p.name, data))
        if p.deleted:
            run.ends.append(audit.Change("pool.delete", p.name, _deleted_data()))
    return created


def _create_tenants(
    run: _Import, tenants: list[PlannedTenant]
) -> list[tuple[PlannedTenant, Tenant]]:
    created = _add_missing(run, tenants, run.tenant_ids, Tenant, lambda t: {"priority": t.priority})
    run.summary.reused_tenants += len(tenants) - len(created)
    for t, tenant in created:
        run.summary.created_tenants += 1
        run.summary.deleted_tenants += t.deleted
        data = {
            "priority": t.priority,
            "max": dict.fromkeys(RESOURCES),
            "imported": True,
            "created_at": iso(tenant.created_at),
        }
        run.changes.append(audit.Change("tenant.add", t.name, data))
        if t.deleted:
            run.ends.append(audit.Change("tenant.remove", t.name, _deleted_data()))
    return created


def _add_missing(
    run: _Import,
    planned: list[_Planned],
    known: dict[str, int],
    model: Callable[..., _Row],
    columns: Callable[[_Planned], dict[str, Any]],
) -> list[tuple[_Planned, _Row]]:
    """A new row for each planned pool or tenant the database has none of: created at
    the file's time, else the import's; deleted at the import's if the plan says so.
    The caller's flush gives them their ids."""
    now = run.tx.now
    created: list[tuple[_Planned, _Row]] = []
    for item in planned:
        if item.name not in known:
            when, deleted_at = item.created_at or now, now if item.deleted else None
            row = model(name=item.name, created_at=when, deleted_at=deleted_at, **columns(item))
            created.append((item, row))
    run.tx.session.add_all([row for _, row in created])
    return created


def _add_pool_devices(tx: Tx, pools: Iterable[Pool]) -> None:
    """New pools get GPU ids 0..n-1 (README "GPU devices"), as `pool create --gpu n`
    names them."""
    for pool in pools:
        if pool.gpu > 0:
            devices.add(tx, pool.id, range(pool.gpu))


def _release_ended(run: _Import, to_release: list[Ended]) -> None:
    """Reservations an earlier import left active that the Go tool has since ended."""
    if not to_release:
        return
    tx = run.tx
    for r, _ in to_release:
        ended_at = r.ended_at or tx.now
        tx.session.execute(
            update(Reservation)
            .where(Reservation.id == r.id, Reservation.status == "active")
            .values(status="released", ended_at=ended_at)
            .execution_options(synchronize_session=False)
        )
        data = {"imported": True, "reason": "import-state", "ended_at": iso(ended_at)}
        run.changes.append(audit.Change("reservation.release", r.id, data))
    devices.free(tx, [r.id for r, _ in to_release])
    run.summary.released = len(to_release)


def _reservation_rows(run: _Import, new: list[PlannedReservation]) -> list[dict[str, Any]]:
    """The rows of the new reservations, in creation order, and their events. A
    released one without a release time in the file ends at the import time."""
    now, summary = run.tx.now, run.summary
    # README "Who is acting": whoever imports makes them, as their
    # reservation.create events (imported: true) record; the file names no one.
    created_by = audit.actor()
    rows = []
    for r in new:
        ended_at = r.ended_at
        if r.status == "released" and ended_at is None:
            ended_at = now
            summary.ended_at_import_time += 1
        summary.statuses[r.status] += 1
        rows.append(
            {
                "id": r.id,
                "tenant_id": run.tenant_ids[r.tenant],
                "pool_id": run.pool_ids[r.pool],
                **r.amounts._asdict(),
                "ttl": r.ttl,
                "status": r.status,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
                "ended_at": ended_at,
                "created_by": created_by,
                # The Go tool had no windows: each started when it was made.
                "starts_at": r.created_at,
                "ends_at": r.expires_at,
                "lease": False,
            }
        )
        run.changes.extend(_reservation_events(r, ended_at or now))
    summary.created_reservations = len(rows)
    return rows


def _reservation_events(r: PlannedReservation, ended_at: datetime) -> list[audit.Change]:
    """Its creation and, for one that has ended, its end (`ended_at` for a release)."""
    created = {
        "tenant": r.tenant,
        "pool": r.pool,
        **r.amounts._asdict(),
        "ttl": r.ttl,
        "created_at": iso(r.created_at),
        "imported": True,
    }
    events = [audit.Change("reservation.create", r.id, created)]
    if r.status == "expired":
        assert r.expires_at is not None
        expired = {"expires_at": iso(r.expires_at), "imported": True}
        events.append(audit.Change("reservation.expire", r.id, expired))
    elif r.status == "released":
        released = {"imported": True, "ended_at": iso(ended_at)}
        events.append(audit.Change("reservation.release", r.id, released))
    return events


def _assign_devices(run: _Import, reservations: list[PlannedReservation]) -> None:
    """The lowest free GPU ids (README "GPU devices"), in creation order."""
    for r in reservations:
        devices.assign(run.tx, r.pool, run.pool_ids[r.pool], r.id, r.amounts.gpu)


def _deleted_data() -> dict[str, Any]:
    return {"force": False, "released": [], "imported": True}
