"""resgate reserve | unreserve | extend | preempt | list | sweep"""

from __future__ import annotations

from typing import Annotated

import typer

from resgate.cli import params
from resgate.cli.state import DRY_RUN_OPTION, JSON_OPTION, emit, out, out_json, transact

TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant name.", show_default=False)]
PoolOpt = Annotated[str, typer.Option("--pool", help="Pool name.", show_default=False)]
Cpu = Annotated[str | None, typer.Option("--cpu", help="CPU cores.", show_default=False)]
Memory = Annotated[str | None, typer.Option("--memory", help="Memory in MB.", show_default=False)]
Gpu = Annotated[str | None, typer.Option("--gpu", help="GPUs.", show_default=False)]
Ttl = Annotated[
    str | None,
    typer.Option(
        "--ttl", help="Seconds or a duration (90s, 5m, 1h30m); 0: no expiry.", show_default=False
    ),
]
IdOpt = Annotated[str, typer.Option("--id", help="Reservation id.", show_default=False)]


def reserve(
    ctx: typer.Context,
    tenant: TenantOpt,
    pool: PoolOpt,
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    ttl: Ttl = None,
    gpu_ids: Annotated[
        str | None,
        typer.Option("--gpu-ids", help="These GPU devices, like 2,3.", show_default=False),
    ] = None,
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
    dry_run: bool = DRY_RUN_OPTION,
    json: bool = JSON_OPTION,
) -> None:
    """Reserve a slice of a pool for a tenant."""
    from resgate.errors import InvalidInput

    params.name("tenant", tenant)
    params.name("pool", pool)
    amounts, ids = params.request(cpu, memory, gpu, gpu_ids)
    seconds = params.seconds("--ttl", ttl)
    if request_id is not None and not (
        1 <= len(request_id) <= 128 and all(" " <= ch <= "~" for ch in request_id)
    ):
        raise InvalidInput("invalid --request-id: 1-128 printable ASCII characters")
    if amounts.is_zero():
        raise InvalidInput("a reservation needs at least one of --cpu, --memory, --gpu above 0")
    from resgate.engine.reservations import ReserveRequest, reserve_and_report
    from resgate.render import data
    from resgate.render.text import reservation_detail, victims_summary

    request = ReserveRequest(
        tenant, pool, amounts, seconds, request_id, preempt, None if ids is None else tuple(ids)
    )
    result = transact(ctx, lambda tx: reserve_and_report(tx, request), write=True, dry_run=dry_run)
    info = result.reservation
    text = f"Reservation created: {info.id}\n{reservation_detail(info, info.created_at)}"
    if preempt:
        text += "\n" + victims_summary(result.preempted)
        payload = {
            "reservation": data.reservation(info),
            "preempted": [data.reservation(v.reservation) for v in result.preempted],
        }
    else:
        payload = data.reservation(info)
    emit(json, dry_run, payload, text)


def unreserve(
    ctx: typer.Context, id: IdOpt, dry_run: bool = DRY_RUN_OPTION, json: bool = JSON_OPTION
) -> None:
    """Release a reservation."""
    from resgate.engine.reservations import unreserve as engine_unreserve
    from resgate.render import data

    params.reservation_id(id)
    info = transact(ctx, lambda tx: engine_unreserve(tx, id), write=True, dry_run=dry_run)
    emit(json, dry_run, data.reservation(info), f"Reservation '{info.id}' released")


def extend(
    ctx: typer.Context,
    id: IdOpt,
    ttl: Annotated[
        str, typer.Option("--ttl", help="New TTL from now; 0: no expiry.", show_default=False)
    ],
    dry_run: bool = DRY_RUN_OPTION,
    json: bool = JSON_OPTION,
) -> None:
    """Set a reservation to expire TTL from now (0: never)."""
    from resgate.engine.reservations import extend as engine_extend
    from resgate.render import data
    from resgate.render.text import local

    params.reservation_id(id)
    seconds = params.seconds("--ttl", ttl)
    info = transact(ctx, lambda tx: engine_extend(tx, id, seconds), write=True, dry_run=dry_run)
    if info.expires_at is None:
        text = f"Reservation '{info.id}' extended: never expires"
    else:
        text = f"Reservation '{info.id}' extended: expires {local(info.expires_at)}"
    emit(json, dry_run, data.reservation(info), text)


def preempt(
    ctx: typer.Context,
    tenant: Annotated[
        str, typer.Option("--tenant", help="The preempting tenant.", show_default=False)
    ],
    target: Annotated[
        str, typer.Option("--target", help="The tenant to evict.", show_default=False)
    ],
    pool: Annotated[
        str | None, typer.Option("--pool", help="Only in this pool.", show_default=False)
    ] = None,
    dry_run: bool = DRY_RUN_OPTION,
    json: bool = JSON_OPTION,
) -> None:
    """Evict every active reservation of a lower-priority tenant."""
    from resgate.engine.reservations import preempt as engine_preempt
    from resgate.render import data
    from resgate.render.text import preempt_summary

    params.name("tenant", tenant)
    params.name("tenant", target)
    if pool is not None:
        params.name("pool", pool)
    result = transact(
        ctx, lambda tx: engine_preempt(tx, tenant, target, pool), write=True, dry_run=dry_run
    )
    emit(json, dry_run, data.preempt(result), preempt_summary(result))


def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include ended reservations.")] = False,
    tenant: Annotated[
        str | None, typer.Option("--tenant", show_default=False, help="Only this tenant's.")
    ] = None,
    pool: Annotated[
        str | None, typer.Option("--pool", show_default=False, help="Only in this pool.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            show_default=False,
            help="Only this status: active, released, expired, preempted (implies --all).",
        ),
    ] = None,
    json: bool = JSON_OPTION,
) -> None:
    """Active reservations (every one with --all), by creation."""
    from resgate.errors import InvalidInput
    from resgate.limits import STATUSES

    if status is not None and status not in STATUSES:
        raise InvalidInput(f"invalid value for --status: {status!r} ({', '.join(STATUSES)})")
    if tenant is not None:
        params.name("tenant", tenant)
    if pool is not None:
        params.name("pool", pool)
    from resgate.engine.listing import list_reservations

    def work(tx: object) -> tuple[object, list[object]]:
        from resgate.store.database import Tx

        assert isinstance(tx, Tx)
        rows = list_reservations(tx, include_ended=all_, tenant=tenant, pool=pool, status=status)
        return tx.now, list(rows)

    now, rows = transact(ctx, work, write=False)
    if json:
        from resgate.render import data

        out_json([data.reservation(r) for r in rows])  # type: ignore[arg-type]
    elif rows:
        from resgate.render.text import reservations_table

        out(reservations_table(rows, now))  # type: ignore[arg-type]
    else:
        out("No reservations.")


def sweep(ctx: typer.Context, json: bool = JSON_OPTION) -> None:
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
