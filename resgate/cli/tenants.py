"""resgate tenant add | list | update | remove"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from resgate.cli import params
from resgate.cli.help import GroupedCommands
from resgate.cli.options import FLAGS, DryRun, Force, Json, NameArgument, Wide
from resgate.cli.permissions import require_admin
from resgate.cli.state import emit, out, out_json, transact

if TYPE_CHECKING:
    from resgate.engine.records import TenantInfo

app = typer.Typer(cls=GroupedCommands, help="Manage tenants.", no_args_is_help=True)

Name = Annotated[str, typer.Option("--name", help="Tenant name.", show_default=False)]
NameOption = Annotated[
    str | None, typer.Option("--name", help="Tenant name (or give it as NAME).", show_default=False)
]
Priority = Annotated[
    str | None, typer.Option("--priority", help="1 (lowest) to 10 (highest).", show_default=False)
]
MaxCpu = Annotated[
    str | None,
    typer.Option(
        "--max-cpu", help="Cap on CPU held across all pools, or none.", show_default=False
    ),
]
MaxMemory = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="Cap on memory (MB) held across all pools, or none.",
        show_default=False,
    ),
]
MaxGpu = Annotated[
    str | None,
    typer.Option(
        "--max-gpu", help="Cap on GPUs held across all pools, or none.", show_default=False
    ),
]


Members = Annotated[
    str | None,
    typer.Option(
        "--members",
        help="OS users who may act for the tenant, like alice,bob; none clears them.",
        show_default=False,
    ),
]


def _members(value: str | None) -> tuple[str, ...] | None:
    """--members alice,bob (checked as the engine checks them), `none`: ()."""
    from resgate.engine.validation import check_members

    if value is None:
        return None
    if value == "none":
        return ()
    return check_members([name.strip() for name in value.split(",")])


def _caps(
    max_cpu: str | None, max_memory: str | None, max_gpu: str | None
) -> dict[str, int | None]:
    """The caps given on the command line: a number, or `none` to remove one."""
    given = {"cpu": max_cpu, "memory": max_memory, "gpu": max_gpu}
    return {
        resource: params.cap(f"--max-{resource}", value)
        for resource, value in given.items()
        if value is not None
    }


def _print_tenant(tenant: TenantInfo, json: bool, line: str) -> None:
    if json:
        from resgate.render import data

        out_json(data.tenant(tenant))
    else:
        out(line)


@app.command("add")
def add(
    ctx: typer.Context,
    name_argument: NameArgument = None,
    name: NameOption = None,
    priority: Priority = None,
    max_cpu: MaxCpu = None,
    max_memory: MaxMemory = None,
    max_gpu: MaxGpu = None,
    members: Members = None,
    json: Json = False,
) -> None:
    """Register a tenant (priority 5 unless given), optionally with quotas and members."""
    from resgate.engine.records import Limits
    from resgate.engine.tenants import add_tenant
    from resgate.limits import DEFAULT_PRIORITY

    name = params.named("tenant", name_argument, name)
    level = params.priority(priority) or DEFAULT_PRIORITY
    limits = Limits(**_caps(max_cpu, max_memory, max_gpu))
    users = _members(members) or ()
    require_admin(ctx, "change tenants")
    tenant = transact(ctx, lambda tx: add_tenant(tx, name, level, limits, users), write=True)
    _print_tenant(
        tenant, json, f"Tenant '{tenant.name}' registered with priority {tenant.priority}"
    )


@app.command("list")
def list_(ctx: typer.Context, json: Json = False, wide: Wide = False) -> None:
    """Tenants by priority (highest first), then name."""
    from resgate.engine.tenants import list_tenants

    tenants = transact(ctx, list_tenants, write=False)
    if json:
        from resgate.render import data

        out_json([data.tenant(t) for t in tenants])
    elif tenants:
        from resgate.cli.state import style
        from resgate.render.tables import tenants_table

        out(tenants_table(tenants, style(ctx).widened(wide)))
    else:
        out("No tenants.")


@app.command("update")
def update(
    ctx: typer.Context,
    name_argument: NameArgument = None,
    name: NameOption = None,
    priority: Priority = None,
    max_cpu: MaxCpu = None,
    max_memory: MaxMemory = None,
    max_gpu: MaxGpu = None,
    members: Members = None,
    json: Json = False,
) -> None:
    """Change a tenant's priority, quotas and members (`none` removes a cap, or
    every member)."""
    from resgate.engine.tenants import update_tenant
    from resgate.engine.validation import check_tenant_change

    name = params.named("tenant", name_argument, name)
    level = params.priority(priority)
    caps = _caps(max_cpu, max_memory, max_gpu)
    users = _members(members)
    check_tenant_change(level, caps, FLAGS, has_members=users is not None)
    require_admin(ctx, "change tenants")
    tenant = transact(ctx, lambda tx: update_tenant(tx, name, level, caps, users), write=True)
    from resgate.render.tables import quota_summary

    _print_tenant(
        tenant,
        json,
        f"Tenant '{tenant.name}' updated: priority {tenant.priority}, {quota_summary(tenant)}",
    )


@app.command("remove")
def remove(
    ctx: typer.Context,
    name_argument: NameArgument = None,
    name: NameOption = None,
    force: Force = False,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Remove a tenant (refused while it has active reservations, unless --force)."""
    from resgate.engine.tenants import remove_tenant_and_report
    from resgate.render import data
    from resgate.render.views import released_summary

    name = params.named("tenant", name_argument, name)
    require_admin(ctx, "change tenants")
    removal = transact(
        ctx,
        lambda tx: remove_tenant_and_report(tx, name, force, FLAGS),
        write=True,
        dry_run=dry_run,
    )
    tenant, released = removal.removed, removal.released
    shape = {**data.tenant(tenant), "released": [data.reservation(r) for r in released]}
    line = released_summary(f"Tenant '{tenant.name}' removed", released, "pool")
    emit(json, dry_run, shape, line)
