"""resgate export, resgate import-state"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated

import typer

from resgate.cli import params
from resgate.cli.state import DRY_RUN_OPTION, JSON_OPTION, emit, out, run


def export(
    ctx: typer.Context,
    format: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    output: Annotated[
        str | None, typer.Option("--output", show_default=False, help="Write to PATH atomically.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            show_default=False,
            help="Only history created or ended since WHEN (ISO 8601 time, date, or 24h).",
        ),
    ] = None,
    since_seq: Annotated[
        str | None,
        typer.Option(
            "--since-seq",
            show_default=False,
            help="Only history touched by audit events after sequence number N.",
        ),
    ] = None,
) -> None:
    """Write a report of pools, tenants and the reservation history."""
    from resgate.engine.errors import InvalidInput

    if format not in ("json", "csv"):
        raise InvalidInput(f"unsupported export format: {format}")
    if since is not None:
        params.when(since, datetime(2000, 1, 1))  # shape check before opening anything
    after = params.sequence("--since-seq", since_seq)

    def write(stream: IO[str]) -> None:
        from resgate.engine import audit, pools, status, tenants
        from resgate.render import data
        from resgate.store.database import Tx

        def work(tx: Tx) -> None:
            cutoff = params.when(since, tx.now) if since is not None else None
            rows = status.history(tx, cutoff, touched_after=after)
            if format == "csv":
                data.write_csv_report(stream, rows)
            else:
                data.write_json_report(
                    stream,
                    tx.now,
                    pools.list_pools(tx),
                    tenants.list_tenants(tx),
                    status.active_reservations(tx),
                    rows,
                    audit.head(tx),
                )

        run(ctx, work, write=False)

    if output is None:
        write(sys.stdout)
        return
    size = _write_atomically(Path(output), write)
    out(f"Report exported to {output} ({size} bytes)")


def _write_atomically(path: Path, write: Callable[[IO[str]], None]) -> int:
    """A temporary file beside the target, then rename: a reader never sees half."""
    import tempfile  # not at the top: `resgate --help` and `version` stay fast

    from resgate.engine.errors import DatabaseProblem

    target = path.expanduser()
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, then renamed
            "w",
            encoding="utf-8",
            newline="",
            dir=target.parent or Path("."),
            prefix=f".{target.name}.",
            suffix=".tmp",
            delete=False,
        )
    except OSError as exc:
        raise DatabaseProblem(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644 & ~_umask())
        os.replace(handle.name, target)
    except BaseException as exc:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DatabaseProblem(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return target.stat().st_size


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def import_state(
    ctx: typer.Context,
    path: Annotated[
        str | None,
        typer.Argument(
            metavar="PATH",
            show_default=False,
            help="The Go tool's state file [default: ~/.resgate/state.json].",
        ),
    ] = None,
    dry_run: bool = DRY_RUN_OPTION,
    json: bool = JSON_OPTION,
) -> None:
    """Import the earlier Go tool's state file: pools, tenants, reservations, history."""
    from resgate.engine import importer

    source = path if path is not None else importer.DEFAULT_PATH
    state = importer.read_state(Path(source), source)
    importer.plan(state, importer.now())  # the file's own errors, before opening anything
    summary = run(ctx, lambda tx: importer.apply(tx, state), write=True, dry_run=dry_run)
    emit(json, dry_run, summary.as_dict(dry_run), importer.describe(summary, source))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import-state")(import_state)
