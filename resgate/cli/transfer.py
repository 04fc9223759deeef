"""resgate export, resgate import-state"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Annotated

import typer

from resgate.cli import params
from resgate.cli.options import DryRun, Json
from resgate.cli.permissions import require_admin
from resgate.cli.state import emit, out, state, transact
from resgate.errors import InvalidInput

EXPORT_FORMATS = ("json", "csv")


def export_format(given: str | None, output: str | None) -> str:
    """--format in any case; without it, the --output file's suffix, else json."""
    if given is None:
        suffix = Path(output).suffix.lower().lstrip(".") if output else ""
        return suffix if suffix in EXPORT_FORMATS else "json"
    if given.lower() not in EXPORT_FORMATS:
        raise InvalidInput(
            f"unsupported export format: {given!r} (choose {' or '.join(EXPORT_FORMATS)})"
        )
    return given.lower()


# export's options, declared apart so that the command reads as what it does.
ExportFormat = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="json or csv [default: from --output's .csv or .json, else json].",
        show_default=False,
    ),
]
ExportOutput = Annotated[
    str | None, typer.Option("--output", show_default=False, help="Write to PATH atomically.")
]
Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        show_default=False,
        help="Only history created or ended since WHEN (ISO 8601 time, date, or 24h).",
    ),
]
SinceSeq = Annotated[
    str | None,
    typer.Option(
        "--since-seq",
        show_default=False,
        help="Only history touched by audit events after sequence number N.",
    ),
]


def export(
    ctx: typer.Context,
    format: ExportFormat = None,
    output: ExportOutput = None,
    since: Since = None,
    since_seq: SinceSeq = None,
) -> None:
    """Write a report of pools, tenants and the reservation history."""

    format = export_format(format, output)
    cutoff = params.since(since)
    after = params.sequence("--since-seq", since_seq)

    def write(
        stream: IO[str], on_progress: Callable[[int, int | None], None] | None = None
    ) -> None:
        from resgate.engine import audit, history, listing, pools, tenants
        from resgate.render import data
        from resgate.store.database import Tx

        def work(tx: Tx) -> None:
            start = None if cutoff is None else cutoff.at(tx.now)
            rows = history.history(tx, start, touched_after=after, on_progress=on_progress)
            if format == "csv":
                data.write_csv_report(stream, rows)
            else:
                data.write_json_report(
                    stream,
                    tx.now,
                    pools.list_pools(tx),
                    tenants.list_tenants(tx),
                    listing.list_reservations(tx),
                    rows,
                    audit.head(tx),
                )

        transact(ctx, work, write=False)

    if output is None:
        write(sys.stdout)
        return
    from resgate.cli import progress

    with progress.shown("export", "rows") as on_progress:
        size = _write_atomically(Path(output), lambda stream: write(stream, on_progress))
    out(f"Report exported to {output} ({size} bytes)")


# Created 0600 less what the umask takes: a report copies the database's contents, and
# the default database file is 0600 (see `_write_atomically`).
NEW_REPORT_MODE = 0o600


def _write_atomically(path: Path, write: Callable[[IO[str]], None]) -> int:
    """A temporary file beside the target, then rename: a reader never sees half.

    What may be replaced, and with what permissions:

    - An existing regular file keeps its mode and, where this user may set them, its
      owner and group. The temporary file is created no more readable than that and
      gets the exact mode (and owner) before the first byte is written.
    - A new report is created `NEW_REPORT_MODE` (0600) less what the umask takes: it
      holds everything the database holds, and the default database file is 0600.
      (Deriving the mode from the database file was not chosen: PostgreSQL has none.)
      To share reports, create the file once with the mode wanted, or chmod it: an
      existing file's mode is kept from then on.
    - A symbolic link is written through: the regular file it ends at is replaced and
      the link kept. The kernel follows it first (`os.stat`), so where
      fs.protected_symlinks is on, a link planted in a sticky world-writable directory
      such as /tmp is refused as `open` would refuse it. A dangling link is refused.
    - Anything else that exists (a directory, a device such as /dev/stdout or
      /dev/null, a FIFO, a socket) is refused before anything is written: renaming
      over it would replace the device itself, /dev/stdout included when run as root.

    The checks run again just before the rename, since a long export leaves time for
    the target to change. A missing parent directory fails when the temporary file is
    created. On any failure the temporary file is removed.
    """
    from resgate.errors import DatabaseProblem

    def cannot(reason: str) -> DatabaseProblem:
        return DatabaseProblem(f"cannot write {path}: {reason}")

    given = path.expanduser()
    target, existing = _report_target(given, cannot)
    mode = stat.S_IMODE(existing.st_mode) if existing is not None else NEW_REPORT_MODE
    try:
        temporary, fd = _create_beside(target, mode)
    except OSError as exc:
        raise cannot(exc.strerror or str(exc)) from None
    try:
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            if existing is not None:
                _keep_owner(fd, existing)
                os.fchmod(fd, mode)  # after the chown, which clears set-id bits
            write(handle)
            handle.flush()
            os.fsync(fd)
            size = os.fstat(fd).st_size
        again, _ = _report_target(given, cannot)
        if again != target:
            raise cannot("it changed while the report was written")
        os.replace(temporary, target)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise cannot(exc.strerror or str(exc)) from None
        raise
    return size


def _report_target(
    path: Path, cannot: Callable[[str], Exception]
) -> tuple[Path, os.stat_result | None]:
    """The file to replace (a symbolic link's end) and its status, None if not there."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return path, None  # a missing directory is reported when creating beside it
    except OSError as exc:
        raise cannot(exc.strerror or str(exc)) from None
    if not stat.S_ISLNK(found.st_mode):
        _check_regular(found, cannot)
        return path, found
    try:
        followed = os.stat(path)  # by the kernel, which applies fs.protected_symlinks
    except FileNotFoundError:
        raise cannot("dangling symbolic link") from None
    except OSError as exc:
        raise cannot(exc.strerror or str(exc)) from None
    _check_regular(followed, cannot)
    end, status = _link_end(path, cannot)
    if (status.st_dev, status.st_ino) != (followed.st_dev, followed.st_ino):
        raise cannot("it changed while its symbolic link was followed")
    return end, followed


def _link_end(path: Path, cannot: Callable[[str], Exception]) -> tuple[Path, os.stat_result]:
    """Follow a chain of symbolic links to the path of the file it ends at.

    A link of /proc (/dev/stdout is /proc/self/fd/1) names an open file, not a place:
    replacing the file it shows would cut it from whoever holds it open, so it is
    refused. Each link's text is joined to its own directory, as the kernel does."""
    proc = _proc_device()
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's limit too
        try:
            status = os.lstat(current)
        except OSError as exc:
            raise cannot(exc.strerror or str(exc)) from None
        if not stat.S_ISLNK(status.st_mode):
            return Path(current), status
        if status.st_dev == proc:
            raise cannot(
                "a link to an open file, not a regular file (leave out --output "
                "to write to standard output)"
            )
        try:
            current = os.path.join(os.path.dirname(current), os.readlink(current))
        except OSError as exc:
            raise cannot(exc.strerror or str(exc)) from None
    raise cannot(os.strerror(errno.ELOOP))


def _proc_device() -> int | None:
    try:
        return os.stat("/proc").st_dev
    except OSError:
        return None


def _check_regular(status: os.stat_result, cannot: Callable[[str], Exception]) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise cannot("is a directory")
    if not stat.S_ISREG(status.st_mode):
        raise cannot("not a regular file")


def _create_beside(target: Path, mode: int) -> tuple[Path, int]:
    """A new file `.NAME.XXXXXXXX.tmp` in the target's directory, created with `mode`
    (less the umask) so that it is never more readable than the report will be."""
    import secrets  # not at the top: `resgate --help` and `version` stay fast

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for _ in range(100):
        temporary = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            return temporary, os.open(temporary, flags, mode & 0o777)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name")


def _keep_owner(fd: int, existing: os.stat_result) -> None:
    """The existing file's owner and group where allowed (root: both; others: a group
    they belong to), else the writer's, silently."""
    current = os.fstat(fd)
    if (current.st_uid, current.st_gid) == (existing.st_uid, existing.st_gid):
        return
    for uid, gid in ((existing.st_uid, existing.st_gid), (-1, existing.st_gid)):
        try:
            os.fchown(fd, uid, gid)
            return
        except OSError:
            continue


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
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Import the earlier Go tool's state file: pools, tenants, reservations, history."""
    from resgate.cli import progress
    from resgate.clock import SystemClock
    from resgate.engine import importer
    from resgate.render import data, views

    source = path if path is not None else importer.DEFAULT_PATH
    with progress.shown("import-state", "rows", json=json) as on_progress:
        contents = importer.read_state(Path(source), source)
        # The file's own errors, before opening anything.
        importer.plan(contents, (state(ctx).clock or SystemClock()).now())
        require_admin(ctx, "import state")
        summary = transact(
            ctx, lambda tx: importer.apply(tx, contents, on_progress), write=True, dry_run=dry_run
        )
    emit(
        json, dry_run, data.import_summary(summary, dry_run), views.import_summary(summary, source)
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import-state")(import_state)
