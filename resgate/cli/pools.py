"""resgate pool create | list | show | resize | delete"""

from __future__ import annotations

from typing import Annotated

import typer

from resgate.cli import params
from resgate.cli.state import DRY_RUN_OPTION, JSON_OPTION, emit, out, out_json, style, transact

app = typer.Typer(help="Manage resource pools.", no_args_is_help=True)

Name = Annotated[str, typer.Option("--name", help="Pool name.", show_default=False)]
Cpu = Annotated[str | None, typer.Option("--cpu", help="CPU cores.", show_default=False)]
Memory = Annotated[str | None, typer.Option("--memory", help="Memory in MB.", show_default=False)]
Gpu = Annotated[str | None, typer.Option("--gpu", help="GPUs.", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Release active reservations first.")]
GpuIds = Annotated[
    str | None,
    typer.Option("--gpu-ids", help="GPU device ids, like 0,1,4-7.", show_default=False),
]


def _created_line(verb: str, pool: object) -> str:
    from resgate.engine.records import PoolInfo

    assert isinstance(pool, PoolInfo)
    t = pool.total
    return f"Pool '{pool.name}' {verb} — CPU: {t.cpu}  Memory: {t.memory}MB  GPU: {t.gpu}"


@app.command("create")
def create(
    ctx: typer.Context,
    name: Name,
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    gpu_ids: GpuIds = None,
    json: bool = JSON_OPTION,
) -> None:
    """Create a pool; at least one of --cpu, --memory, --gpu above 0. Its GPUs
    are devices 0..N-1, or the ids given with --gpu-ids."""
    from resgate.engine.records import Amounts
    from resgate.errors import InvalidInput

    params.name("pool", name)
    ids = params.gpu_ids(gpu_ids)
    totals = Amounts(
        params.amount_or_zero("--cpu", cpu),
        params.amount_or_zero("--memory", memory),
        params.gpu_count(gpu, ids) or 0,
    )
    if totals.is_zero():
        raise InvalidInput("a pool needs at least one of --cpu, --memory, --gpu above 0")
    from resgate.engine.pools import create_pool

    pool = transact(ctx, lambda tx: create_pool(tx, name, totals, ids), write=True)
    if json:
        from resgate.render import data

        out_json(data.pool(pool))
    else:
        out(_created_line("created", pool).replace("—", style(ctx).dash))


@app.command("list")
def list_(ctx: typer.Context, json: bool = JSON_OPTION) -> None:
    """Pools with their usage, by name."""
    from resgate.engine.pools import list_pools

    pools = transact(ctx, list_pools, write=False)
    if json:
        from resgate.render import data

        out_json([data.pool(p) for p in pools])
    elif pools:
        from resgate.render.text import pools_table

        out(pools_table(pools, style(ctx)))
    else:
        out("No pools.")


@app.command("show")
def show(ctx: typer.Context, name: Name, json: bool = JSON_OPTION) -> None:
    """Totals, reserved and available for one pool."""
    from resgate.engine.pools import show_pool

    params.name("pool", name)
    pool = transact(ctx, lambda tx: show_pool(tx, name), write=False)
    if json:
        from resgate.render import data

        out_json(data.pool(pool, with_devices=True))
    else:
        from resgate.render.text import pool_detail

        out(pool_detail(pool, style(ctx)))


@app.command("resize")
def resize(
    ctx: typer.Context,
    name: Name,
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    gpu_ids: GpuIds = None,
    dry_run: bool = DRY_RUN_OPTION,
    json: bool = JSON_OPTION,
) -> None:
    """Change a pool's totals; options not given stay as they are. --gpu grows
    with new ids above the highest or drops the highest free ones; --gpu-ids sets
    the list exactly."""
    from resgate.engine.pools import resize_pool
    from resgate.errors import InvalidInput

    params.name("pool", name)
    ids = params.gpu_ids(gpu_ids)
    new_cpu, new_memory, new_gpu = (
        params.amount("--cpu", cpu),
        params.amount("--memory", memory),
        params.gpu_count(gpu, ids),
    )
    if new_cpu is None and new_memory is None and new_gpu is None:
        raise InvalidInput("give at least one of --cpu, --memory, --gpu, --gpu-ids")
    if new_cpu == 0 and new_memory == 0 and new_gpu == 0:
        raise InvalidInput("a pool cannot have all of cpu, memory and gpu at 0")
    from resgate.render import data

    pool = transact(
        ctx,
        lambda tx: resize_pool(tx, name, new_cpu, new_memory, new_gpu, ids),
        write=True,
        dry_run=dry_run,
    )
    emit(
        json, dry_run, data.pool(pool), _created_line("resized", pool).replace("—", style(ctx).dash)
    )


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Name,
    force: Force = False,
    dry_run: bool = DRY_RUN_OPTION,
    json: bool = JSON_OPTION,
) -> None:
    """Delete a pool (refused while it has active reservations, unless --force)."""
    from resgate.engine.pools import delete_pool
    from resgate.render import data

    params.name("pool", name)
    pool = transact(ctx, lambda tx: delete_pool(tx, name, force), write=True, dry_run=dry_run)
    emit(json, dry_run, data.pool(pool), f"Pool '{pool.name}' deleted")
