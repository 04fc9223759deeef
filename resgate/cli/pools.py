"""resgate pool create | list | show | resize | delete"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from resgate.cli import params
from resgate.cli.help import GroupedCommands
from resgate.cli.options import (
    FLAGS,
    Cpu,
    DryRun,
    Force,
    Gpu,
    GpuIds,
    Json,
    Memory,
    NameArgument,
    Wide,
)
from resgate.cli.permissions import require_admin
from resgate.cli.state import emit, out, out_json, style, transact
from resgate.engine.validation import check_name

if TYPE_CHECKING:
    from resgate.engine.records import PoolInfo

app = typer.Typer(cls=GroupedCommands, help="Manage resource pools.", no_args_is_help=True)

Name = Annotated[str, typer.Option("--name", help="Pool name.", show_default=False)]
NameOption = Annotated[
    str | None, typer.Option("--name", help="Pool name (or give it as NAME).", show_default=False)
]
PerTenant = Annotated[
    str | None,
    typer.Option(
        "--per-tenant",
        help="Most reservations one tenant may hold at once: N or unlimited (default 1).",
        show_default=False,
    ),
]
DefaultTtl = Annotated[
    str | None,
    typer.Option(
        "--default-ttl",
        help="TTL of a reserve that gives none: a duration, or none.",
        show_default=False,
    ),
]
MaxTtl = Annotated[
    str | None,
    typer.Option(
        "--max-ttl", help="Longest reservation allowed: a duration, or none.", show_default=False
    ),
]


def _policy_changes(
    per_tenant: str | None, default_ttl: str | None, max_ttl: str | None
) -> dict[str, int | None]:
    """The policy options given, parsed and checked (exit 2 before any database)."""
    from resgate.engine.policies import check_policy_values

    given = {"per_tenant": per_tenant, "default_ttl": default_ttl, "max_ttl": max_ttl}
    changes = {
        field: params.policy("--" + field.replace("_", "-"), value)
        for field, value in given.items()
        if value is not None
    }
    check_policy_values(changes)
    return changes


def _created_line(verb: str, pool: PoolInfo) -> str:
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
    per_tenant: PerTenant = None,
    default_ttl: DefaultTtl = None,
    max_ttl: MaxTtl = None,
    json: Json = False,
) -> None:
    """Create a pool; at least one of --cpu, --memory, --gpu above 0. Its GPUs
    are devices 0..N-1, or the ids given with --gpu-ids."""
    from dataclasses import replace

    from resgate.engine.policies import DEFAULT_POLICY
    from resgate.engine.records import Amounts
    from resgate.engine.validation import check_pool_totals

    check_name("pool", name)
    policy = replace(DEFAULT_POLICY, **_policy_changes(per_tenant, default_ttl, max_ttl))
    require_admin(ctx, "change pools")
    ids = params.gpu_ids(gpu_ids)
    asked = Amounts(
        params.amount_or_zero("--cpu", cpu),
        params.amount_or_zero("--memory", memory),
        params.gpu_count(gpu, ids) or 0,
    )
    totals, ids = check_pool_totals(asked, ids, FLAGS)
    from resgate.engine.pools import create_pool

    pool = transact(ctx, lambda tx: create_pool(tx, name, totals, ids, policy), write=True)
    if json:
        from resgate.render import data

        out_json(data.pool(pool))
    else:
        out(_created_line("created", pool).replace("—", style(ctx).dash))


@app.command("list")
def list_(ctx: typer.Context, json: Json = False, wide: Wide = False) -> None:
    """Pools with their usage, by name."""
    from resgate.engine.pools import list_pools

    pools = transact(ctx, list_pools, write=False)
    if json:
        from resgate.render import data

        out_json([data.pool(p) for p in pools])
    elif pools:
        from resgate.render.tables import pools_table

        out(pools_table(pools, style(ctx).widened(wide)))
    else:
        out("No pools.")


@app.command("show")
def show(
    ctx: typer.Context,
    name_argument: NameArgument = None,
    name: NameOption = None,
    json: Json = False,
    wide: Wide = False,
) -> None:
    """Totals, reserved and available for one pool."""
    from resgate.engine.pools import show_pool

    name = params.named("pool", name_argument, name)
    pool = transact(ctx, lambda tx: show_pool(tx, name), write=False)
    if json:
        from resgate.render import data

        out_json(data.pool(pool, with_devices=True))
    else:
        from resgate.render.tables import pool_detail

        out(pool_detail(pool, style(ctx).widened(wide)))


@app.command("resize")
def resize(
    ctx: typer.Context,
    name_argument: NameArgument = None,
    name: NameOption = None,
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    gpu_ids: GpuIds = None,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Change a pool's totals; options not given stay as they are. --gpu grows
    with new ids above the highest or drops the highest free ones; --gpu-ids sets
    the list exactly."""
    from resgate.engine.pools import resize_pool
    from resgate.engine.validation import check_resize

    name = params.named("pool", name_argument, name)
    ids = params.gpu_ids(gpu_ids)
    new_cpu, new_memory = params.amount("--cpu", cpu), params.amount("--memory", memory)
    new_gpu, ids = check_resize(new_cpu, new_memory, params.gpu_count(gpu, ids), ids, FLAGS)
    require_admin(ctx, "change pools")
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


@app.command("update")
def update(
    ctx: typer.Context,
    name_argument: NameArgument = None,
    name: NameOption = None,
    per_tenant: PerTenant = None,
    default_ttl: DefaultTtl = None,
    max_ttl: MaxTtl = None,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Change a pool's policies (totals stay with resize); at least one option."""
    from resgate.engine.pools import update_pool
    from resgate.errors import InvalidInput
    from resgate.render import data

    chosen = params.named("pool", name_argument, name)
    changes = _policy_changes(per_tenant, default_ttl, max_ttl)
    if not changes:
        raise InvalidInput("nothing to change: give --per-tenant, --default-ttl or --max-ttl")
    require_admin(ctx, "change pools")
    pool = transact(ctx, lambda tx: update_pool(tx, chosen, changes), write=True, dry_run=dry_run)
    from resgate.render.tables import policies

    line = f"Pool '{pool.name}' updated — {policies(pool)}"
    emit(json, dry_run, data.pool(pool), line.replace("—", style(ctx).dash))


@app.command("delete")
def delete(
    ctx: typer.Context,
    name_argument: NameArgument = None,
    name: NameOption = None,
    force: Force = False,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Delete a pool (refused while it has active reservations, unless --force)."""
    from resgate.engine.pools import delete_pool_and_report
    from resgate.render import data
    from resgate.render.views import released_summary

    name = params.named("pool", name_argument, name)
    require_admin(ctx, "change pools")
    removal = transact(
        ctx,
        lambda tx: delete_pool_and_report(tx, name, force, FLAGS),
        write=True,
        dry_run=dry_run,
    )
    pool, released = removal.removed, removal.released
    shape = {**data.pool(pool), "released": [data.reservation(r) for r in released]}
    emit(json, dry_run, shape, released_summary(f"Pool '{pool.name}' deleted", released, "tenant"))
