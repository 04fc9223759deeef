"""resgate reserve | unreserve | extend | preempt | list | sweep"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import typer

from resgate.cli import params
from resgate.cli.options import (
    FLAGS,
    After,
    Cpu,
    DryRun,
    Duration,
    Earliest,
    End,
    Gpu,
    GpuIds,
    Id,
    IdArgument,
    IdArguments,
    Json,
    Memory,
    OptionalPool,
    OptionalTenant,
    Preempt,
    Quiet,
    Start,
    Timeout,
    Ttl,
    Wait,
    Wide,
)
from resgate.cli.permissions import caller, default_name
from resgate.cli.state import emit, out, out_json, transact
from resgate.engine.validation import check_name
from resgate.errors import InsufficientResources

if TYPE_CHECKING:
    from datetime import datetime

    from resgate.engine.extension import ExtendResult
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


RequestId = Annotated[
    str | None,
    typer.Option(
        "--request-id",
        help="Idempotency key (1-128 printable ASCII characters).",
        show_default=False,
    ),
]


def reserve(
    ctx: typer.Context,
    tenant: OptionalTenant = None,
    pool: OptionalPool = None,
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    ttl: Ttl = None,
    start: Start = None,
    duration: Duration = None,
    end: End = None,
    earliest: Earliest = False,
    after: After = None,
    gpu_ids: GpuIds = None,
    preempt: Preempt = False,
    request_id: RequestId = None,
    wait: Wait = False,
    timeout: Timeout = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    json: Json = False,
) -> None:
    """Reserve a slice of a pool for a tenant (yours, and the only pool, when left
    out), now or ahead, or wait in line for it."""
    # Long only for its options: the body is parse, transact, render.
    from resgate.errors import InvalidInput

    if quiet and json:
        raise InvalidInput("--quiet and --json do not go together: choose one")
    amounts, ids = params.request(cpu, memory, gpu, gpu_ids)
    seconds = params.seconds("--ttl", ttl)
    window = params.window(
        start, end, params.seconds("--duration", duration), seconds, earliest, after
    )
    if earliest and preempt:
        raise InvalidInput("--earliest finds room without evicting anyone: drop --preempt")
    patience = _patience(wait, timeout, start, end, earliest)
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

    try:
        result = transact(
            ctx,
            lambda tx: reserve_and_report(tx, window.applied(request, tx.now), FLAGS),
            write=True,
            dry_run=dry_run,
        )
    except InsufficientResources as refusal:
        if not wait:
            raise
        from resgate.cli.waiting import wait_in_line, would_wait

        asked = replace(request, duration=window.duration or request.ttl)
        if dry_run:
            would_wait(ctx, asked, json)
            return
        result = wait_in_line(ctx, asked, refusal, patience, quiet)
    info = result.reservation
    if quiet:  # for scripts: ID=$(resgate reserve -q …)
        out(info.id)
        return
    if json:
        payload = data.reservation(info)
        if preempt:
            victims = [data.reservation(v.reservation) for v in result.preempted]
            payload = {"reservation": payload, "preempted": victims}
        emit(json, dry_run, payload, "")
        return
    from resgate.render.tables import reservation_detail, victims_summary

    # The transaction's now: a replay later shows the time left, as `list` does.
    text = f"Reservation created: {info.id}\n{reservation_detail(info, result.now)}"
    if preempt:
        text += "\n" + victims_summary(result.preempted, result.pardons)
    emit(json, dry_run, {}, text)


def _patience(
    wait: bool, timeout: str | None, start: str | None, end: str | None, earliest: bool
) -> int | None:
    """`--wait`'s timeout in seconds (None: as long as it takes), checked (exit 2)."""
    from resgate.errors import InvalidInput

    if timeout is not None and not wait:
        raise InvalidInput("--timeout goes with --wait")
    if wait and (start is not None or end is not None or earliest):
        raise InvalidInput(
            "--wait takes a request that starts once it is let in: "
            "give --duration or --ttl, not --start, --end or --earliest"
        )
    return params.seconds("--timeout", timeout) if timeout is not None else None


def unreserve(
    ctx: typer.Context,
    ids: IdArguments = None,
    id: Id = None,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Release reservations: all of them or, if one cannot be, none."""
    from resgate.engine.release import unreserve_many
    from resgate.render import data

    wanted = params.reservation_ids(ids, id)
    who = caller(ctx)
    from resgate.render.tables import pardons_summary

    result = transact(ctx, lambda tx: unreserve_many(tx, wanted, who), write=True, dry_run=dry_run)
    released = result.reservations
    lines = "\n".join(
        [f"Reservation '{info.id}' released" for info in released]
        + ([pardons_summary(result.pardons)] if result.pardons else [])
    )
    payload = (
        data.reservation(released[0])
        if len(released) == 1
        else {"released": [data.reservation(i) for i in released]}
    )
    if result.pardons:
        payload = {**payload, "pardoned": [data.pardon(p) for p in result.pardons]}
    emit(json, dry_run, payload, lines)


def extend(
    ctx: typer.Context,
    id_argument: IdArgument = None,
    id: Id = None,
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", help="New end: this long from now; 0: no end.", show_default=False),
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Move the end this much later.", show_default=False)
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="The new end.", show_default=False)
    ] = None,
    partial: Annotated[
        bool,
        typer.Option("--partial", help="Short of room, extend to the latest end that fits."),
    ] = False,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Move a reservation's end: --ttl from now (0: never), --by later, or --until a time."""
    from resgate.engine.extension import Extension, extend_and_report
    from resgate.errors import InvalidInput
    from resgate.render import data

    rid = params.reservation_id(params.given_once("reservation id", id_argument, id, "ID or --id"))
    if sum(value is not None for value in (ttl, by, until)) != 1:
        raise InvalidInput("give exactly one of --ttl, --by, --until")
    seconds, later = params.seconds("--ttl", ttl), params.seconds("--by", by)
    if later == 0:
        raise InvalidInput("invalid duration for --by: '0' (a duration above 0)")
    end = params.when("--until", until)
    who = caller(ctx)

    def work(tx: Tx) -> ExtendResult:
        change = Extension(
            ttl=seconds, by=later, until=None if end is None else end.at(tx.now), partial=partial
        )
        return extend_and_report(tx, rid, change, who, FLAGS)

    result = transact(ctx, work, write=True, dry_run=dry_run)
    emit(json, dry_run, data.reservation(result.reservation), _extended_line(result))


def _extended_line(result: ExtendResult) -> str:
    """`Reservation 'ID' now expires 2026-12-01 20:30:52 (in 30m; 1h30m earlier than before)`."""
    from resgate.clock import span
    from resgate.render.text import local

    info, before, now = result.reservation, result.before, result.now
    if info.expires_at is None:
        return f"Reservation '{info.id}' now never expires" + (
            "" if before is None else f" (before: {local(before)})"
        )
    left = span(round((info.expires_at - now).total_seconds()), countdown=True)
    if before is None:
        change = "before: never"
    else:
        moved = round((info.expires_at - before).total_seconds())
        change = (
            "as before"
            if moved == 0
            else (f"{span(abs(moved))} {'later' if moved > 0 else 'earlier'} than before")
        )
    if result.partly:
        asked = "open-ended" if result.asked is None else local(result.asked)
        change += f"; the latest possible end: {asked} does not fit"
    return f"Reservation '{info.id}' now expires {local(info.expires_at)} (in {left}; {change})"


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
    upcoming: Annotated[
        bool, typer.Option("--upcoming", help="Cancel its upcoming bookings too.")
    ] = False,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Evict every active reservation of a lower-priority tenant (--upcoming: and
    cancel its bookings)."""
    from resgate.engine.evictions import preempt as engine_preempt
    from resgate.render import data
    from resgate.render.tables import preempt_summary

    check_name("tenant", tenant)
    check_name("tenant", target)
    if pool is not None:
        check_name("pool", pool)
    who = caller(ctx)
    result = transact(
        ctx,
        lambda tx: engine_preempt(tx, tenant, target, pool, who, upcoming),
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
    wide: Wide = False,
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
        from resgate.cli.state import style
        from resgate.render.tables import reservations_table

        out(reservations_table(rows, now, style(ctx).widened(wide)))
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
