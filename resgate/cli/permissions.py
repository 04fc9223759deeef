"""Who may do what (README "Sharing one machine"): the caller the engine checks
memberships for, and the admin rule, checked before any database is opened."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from resgate.cli.state import settings

if TYPE_CHECKING:
    from resgate.engine.records import Caller


def admins(ctx: typer.Context) -> list[str] | None:
    """The system file's `admins`, or None when it sets none (everyone may do
    everything)."""
    value = settings(ctx).admins.value
    return list(value) if isinstance(value, list) else None


def caller(ctx: typer.Context) -> Caller:
    """The OS user (never RESGATE_ACTOR) and whether the system file names them."""
    from resgate.config import os_user
    from resgate.engine.records import Caller

    user = os_user()
    named = admins(ctx)
    return Caller(user=user, admin=named is not None and user in named)


def administers(ctx: typer.Context) -> bool:
    """Whether the caller may change pools and tenants, and create or upgrade the
    database: anyone while the system file sets no `admins`, else only they."""
    from resgate.config import os_user

    named = admins(ctx)
    return named is None or os_user() in named


def require_admin(ctx: typer.Context, what: str) -> None:
    """Exit 4 unless the caller administers (pools, tenants, ...), before any
    database is opened."""
    from resgate.config import SYSTEM_FILE
    from resgate.errors import Refused

    if not administers(ctx):
        raise Refused(f"only admins may {what} (see admins in {SYSTEM_FILE})")


def default_name(ctx: typer.Context, given: str | None, key: str) -> str | None:
    """--tenant / --pool, else the `tenant` / `pool` setting (RESGATE_TENANT, a
    configuration file); None: the engine infers it from the database."""
    if given is not None:
        return given
    value = settings(ctx).tenant.value if key == "tenant" else settings(ctx).pool.value
    return value if isinstance(value, str) else None
