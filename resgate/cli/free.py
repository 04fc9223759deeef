"""resgate free"""

from __future__ import annotations

from typing import Annotated

import typer

from resgate.cli.options import Json, Wide
from resgate.cli.state import out, out_json, style, transact
from resgate.engine.validation import check_name

OnlyPool = Annotated[
    str | None, typer.Option("--pool", "-p", show_default=False, help="Only this pool.")
]


def free(ctx: typer.Context, pool: OnlyPool = None, json: Json = False, wide: Wide = False) -> None:
    """What is free now in every pool (or one): CPU, memory, GPUs and their ids.

    Examples:
      resgate free
      resgate free --pool gpu-box --json"""
    # `--at WHEN` comes with booking ahead: it will be
    # parsed here (params.when) and passed on to the engine, which then says
    # until when each pool stays free; `promised` comes with the queue.
    from resgate.engine.free import free_now

    if pool is not None:
        check_name("pool", pool)
    pools = transact(ctx, lambda tx: free_now(tx, pool), write=False)
    if json:
        from resgate.render import data

        out_json([data.free(p) for p in pools])
    elif pools:
        from resgate.render.views import free_table

        out(free_table(pools, style(ctx).widened(wide)))
    else:
        out("No pools.")


def register(app: typer.Typer) -> None:
    app.command("free")(free)
