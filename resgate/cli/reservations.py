"""resgate reserve | unreserve | extend | preempt | list | sweep"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from resgate.cli import params
from resgate.cli.options import (
    FLAGS,
    Cpu,
    DryRun,
    Gpu,
    GpuIds,
    Id,
    Json,
    Memory,
    OptionalPool,
    OptionalTenant,
    Ttl,
)
from resgate.cli.permissions import caller, default_name
from resgate.cli.state import emit, out, out_json, transact
from resgate.engine.validation import check_name

if TYPE_CHECKING:
    from datetime import datetime

    from resgate.engine.records import Amounts, Caller, ReservationInfo
    from resgate.engine.reservations import ReserveRequest
    from resgate.store.database import Tx


def checked_request(
    tenant: str | None,
    pool: str | None,
    amounts: Amounts,
    ids: list[int] | None,
    ttl: int | None,
    *,
    request_id: str | None = None,
    preempt: bool = False,
    caller: Caller | None = None,
    lease: bool = False,
) -> ReserveRequest:
    """What `reserve` and `run` ask for, checked as the engine will check it. A
    tenant or pool of None is inferred by the engine (README "Sharing one machine")."""
    from resgate.engine.reservations import ReserveRequest
    from resgate.engine.validation import check_reservation_request

    for kind, name in (("tenant", tenant), ("pool", pool)):
        if name is not None:
            check_name(kind, name)
    check_reservation_request(amounts, ids, ttl, request_id, FLAGS)
    return ReserveRequest(
        tenant=tenant,
        pool=pool,
        amounts=amounts,
        ttl=ttl,
        request_id=request_id,
        preempt=preempt,
        gpu_ids=None if ids is None else tuple(ids),
        caller=caller,
        lease=lease,
    )


def reserve(
    ctx: typer.Context,
    tenant: OptionalTenant = None,
    pool: OptionalPool = None,
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    ttl: Ttl = None,
    gpu_ids: GpuIds = None,
    preempt: Annotated[
        bool,
        typer.Option("--preempt", help="Evict lower-priority reservations if needed."),
    ] = False,
    request_id: Annotated[
        str | None,
        typer.Option(
            "--request-id",
            help="Idempotency key (1-128 printable ASCII characters).",
            show_default=False,
        ),
    ] = None,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Reserve a slice of a pool for a tenant (yours, and the only pool, when left out)."""
    amounts, ids = params.request(cpu, memory, gpu, gpu_ids)
    seconds = params.seconds("--ttl", ttl)
    request = checked_request(
        default_name(ctx, tenant, "tenant"),
        default_name(ctx, pool, "pool"),
        amounts,
        ids,
        seconds,
        request_id=request_id,
        preempt=preempt,
        caller=caller(ctx),
    )
    from resgate.engine.reservations import reserve_and_report
    from resgate.render import data

    result = transact(
        ctx, lambda tx: reserve_and_report(tx, request, FLAGS), write=True, dry_run=dry_run
    )
    info = result.reservation
    if json:
        payload = data.reservation(info)
        if preempt:
            victims = [data.reservation(v.reservation) for v in result.preempted]
            payload = {"reservation": payload, "preempted": victims}
        emit(json, dry_run, payload, "")
        return
    from resgate.render.text import reservation_detail, victims_summary

    # The transaction's now: a replay later shows the time left, as `list` does.
    text = f"Reservation created: {info.id}\n{reservation_detail(info, result.now)}"
    if preempt:
        text += "\n" + victims_summary(result.preempted)
    emit(json, dry_run, {}, text)


def unreserve(ctx: typer.Context, id: Id, dry_run: DryRun = False, json: Json = False) -> None:
    """Release a reservation."""
    from resgate.engine.reservations import unreserve as engine_unreserve
    from resgate.render import data

    params.reservation_id(id)
    who = caller(ctx)
    info = transact(ctx, lambda tx: engine_unreserve(tx, id, who), write=True, dry_run=dry_run)
    emit(json, dry_run, data.reservation(info), f"Reservation '{info.id}' released")


def extend(
    ctx: typer.Context,
    id: Id,
    ttl: Annotated[
        str, typer.Option("--ttl", help="New TTL from now; 0: no expiry.", show_default=False)
    ],
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Set a reservation to expire TTL from now (0: never)."""
    from resgate.engine.reservations import extend as engine_extend
    from resgate.render import data
    from resgate.render.text import local

    params.reservation_id(id)
    seconds = params.seconds("--ttl", ttl)
    who = caller(ctx)
    info = transact(
        ctx, lambda tx: engine_extend(tx, id, seconds, who), write=True, dry_run=dry_run
    )
    if info.expires_at is None:
        text = f"Reservation '{info.id}' extended: never expires"
    else:
        text = f"Reservation '{info.id}' extended: expires {local(info.expires_at)}"
    emit(json, dry_run, data.reservation(info), text)


def preempt(
    ctx: typer.Context,
    tenant: Annotated[
        str, typer.Option("--tenant", "-t", help="The preempting tenant.", show_default=False)
    ],
    target: Annotated[
        str, typer.Option("--target", help="The tenant to evict.", show_default=False)
    ],
    pool: Annotated[
        str | None, typer.Option("--pool", "-p", help="Only in this pool.", show_default=False)
    ] = None,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Evict every active reservation of a lower-priority tenant."""
    from resgate.engine.reservations import preempt as engine_preempt
    from resgate.render import data
    from resgate.render.text import preempt_summary

    check_name("tenant", tenant)
    check_name("tenant", target)
    if pool is not None:
        check_name("pool", pool)
    who = caller(ctx)
    result = transact(
        ctx,
        lambda tx: engine_preempt(tx, tenant, target, pool, who),
        write=True,
        dry_run=dry_run,
    )
    emit(json, dry_run, data.preempt(result), preempt_summary(result))


TenantFilter = Annotated[
    str | None, typer.Option("--tenant", "-t", show_default=False, help="Only this tenant's.")
]
PoolFilter = Annotated[
    str | None, typer.Option("--pool", "-p", show_default=False, help="Only in this pool.")
]
StatusFilter = Annotated[
    str | None,
    typer.Option(
        "--status",
        show_default=False,
        help="Only this status: active, released, expired, preempted (implies --all).",
    ),
]
Mine = Annotated[
    bool, typer.Option("--mine", help="Only those you made (RESGATE_ACTOR, else your user name).")
]


def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include ended reservations.")] = False,
    tenant: TenantFilter = None,
    pool: PoolFilter = None,
    status: StatusFilter = None,
    mine: Mine = False,
    json: Json = False,
) -> None:
    """Active reservations (every one with --all), by creation."""
    from resgate.engine.validation import check_status

    check_status(status, FLAGS)
    if tenant is not None:
        check_name("tenant", tenant)
    if pool is not None:
        check_name("pool", pool)
    created_by = None
    if mine:
        from resgate.engine.audit import actor

        # The actor the audit log records: a bad RESGATE_ACTOR is exit 2 here too.
        created_by = actor()
    from resgate.engine.listing import list_reservations

    def work(tx: Tx) -> tuple[datetime, list[ReservationInfo]]:
        rows = list_reservations(
            tx,
            include_ended=all_,
            tenant=tenant,
            pool=pool,
            status=status,
            created_by=created_by,
        )
        return tx.now, rows

    now, rows = transact(ctx, work, write=False)
    if json:
        from resgate.render import data

        out_json([data.reservation(r) for r in rows])
    elif rows:
        from resgate.render.text import reservations_table

        out(reservations_table(rows, now))
    else:
        out("No reservations.")


def sweep(ctx: typer.Context, json: Json = False) -> None:
    """Expire due reservations now (for cron)."""
    from resgate.engine.sweep import sweep as engine_sweep

    ids = transact(ctx, engine_sweep, write=True)
    if json:
        out_json({"expired": len(ids), "ids": ids})
    else:
        out(f"Expired {len(ids)} reservation(s)")


def register(app: typer.Typer) -> None:
    app.command("reserve")(reserve)
    app.command("unreserve")(unreserve)
    app.command("extend")(extend)
    app.command("preempt")(preempt)
    app.command("list")(list_)
    app.command("sweep")(sweep)
