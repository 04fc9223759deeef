"""resgate config: every effective setting and where it came from. Reads the
configuration files; opens no database."""

from __future__ import annotations

from typing import Any

import typer

from resgate.cli.options import Json
from resgate.cli.state import out, out_json, settings


def show(ctx: typer.Context, json: Json = False) -> None:
    """Show each effective setting and its source (a file, env, option or default)."""
    from resgate.config import Setting, os_user
    from resgate.store.target import resolve_target

    chosen = settings(ctx)
    db = chosen.db.value
    assert db is None or isinstance(db, str)
    # Where resgate would look (the default path, a path made absolute, a URL
    # with its password hidden), found without opening anything.
    rows: dict[str, Setting] = {
        "db": Setting(resolve_target(db).display, chosen.db.source),
        "tenant": chosen.tenant,
        "pool": chosen.pool,
        "busy_timeout": chosen.busy_timeout,
        "color": chosen.color,
        "admins": chosen.admins,
    }
    user = os_user()
    if json:
        data: dict[str, Any] = {
            name: {"value": row.value, "source": row.source} for name, row in rows.items()
        }
        out_json({**data, "user": user})
        return
    for name, row in rows.items():
        out(f"{name}  {_text(row.value)}  ({row.source})")
    out(f"user  {user}")


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(value) if value else "[]"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def register(app: typer.Typer) -> None:
    app.command("config")(show)
