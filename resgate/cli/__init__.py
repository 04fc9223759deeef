"""The resgate command line: a thin shell over the engine.

This module is imported for every invocation, `--help` and completion included,
so it imports neither SQLAlchemy nor Alembic nor tabulate (a test keeps it so)."""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING, Annotated

import typer

from resgate import __version__
from resgate.cli.arguments import hoist_global_options
from resgate.cli.state import State, error
from resgate.errors import ResgateError
from resgate.interrupts import GUARD, Interrupted
from resgate.passwords import hide

if TYPE_CHECKING:
    from resgate.clock import Clock


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"resgate {__version__}\n")
        raise typer.Exit()


def _global_options(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="SQLite file or database URL [env: RESGATE_DB].", show_default=False
        ),
    ] = None,
    color: Annotated[
        str | None,
        typer.Option("--color", help="Colour: auto, always or never.", show_default=False),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    from resgate.cli.params import color as parse_color

    settings = ctx.ensure_object(State)
    settings.db = db
    settings.color = None if color is None else parse_color(color)


def version_command() -> None:
    """Print the version; touches no database."""
    sys.stdout.write(f"resgate {__version__}\n")


# The module that registers each top-level command: a command line that names one
# builds only that one (the help of `resgate` alone, and a name not here, build
# them all). tests/test_imports.py checks the table against the whole tree.
HOMES = {
    **dict.fromkeys(("reserve", "unreserve", "extend", "preempt", "list", "sweep"), "reservations"),
    **dict.fromkeys(("status", "watch"), "status"),
    **dict.fromkeys(("free", "slots", "timeline"), "free"),
    **dict.fromkeys(("export", "import-state"), "transfer"),
    **dict.fromkeys(("db", "audit"), "maintenance"),
    "run": "run",
    "pool": "pools",
    "queue": "queue",
    "tenant": "tenants",
    "config": "config",
    "completion": "completion",
    "version": "version",
}


@cache
def build(home: str | None = None) -> typer.Typer:
    """The command tree: every command, or only those of the module `home` (and
    `version` and `completion`). Built on first use, so that `resgate version`
    imports none of the command modules (benchmarks/, startup)."""
    from resgate.cli.completion import register as register_completion
    from resgate.cli.help import GroupedCommands

    app = typer.Typer(
        cls=GroupedCommands,
        name="resgate",
        help="Priority-aware resource reservations for shared machines.",
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_global_options)
    app.command("version")(version_command)
    for module in sorted(set(HOMES.values())) if home is None else [home]:
        _register(app, module)
    register_completion(app)
    return app


def _register(app: typer.Typer, module: str) -> None:
    # Imported here, one module at a time: each costs start-up (benchmarks/, startup).
    if module == "reservations":
        from resgate.cli import reservations

        reservations.register(app)
    elif module == "status":
        from resgate.cli import status

        status.register(app)
    elif module == "free":
        from resgate.cli import free

        free.register(app)
    elif module == "transfer":
        from resgate.cli import transfer

        transfer.register(app)
    elif module == "maintenance":
        from resgate.cli import maintenance

        app.add_typer(maintenance.db_app, name="db")
        app.add_typer(maintenance.audit_app, name="audit")
    elif module == "run":
        from resgate.cli import run

        run.register(app)
    elif module == "pools":
        from resgate.cli import pools

        app.add_typer(pools.app, name="pool")
    elif module == "queue":
        from resgate.cli import queue

        app.add_typer(queue.app, name="queue")
    elif module == "tenants":
        from resgate.cli import tenants

        app.add_typer(tenants.app, name="tenant")
    elif module == "config":
        from resgate.cli import config

        config.register(app)


def home_of(words: list[str], completing: bool = False) -> str | None:
    """The module of the command `words` (the arguments, global options first)
    name; None when they name none (all are needed). While completing, a command
    word still being typed names none."""
    rest = list(words)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag in ("--db", "--color") and rest:
            rest.pop(0)
    if not rest or (completing and len(rest) == 1):
        return None
    return HOMES.get(rest[0])


def _home(args: list[str]) -> str | None:
    if os.environ.get("_RESGATE_COMPLETE"):
        from resgate.cli.completion import completion_words

        words = completion_words()[1:]
        bash = os.environ["_RESGATE_COMPLETE"].endswith("bash")
        # bash passes the words before the cursor; the others the one being typed too.
        return home_of([*words, ""] if bash else words, completing=True)
    return home_of(args)


def __getattr__(name: str) -> typer.Typer:
    # `resgate.cli.app`, as tests and tools reach for it.
    if name == "app":
        return build()
    raise AttributeError(name)


def _traceback(exc: BaseException, urls: list[str]) -> None:
    # RESGATE_DEBUG=1: the whole story, but no password in it either.
    import traceback

    sys.stderr.write(hide("".join(traceback.format_exception(exc)), urls))
    sys.stderr.flush()


def _database_urls(argv: list[str]) -> list[str]:
    """The database URLs this invocation may name, for hiding their passwords."""
    named = [os.environ.get("RESGATE_DB", "")]
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            named.append(argv[i + 1])
        elif arg.startswith("--db="):
            named.append(arg[len("--db=") :])
    return [value for value in named if "://" in value]


def _silence_stdout() -> None:
    # The reader went away (`resgate list | head`): not an error; make sure the
    # interpreter's final flush does not complain either.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _is_usageerror(exc: Exception) -> bool:
    # Typer vendors its own copy of Click; its usage errors carry these two.
    return callable(getattr(exc, "format_message", None)) and isinstance(
        getattr(exc, "exit_code", None), int
    )


def invoke(
    argv: list[str] | None = None, *, clock: Clock | None = None, freeze: bool = False
) -> int:
    """Run one command; return its exit code. The one error boundary.

    `clock` gives every transaction its "now" (tests; None is the system's or the
    server's clock). `freeze` lets the command exempt what the imports made from the
    garbage collector: only the console entry point, whose process ends with the
    command, asks for it."""
    urls = _database_urls(sys.argv[1:] if argv is None else argv)
    with GUARD.installed():
        try:
            return _invoke(argv, urls, State(clock=clock, freeze=freeze, urls=urls))
        except Interrupted as exc:
            error(exc.message, urls)
            return exc.exit_code
        finally:
            GUARD.settle()


def _invoke(argv: list[str] | None, urls: list[str], state: State) -> int:
    if (sys.argv[1:] if argv is None else argv) in (["version"], ["--version"]):
        # Scripts call this to probe the install: skip building every command's
        # Click object (benchmarks/README.md; benchmarks/ measures it against `import typer`).
        sys.stdout.write(f"resgate {__version__}\n")
        return 0
    if os.environ.get("_RESGATE_COMPLETE"):
        from resgate.cli.completion import quick_answer

        if quick_answer():
            return 0
    from resgate.cli.help import finish_help
    from resgate.cli.hints import described

    debug = os.environ.get("RESGATE_DEBUG") == "1"
    try:
        args = hoist_global_options(sys.argv[1:] if argv is None else argv)
        command = typer.main.get_command(build(_home(args)))
        assert isinstance(command, typer.core.TyperGroup)
        finish_help(command)
        if not args and not os.environ.get("_RESGATE_COMPLETE"):
            # `resgate` alone: the help, and that is not an error.
            sys.stdout.write(command.get_help(typer.Context(command, info_name="resgate")) + "\n")
            return 0
        result = command.main(args=args, prog_name="resgate", standalone_mode=False, obj=state)
        sys.stdout.flush()
        return result if isinstance(result, int) else 0
    except ResgateError as exc:
        if debug:
            _traceback(exc, urls)
        error(described(exc), urls)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        error("interrupted; nothing was changed", urls)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except SystemExit as exc:
        # Click turns a broken pipe inside a command (a streamed `export | head`)
        # into sys.exit(1), even outside standalone mode: it is still a quiet 0.
        if isinstance(exc.__context__, BrokenPipeError):
            _silence_stdout()
            return 0
        raise
    except Exception as exc:
        return _other(exc, urls, debug)


def _other(exc: Exception, urls: list[str], debug: bool) -> int:
    """A usage error from Click, or a bug: one line either way (unless debugging)."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        # `resgate pool` alone: the help, as a usage error (2),
        # without an `Error:` prefix on its first line.
        sys.stderr.write(exc.format_message().rstrip("\n") + "\n")  # type: ignore[attr-defined]
        return 2
    if _is_usageerror(exc):
        error(exc.format_message(), urls)  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    if debug:
        _traceback(exc, urls)
        return 1
    error(f"unexpected {type(exc).__name__}: {exc} (RESGATE_DEBUG=1 shows a traceback)", urls)
    return 1


def main() -> None:
    """Run the command line's arguments; resgate/console.py calls this."""
    code = invoke(freeze=True)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    sys.exit(code)
