"""resgate db init | upgrade | current | check, and resgate audit"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from resgate.cli import params
from resgate.cli.help import GroupedCommands
from resgate.cli.options import Json, Wide
from resgate.cli.permissions import require_admin
from resgate.cli.state import error, lock_notice, out, out_json, target, transact

db_app = typer.Typer(
    cls=GroupedCommands, help="Schema maintenance and consistency checks.", no_args_is_help=True
)


Shared = Annotated[
    bool,
    typer.Option(
        "--shared", help="Make it usable by every member of a group (a SQLite file only)."
    ),
]
Group = Annotated[
    str | None,
    typer.Option(
        "--group",
        help="The group, with --shared (default: the directory's, else yours).",
        show_default=False,
    ),
]


@db_app.command("init")
def init(
    ctx: typer.Context, shared: Shared = False, group: Group = None, json: Json = False
) -> None:
    """Create the database the settings name (or upgrade it), optionally shared."""
    from resgate.errors import InvalidInput
    from resgate.store.database import SHARED_ON_POSTGRES, initialize

    if group is not None and not shared:
        raise InvalidInput("--group needs --shared")
    where = target(ctx)
    if shared and not where.is_sqlite:
        raise InvalidInput(SHARED_ON_POSTGRES)
    require_admin(ctx, "upgrade the database")
    done = initialize(where, shared=shared, group=group, on_wait=lock_notice())
    line = None if done.group is None else config_line(done.display)
    if json:
        data: dict[str, Any] = {"path": done.display, "revision": done.revision, "from": done.old}
        data["shared"] = done.group is not None
        if done.group is not None:
            data.update(group=done.group, config_line=line)
        out_json(data)
        return
    out(_init_summary(done.display, done.old, done.revision))
    if line is not None:
        out(f"Shared with group {done.group}. To make it everyone's default, put this line")
        out("in /etc/resgate/config.toml:")
        out(line)


def _init_summary(display: str, old: str | None, new: str) -> str:
    if old == new:
        return f"Database {display} is at revision {new}"
    if old is None:
        return f"Database {display} created at revision {new}"
    return f"Database {display} upgraded from revision {old} to {new}"


def config_line(path: str) -> str:
    """`db = "PATH"`, PATH written as a TOML basic string."""
    escaped = []
    for char in path:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04X}")
        else:
            escaped.append(char)
    return f'db = "{"".join(escaped)}"'


@db_app.command("upgrade")
def upgrade(ctx: typer.Context, json: Json = False) -> None:
    """Create the schema, or upgrade it to this resgate's revision."""
    from resgate.cli import progress
    from resgate.store.database import upgrade as upgrade_database

    where = target(ctx)
    require_admin(ctx, "upgrade the database")
    with progress.shown("db upgrade: backup", "pages", json=json) as on_progress:
        old, new = upgrade_database(where, on_wait=lock_notice(), on_progress=on_progress)
    if json:
        out_json({"from": old, "to": new})
    elif old == new:
        out(f"Database is at revision {new}; nothing to do")
    else:
        out(f"Database upgraded from {old or 'nothing'} to revision {new}")


@db_app.command("current")
def current(ctx: typer.Context, json: Json = False) -> None:
    """Show the database's schema revision and this resgate's head."""
    from resgate.store.database import current_revision
    from resgate.store.schema import SCHEMA_HEAD

    revision = current_revision(target(ctx))
    if json:
        out_json({"revision": revision, "head": SCHEMA_HEAD})
    else:
        shown = revision or "none (no resgate schema yet)"
        note = "" if revision == SCHEMA_HEAD else f" (head is {SCHEMA_HEAD})"
        out(f"revision {shown}{note}")


@db_app.command("check")
def check(ctx: typer.Context, json: Json = False) -> None:
    """Recompute every pool's usage from the reservations and run integrity checks."""
    from resgate.engine.check import check as engine_check

    report = transact(ctx, engine_check, write=False)
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
        error(f"db check found {len(report.problems)} problem(s)")
        raise typer.Exit(1)


audit_app = typer.Typer(
    cls=GroupedCommands, help="The tamper-evident audit log.", no_args_is_help=True
)


@audit_app.command("log")
def audit_log(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", show_default=False, help="Events at or after WHEN."),
    ] = None,
    since_seq: Annotated[
        str | None,
        typer.Option("--since-seq", show_default=False, help="Events after sequence number N."),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", show_default=False, help="Only this action (pool.create, …)."),
    ] = None,
    json: Json = False,
    wide: Wide = False,
) -> None:
    """Show the audit log, oldest first."""
    from resgate.engine import audit
    from resgate.errors import InvalidInput
    from resgate.render import data
    from resgate.store.database import Tx

    cutoff = params.since(since)
    after = params.sequence("--since-seq", since_seq)
    if action is not None and action not in audit.ACTIONS:
        raise InvalidInput(f"unknown action {action!r}: one of {', '.join(audit.ACTIONS)}")

    def work(tx: Tx) -> list[dict[str, Any]]:
        start = None if cutoff is None else cutoff.at(tx.now)
        return [data.event(event) for event in audit.log(tx, start, after, action)]

    events = transact(ctx, work, write=False)
    # Stored text is anyone's (RESGATE_ACTOR, or `sqlite3`): whatever the stream
    # cannot encode is escaped, never a crash.
    encoding = getattr(sys.stdout, "encoding", None)
    if json:
        from resgate.render.data import dumps_for

        out(dumps_for(events, encoding))
    elif events:
        from resgate.cli.state import style
        from resgate.render.tables import events_table

        out(events_table(events, encoding, style(ctx).widened(wide)))
    else:
        out("No events.")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect",
            show_default=False,
            help="SEQ:HASH of a head saved earlier; catches a log cut short.",
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Recompute the hash chain and name the first bad event."""
    from resgate.engine import audit

    pinned = params.expected_head(expect)
    verdict = transact(ctx, lambda tx: audit.verify(tx, pinned), write=False)
    if json:
        out_json(
            {
                "ok": verdict.ok,
                "events": verdict.events,
                "head_seq": verdict.events,
                "head": verdict.head,
                "first_bad_seq": verdict.first_bad_seq,
                "reason": verdict.reason,
            }
        )
    elif verdict.ok:
        # Ready to paste into a later `--expect` (README "The audit log").
        out(f"ok: {verdict.events} events, head {verdict.events}:{verdict.head}")
    if not verdict.ok:
        error(_verify_problem(verdict, pinned))
        raise typer.Exit(1)


def _verify_problem(verdict: Any, pinned: tuple[int, str] | None) -> str:
    if verdict.reason == "head mismatch" and pinned is not None:
        return (
            f"the saved head {pinned[0]}:{pinned[1][:4]}… does not match: seq {pinned[0]} has "
            f"hash {verdict.found[:4]}… (the log was altered, or the saved head is wrong)"
        )
    return f"seq {verdict.first_bad_seq}: {verdict.reason}"
