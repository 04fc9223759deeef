"""resgate free | slots | timeline: what is free, now or ahead, where a request
fits, and the calendar of a pool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from resgate.cli import params
from resgate.cli.options import (
    FLAGS,
    After,
    Cpu,
    Gpu,
    GpuIds,
    Json,
    Memory,
    OptionalPool,
    OptionalTenant,
    Wide,
)
from resgate.cli.permissions import caller, default_name
from resgate.cli.state import out, out_json, style, transact
from resgate.engine.validation import check_name

if TYPE_CHECKING:
    from datetime import datetime

    from resgate.engine.records import Slots
    from resgate.store.database import Tx

OnlyPool = Annotated[
    str | None, typer.Option("--pool", "-p", show_default=False, help="Only this pool.")
]
At = Annotated[
    str | None,
    typer.Option(
        "--at", metavar="WHEN", show_default=False, help="What is free at WHEN (default: now)."
    ),
]


def free(
    ctx: typer.Context, pool: OnlyPool = None, at: At = None, json: Json = False, wide: Wide = False
) -> None:
    """What is free now (or at WHEN) in every pool (or one): CPU, memory, GPUs and
    their ids, and until when."""
    from resgate.engine.free import free as free_at

    if pool is not None:
        check_name("pool", pool)
    moment = params.future("--at", at)
    spelled = {**FLAGS, "start": "--at"}
    pools = transact(
        ctx,
        lambda tx: free_at(tx, pool, None if moment is None else moment.at(tx.now), spelled),
        write=False,
    )
    if json:
        from resgate.render import data

        out_json([data.free(p) for p in pools])
    elif pools:
        from resgate.render.views import free_table

        out(free_table(pools, style(ctx).widened(wide)))
    else:
        out("No pools.")


def slots(
    ctx: typer.Context,
    duration: Annotated[
        str,
        typer.Option(
            "--duration", metavar="DURATION", show_default=False, help="Length of the window."
        ),
    ],
    tenant: OptionalTenant = None,
    pool: OptionalPool = None,
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    gpu_ids: GpuIds = None,
    after: After = None,
    count: Annotated[
        str | None,
        typer.Option("--count", show_default=False, help="How many windows [default: 3]."),
    ] = None,
    json: Json = False,
    wide: Wide = False,
) -> None:
    """Find the earliest windows in which a request fits (book one: reserve --earliest)."""
    from dataclasses import replace

    from resgate.engine.slots import SlotRequest, find_slots
    from resgate.engine.validation import check_reservation_request

    amounts, ids = params.request(cpu, memory, gpu, gpu_ids)
    length = params.seconds("--duration", duration) or 0
    amounts, ids, _ = check_reservation_request(amounts, ids, length, None, FLAGS)
    begins = params.future("--after", after)
    request = SlotRequest(
        default_name(ctx, tenant, "tenant"),
        default_name(ctx, pool, "pool"),
        amounts,
        length,
        None if ids is None else tuple(ids),
        count=params.count(count) or 3,
        caller=caller(ctx),
    )

    def find(tx: Tx) -> tuple[Slots, datetime]:
        asked = replace(request, after=None if begins is None else begins.at(tx.now))
        return find_slots(tx, asked, FLAGS), tx.now

    found, now = transact(ctx, find, write=False)
    from resgate.render import data

    if json:
        out_json([data.slot(slot) for slot in found.slots])
        return
    from resgate.render.views import slots_table

    out(slots_table(found, now, style(ctx).widened(wide)))


def timeline(
    ctx: typer.Context,
    pool: OptionalPool = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="WHEN", show_default=False, help="Start at WHEN (default: now)."
        ),
    ] = None,
    hours: Annotated[
        str | None,
        typer.Option("--hours", metavar="N", show_default=False, help="How many [default: 24]."),
    ] = None,
    json: Json = False,
) -> None:
    """Draw a pool's reservations over time: each GPU's holders, and the load."""
    from resgate.engine.timeline import timeline as drawn_from

    begins = params.when("--from", since)
    length = params.count(hours, "--hours") or 24
    name = default_name(ctx, pool, "pool")
    found = transact(
        ctx,
        lambda tx: drawn_from(
            tx, name, None if begins is None else begins.at(tx.now), length, FLAGS
        ),
        write=False,
    )
    if json:
        from resgate.render import data

        out_json(data.timeline(found))
        return
    from resgate.render.timeline import timeline_text

    out(timeline_text(found, style(ctx)))


def register(app: typer.Typer) -> None:
    app.command("free")(free)
    app.command("slots")(slots)
    app.command("timeline")(timeline)
