"""resgate status | watch"""

from __future__ import annotations

import signal
import sys
import time
from datetime import datetime
from typing import Annotated

import typer

from resgate.cli import params
from resgate.cli.options import Json
from resgate.cli.signals import SignalWait
from resgate.cli.state import out, out_json, style, transact


def _draw(ctx: typer.Context, json: bool) -> None:
    from resgate.engine.status import status as engine_status

    report = transact(ctx, engine_status, write=False)
    if json:
        from resgate.render import data

        out_json(data.status(report))
    else:
        from resgate.render.text import status_view

        out(status_view(report, style(ctx)))


def status(ctx: typer.Context, json: Json = False) -> None:
    """Counts, per-pool utilisation bars, tenants by priority."""
    _draw(ctx, json)


def watch(
    ctx: typer.Context,
    interval: Annotated[str, typer.Option("--interval", help="Seconds between draws (> 0).")] = "3",
    count: Annotated[
        str | None, typer.Option("--count", show_default=False, help="Stop after N draws.")
    ] = None,
    json: Json = False,
) -> None:
    """The status view, redrawn from the database every --interval seconds."""
    every = params.interval(interval)
    draws = params.count(count)
    # Each signal is only noted, and checked between draws: an exception raised
    # from a handler can land inside SQLAlchemy's connection close, which logs
    # it and goes on (resgate/cli/signals.py).
    stop: list[int] = []
    signals = SignalWait((signal.SIGINT, signal.SIGTERM), stop.append)
    signals.install()
    terminal = sys.stdout.isatty() and not json
    drawn = 0
    try:
        while not stop:
            if terminal:
                sys.stdout.write("\033[2J\033[H")
            elif not json:
                out(f"--- {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}")
            _draw(ctx, json)
            sys.stdout.flush()
            drawn += 1
            if draws is not None and drawn >= draws:
                return
            wake = time.monotonic() + every
            while not stop and (left := wake - time.monotonic()) > 0:
                signals.wait(left)
        if json:
            sys.stderr.write("Watch stopped.\n")
        else:
            out("Watch stopped.")
    finally:
        signals.uninstall()


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("watch")(watch)
