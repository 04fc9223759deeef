"""Shell completion (README "Help and completion"): `resgate completion bash|zsh|fish`
prints the script, and a TAB offers the names of live pools and tenants, the ids of
active reservations and the values of choice options.

Names are read from the SQLite file the settings name (`--db` on the command line
being completed, else RESGATE_DB, else a configuration file, else the default
path) with the standard `sqlite3` module, read-only, never SQLAlchemy (this runs on
every TAB, on the entry path of resgate/cli/__init__.py); a PostgreSQL URL offers
none. Completion never creates, writes or upgrades anything, and never fails
visibly: whatever goes wrong, it offers nothing.

The options are declared in many modules; rather than each naming its completion,
`register` has the built command tree's parameters get theirs by what they are
called (`--pool`, `--tenant`, `--id`, a NAME or ID argument, ...), and only when a
shell asks (the `_RESGATE_COMPLETE` variable is set), so other invocations pay
nothing."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core

from resgate.limits import SHOWN_STATUSES

if TYPE_CHECKING:
    from typer._click import Command, Context, Parameter
    from typer._click.shell_completion import CompletionItem

    Completer = Callable[[Context, Parameter, str], list[CompletionItem]]

# What Typer's scripts set to ask for completions: `_{PROG}_COMPLETE`.
COMPLETE_VAR = "_RESGATE_COMPLETE"
# How long a read waits for a writer's lock before it gives up (offering nothing).
READ_TIMEOUT = 0.2


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(
    shell: Annotated[
        Shell, typer.Argument(metavar="SHELL", help="bash, zsh or fish.", show_default=False)
    ],
) -> None:
    """Print the completion script for SHELL: pool and tenant names, reservation
    ids and option values on TAB."""
    from typer._completion_shared import get_completion_script

    script = get_completion_script(
        prog_name="resgate", complete_var=COMPLETE_VAR, shell=shell.value
    )
    sys.stdout.write(script + "\n")


def register(app: typer.Typer) -> None:
    """Add `resgate completion`, and have the command tree complete values.

    Typer builds the Click commands only when the app runs, so the root group's class
    (the one the app names, or TyperGroup) is given a subclass whose `main` first
    attaches the completions, when a shell is asking."""
    app.command("completion")(completion)
    app.info.cls = _completing(app.info.cls)


def _completing(chosen: object) -> type[typer.core.TyperGroup]:
    base = typer.core.TyperGroup
    if isinstance(chosen, type) and issubclass(chosen, base):
        base = chosen

    class CompletingGroup(base):  # type: ignore[misc,valid-type]
        def main(self, *args: Any, **kwargs: Any) -> Any:
            if os.environ.get(COMPLETE_VAR):
                attach(self)
            return super().main(*args, **kwargs)

    return CompletingGroup


# ---------------------------------------------------------------- the quick answer


# What the shell's class is given for the command tree it never looks at here.
_NO_TREE: Any = None


def quick_answer() -> bool:
    """Answer the shell without building the command tree, when the word being completed
    is the value of an option that offers names (`--pool `, `-t al`): every command
    spells those options alike and offers the same names for them, so the command need
    not be built to know what to offer (benchmarks/, completion of --pool names). False
    when the question needs the tree; the shell's own class (Typer's) formats the answer,
    so it reads exactly as the full path's would."""
    from typer._click.shell_completion import CompletionItem, get_completion_class
    from typer._completion_classes import completion_init

    completion_init()
    shell_class = get_completion_class(os.environ.get(COMPLETE_VAR, "").partition("_")[2])
    if shell_class is None:
        return False
    # The shell's class reads the words; only the completions are resgate's own.
    args, incomplete = shell_class(_NO_TREE, {}, "resgate", COMPLETE_VAR).get_completion_args()
    kind = OPTION_SOURCES.get(args[-1]) if args else None
    if kind is None or "--" in args or incomplete.startswith("-"):
        return False

    def database_names(self: object, args: list[str], incomplete: str) -> list[CompletionItem]:
        try:
            found = offered(str(kind), database_file(None), incomplete)
        except Exception:  # completion never fails visibly
            return []
        return [CompletionItem(value, help=help or None) for value, help in found]

    answering = type("QuickAnswer", (shell_class,), {"get_completions": database_names})
    sys.stdout.write(answering(_NO_TREE, {}, "resgate", COMPLETE_VAR).complete() + "\n")
    return True


# ---------------------------------------------------------------- which parameter completes what

# Options by any of their spellings, wherever they are declared.
OPTION_SOURCES = {
    "--pool": "pools",
    "-p": "pools",
    "--tenant": "tenants",
    "-t": "tenants",
    "--target": "tenants",
    "--id": "reservations",
}
# Positional arguments by metavar (or name): a reservation id, or a name of the
# group's kind (pool or tenant) where the command takes an existing one.
ID_ARGUMENTS = {"ID", "IDS", "ID_ARGUMENT", "RESERVATION_ID", "RESERVATION_IDS"}
NAME_ARGUMENTS = {"NAME", "NAME_ARGUMENT", "POOL_NAME", "TENANT_NAME"}
GROUP_SOURCES = {"pool": "pools", "tenant": "tenants"}
# Commands whose NAME is a new one: nothing to offer.
NEW_NAMES = {("pool", "create"), ("tenant", "add")}


@cache
def choices() -> dict[str, tuple[str, ...]]:
    """The values of the options that take one of a few words."""
    from resgate.config import COLORS  # here: resgate.config imports tomllib

    return {"--format": ("json", "csv"), "--color": COLORS, "--status": SHOWN_STATUSES}


def attach(command: Command, path: tuple[str, ...] = ()) -> None:
    """Give every parameter of `command` and its subcommands that has no completion of
    its own (a Click choice completes itself) the one its name calls for."""
    for param in command.params:
        if param._custom_shell_complete is not None or hasattr(param.type, "choices"):
            continue
        completer = completer_for(param, path)
        if completer is not None:
            param._custom_shell_complete = completer
    for name, sub in getattr(command, "commands", {}).items():
        attach(sub, (*path, name))


def completer_for(param: Parameter, path: tuple[str, ...]) -> Completer | None:
    """What `param` of the command at `path` (`("pool", "resize")`) offers, if anything."""
    if param.param_type_name == "argument":
        key = _argument_key(param)
        if key in ID_ARGUMENTS:
            return _from_database("reservations")
        return _group_names(path) if key in NAME_ARGUMENTS else None
    spellings = [*param.opts, *param.secondary_opts]
    for spelling in spellings:
        if spelling in OPTION_SOURCES:
            return _from_database(OPTION_SOURCES[spelling])
        values = choices().get(spelling)
        if values is not None:
            return _choices(values)
    return _group_names(path) if "--name" in spellings else None


def _group_names(path: tuple[str, ...]) -> Completer | None:
    """The names of a `pool` or `tenant` command's kind, unless it makes a new one."""
    if len(path) != 2 or path in NEW_NAMES or path[0] not in GROUP_SOURCES:
        return None
    return _from_database(GROUP_SOURCES[path[0]])


def _argument_key(param: Parameter) -> str:
    return (param.metavar or param.name or "").upper().strip("[]").rstrip(".…")


def _choices(values: tuple[str, ...]) -> Completer:
    def complete(ctx: Context, param: Parameter, incomplete: str) -> list[CompletionItem]:
        from typer._click.shell_completion import CompletionItem

        return [CompletionItem(v) for v in values if v.startswith(incomplete.lower())]

    return complete


def _from_database(kind: str) -> Completer:
    def complete(ctx: Context, param: Parameter, incomplete: str) -> list[CompletionItem]:
        from typer._click.shell_completion import CompletionItem

        try:
            found = offered(kind, database_file(ctx), incomplete)
        except Exception:  # completion never fails visibly: a bad file, a bad setting, ...
            return []
        return [CompletionItem(value, help=help or None) for value, help in found]

    return complete


# ---------------------------------------------------------------- reading the database


def offered(kind: str, path: Path | None, incomplete: str) -> list[tuple[str, str]]:
    """(value, description) of `kind` in the file at `path` that start with `incomplete`:
    live pool or tenant names by name, active reservation ids (any case) by creation."""
    if path is None:
        return []
    if kind == "reservations":
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows = read_rows(path, ACTIVE_RESERVATIONS, (now,))
        prefix = incomplete.lower()
        return [
            (rid, f"{tenant} in {pool}") for rid, tenant, pool in rows if rid.startswith(prefix)
        ]
    rows = read_rows(path, LIVE_NAMES[kind])
    return [(name, "") for (name,) in rows if name.startswith(incomplete)]


LIVE_NAMES = {
    table: f"SELECT name FROM {table} WHERE deleted_at IS NULL ORDER BY name"
    for table in ("pools", "tenants")
}
# Effective-active (resgate/engine/queries.py, is_active_now): stored times are UTC
# text, `YYYY-MM-DD HH:MM:SS.ffffff`, so they compare as strings.
ACTIVE_RESERVATIONS = (
    "SELECT r.id, t.name, p.name FROM reservations r"
    " JOIN tenants t ON t.id = r.tenant_id JOIN pools p ON p.id = r.pool_id"
    " WHERE r.status = 'active' AND (r.expires_at IS NULL OR r.expires_at > ?)"
    " ORDER BY r.created_at"
)


def database_file(ctx: Context | None) -> Path | None:
    """The SQLite file the settings name, as a command would choose it; None for a
    server URL. A bad setting or configuration file raises (the caller offers nothing)."""
    from resgate.store.target import resolve_target

    value = given_db(ctx) or os.environ.get("RESGATE_DB") or None
    if value is None:
        from resgate.config import load

        configured = load().get("db")
        value = None if configured is None else str(configured.value)
    return resolve_target(value).path


def given_db(ctx: Context | None) -> str | None:
    """`--db` on the command line being completed, before or after the command (never
    after a `--`); the last one given wins."""
    found = None
    words = completion_words()
    for i, word in enumerate(words):
        if word == "--":
            break
        if word == "--db" and i + 1 < len(words):
            found = words[i + 1]
        elif word.startswith("--db="):
            found = word[len("--db=") :]
    if found is None and ctx is not None:
        root = ctx.find_root().params.get("db")
        found = root if isinstance(root, str) else None
    return found


def completion_words() -> list[str]:
    """The words of the command line being completed, as the shell's script passed
    them (bash: COMP_WORDS up to COMP_CWORD; zsh and fish: _TYPER_COMPLETE_ARGS)."""
    from typer._click.shell_completion import split_arg_string

    if os.environ.get(COMPLETE_VAR, "").endswith("bash"):
        words = split_arg_string(os.environ.get("COMP_WORDS", ""))
        return words[: int(os.environ.get("COMP_CWORD", len(words)))]
    return split_arg_string(os.environ.get("_TYPER_COMPLETE_ARGS", ""))


def read_rows(path: Path, sql: str, parameters: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The rows of `sql` on resgate's SQLite file at `path`, opened read-only; none for
    a missing, empty, non-SQLite or foreign file. Text only, one line each, so that a
    value edited in behind resgate's back cannot break the shell's list."""
    uri = read_only_uri(path)
    if uri is None:
        return []
    import sqlite3

    connection = sqlite3.connect(uri, uri=True, timeout=READ_TIMEOUT, isolation_level=None)
    try:
        known = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if not known or not known[0]:
            return []  # another application's database, or a new one
        rows = connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()
    return [row for row in rows if all(_plain(value) for value in row)]


def _plain(value: object) -> bool:
    return isinstance(value, str) and value.isprintable() and not any(c.isspace() for c in value)


def read_only_uri(path: Path) -> str | None:
    """A URI that opens `path` without creating anything beside it, None if it is no
    SQLite file. mode=ro sees committed writes but, on a WAL-mode file, creates the
    -wal and -shm that are not there; when they are not both there, nobody has the
    file open and immutable=1 reads the file itself (as resgate/store/inspect.py)."""
    from resgate.store.inspect import SQLITE_MAGIC, ro_uri, side_files

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a FIFO or a device is never read
        header = handle.read(100)
    if not header.startswith(SQLITE_MAGIC):
        return None
    wal_mode = header[18:20] == b"\x02\x02"
    return ro_uri(path, immutable=wal_mode and not all(p.exists() for p in side_files(path)))
