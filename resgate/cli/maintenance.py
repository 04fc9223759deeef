"""resgate db upgrade | current | check"""

from __future__ import annotations

import sys

import typer

from resgate.cli.state import JSON_OPTION, out, out_json, run, state

db_app = typer.Typer(help="Schema maintenance and consistency checks.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context, json: bool = JSON_OPTION) -> None:
    """Create the schema, or upgrade it to this resgate's revision."""
    from resgate.store.database import resolve_target
    from resgate.store.database import upgrade as upgrade_database

    old, new = upgrade_database(resolve_target(state(ctx).db))
    if json:
        out_json({"from": old, "to": new})
    elif old == new:
        out(f"Database is at revision {new}; nothing to do")
    else:
        out(f"Database upgraded from {old or 'nothing'} to revision {new}")


@db_app.command("current")
def current(ctx: typer.Context, json: bool = JSON_OPTION) -> None:
    """Show the database's schema revision and this resgate's head."""
    from resgate.store.database import current_revision, resolve_target
    from resgate.store.schema import SCHEMA_HEAD

    revision = current_revision(resolve_target(state(ctx).db))
    if json:
        out_json({"revision": revision, "head": SCHEMA_HEAD})
    else:
        shown = revision or "none (no resgate schema yet)"
        note = "" if revision == SCHEMA_HEAD else f" (head is {SCHEMA_HEAD})"
        out(f"revision {shown}{note}")


@db_app.command("check")
def check(ctx: typer.Context, json: bool = JSON_OPTION) -> None:
    """Recompute every pool's usage from the reservations and run integrity checks."""
    from resgate.engine.status import check as engine_check

    report = run(ctx, engine_check, write=False)
    if json:
        out_json(
            {
                "ok": not report.problems,
                "problems": report.problems,
                "pools_checked": report.pools_checked,
                "integrity": report.integrity,
            }
        )
    elif not report.problems:
        out(f"ok: {report.pools_checked} pool(s) checked, integrity {report.integrity}")
    else:
        for problem in report.problems:
            out(problem)
    if report.problems:
        sys.stderr.write(f"Error: db check found {len(report.problems)} problem(s)\n")
        raise typer.Exit(1)
