"""SQLite: the engine and its pragmas, opening a file to read or to write, creating
or upgrading its schema, and the backup taken before an upgrade (README "Where the
data lives", "Many processes at once")."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from resgate.errors import DatabaseProblem
from resgate.store import schema
from resgate.store.inspect import (
    check_revision,
    inspect_sqlite_file,
    read_only_problem,
    ro_uri,
)
from resgate.store.target import Target, busy_timeout, default_path, synchronous_mode

if TYPE_CHECKING:
    from resgate.store.database import Database, Tx

# The page cache of a connection opened to write, in KiB (SQLite's default is
# 2,000): a large sweep touches more pages than the default holds, and spilling
# them mid-transaction slows it down (benchmarks/README.md, sweep). An upper
# bound, not an allocation: pages are taken as they are used. Readers keep the
# default, so an export's memory stays flat.
WRITER_CACHE_KIB = 65_536

# A writer waits for the write lock in tries this long (seconds): SQLite's busy
# handler sleeps in C, where no signal handler runs, so SIGINT and SIGTERM are
# acted on between tries, within one try (README "Exit codes").
LOCK_TRY = 0.1
# After this long waiting for the lock, a writer calls its `on_wait` once.
WAIT_NOTICE = 1.0

# Modes of what resgate creates next to a database: private, unless the
# directory is shared (group-writable and setgid), README "One database for
# the whole machine".
PRIVATE_MODE = 0o600
# Pages an upgrade's backup copies between two reports to its `on_progress`.
BACKUP_STEP = 1024
SHARED_MODE = 0o660


class TimedConnection(sqlite3.Connection):
    """A connection that knows its busy timeout, in milliseconds: a writer takes
    the lock in short tries, a reader waits the whole busy timeout."""

    full_ms = 0
    busy_ms = 0

    def set_busy(self, ms: int) -> None:
        if ms != self.busy_ms:
            self.execute(f"PRAGMA busy_timeout = {ms}")
            self.busy_ms = ms


def sqlite_engine(
    target: Target, *, uri: str | None = None, read_only: bool = False, writer: bool = False
) -> Engine:
    """An engine on the file (or on `uri`, for a read-only open): every connection
    waits up to the busy timeout for a lock and gets the pragmas below."""
    assert target.path is not None
    timeout = busy_timeout(target.configured_busy_timeout)
    sync = synchronous_mode()
    path = target.path

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(
            path if uri is None else uri,
            uri=uri is not None,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=TimedConnection,
        )
        # What sqlite3.connect gave SQLite as its busy timeout.
        connection.full_ms = connection.busy_ms = int(timeout * 1000)
        # SQLite leaves foreign keys off unless asked, per connection (docs/schema.md).
        connection.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            # WAL: readers never block the writer, and the writer never blocks readers.
            connection.execute("PRAGMA journal_mode = WAL")
            # FULL: a command that printed success has committed, even on power loss.
            connection.execute(f"PRAGMA synchronous = {sync}")
        if writer:
            connection.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        return connection

    # One connection kept for the Database's lifetime (closed by dispose()): a new
    # connection per transaction re-reads the schema, and closing the last one to a
    # WAL file checkpoints and fsyncs it, which slows every transaction of an engine
    # API caller (benchmarks/README.md, reserve+release/s).
    return create_engine(
        # The URL only picks the dialect: `creator` opens the file, so a path with
        # `?` or `#` is never parsed as a URL.
        "sqlite://",
        creator=connect,
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=8,
    )


def install_begin(engine: Engine) -> None:
    """For Alembic run by hand, which begins its own transactions: pysqlite's own
    BEGIN is off (isolation_level=None), so emit one that takes the write lock."""

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def begin_immediate(
    connection: Connection, timeout: float, on_wait: Callable[[], None] | None = None
) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock up to `timeout` seconds in
    tries of LOCK_TRY: between tries a signal's handler runs (the interrupt guard
    raises there). `on_wait` is called once the wait has lasted WAIT_NOTICE."""
    raw = connection.connection.dbapi_connection
    if not isinstance(raw, TimedConnection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    started = time.monotonic()
    deadline = started + timeout
    while True:
        raw.set_busy(max(0, int(min(LOCK_TRY, deadline - time.monotonic()) * 1000)))
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if not is_locked(exc) or time.monotonic() >= deadline:
                raise
        if on_wait is not None and time.monotonic() - started >= WAIT_NOTICE:
            on_wait()
            on_wait = None


def begin_read(connection: Connection) -> None:
    """BEGIN for a reader, which waits the whole busy timeout (in C) when it must."""
    raw = connection.connection.dbapi_connection
    if isinstance(raw, TimedConnection):
        raw.set_busy(raw.full_ms)
    connection.exec_driver_sql("BEGIN")


def is_locked(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "locked" in message or "busy" in message


def shared_directory(directory: Path) -> bool:
    """Group-writable and setgid: every file made in it is its group's."""
    mode = directory.stat().st_mode
    return bool(mode & stat.S_ISGID) and bool(mode & stat.S_IWGRP)


def file_mode(directory: Path) -> int:
    """The mode of a file resgate makes in `directory`: 0660 in a shared one, else 0600."""
    return SHARED_MODE if shared_directory(directory) else PRIVATE_MODE


def create_file(path: Path) -> None:
    """A new database file: 0600, or 0660 with the directory's group in a shared
    directory, whatever the umask (SQLite gives -wal and -shm the same mode)."""
    mode = file_mode(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    except FileExistsError:  # another process made it first: theirs stands
        return
    try:
        if mode == SHARED_MODE:
            with contextlib.suppress(OSError):  # setgid has given it the group already
                os.fchown(fd, -1, path.parent.stat().st_gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def open_sqlite(
    target: Target,
    *,
    write: bool,
    on_wait: Callable[[], None] | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Database:
    """Open a file to read (a placeholder if it is new, read-only if it cannot be
    written) or to write (created or upgraded first if need be). `on_wait`: called
    once when a write has waited WAIT_NOTICE for the lock; `on_progress(done, total)`:
    told how many pages of an upgrade's backup are copied."""
    from resgate.store.database import Database  # late: database.py imports this module

    assert target.path is not None
    path = target.path
    if write and path == default_path() and not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        path.parent.chmod(0o700)
    state = inspect_sqlite_file(path)
    if state.revision is not None:
        check_revision(state.revision, str(path))

    if not write:
        if state.new:
            return placeholder(target)
        if state.revision != schema.SCHEMA_HEAD:
            raise DatabaseProblem.needs_upgrade(str(path), str(state.revision), schema.SCHEMA_HEAD)
        if state.writable:
            return Database(target, sqlite_engine(target), on_wait=on_wait)
        return Database(target, _read_only_engine(target), read_only=True)

    if not state.writable:
        raise read_only_problem(path, str(path))
    if (state.new or state.revision != schema.SCHEMA_HEAD) and not target.may_upgrade:
        raise DatabaseProblem.ask_an_admin()
    if state.new and not path.exists():
        create_file(path)
    database = Database(target, sqlite_engine(target, writer=True), on_wait=on_wait)
    if state.new or state.revision != schema.SCHEMA_HEAD:
        database.run(
            lambda tx: create_or_upgrade(tx, path, on_progress), write=True, schema_change=True
        )
    return database


def _read_only_engine(target: Target) -> Engine:
    """mode=ro, which sees every committed write; immutable=1 (no WAL index
    needed) only when there is no -wal, whose commits it would not see."""
    assert target.path is not None
    reason = ""
    for immutable in (False, True):
        if immutable and Path(f"{target.path}-wal").exists():
            break
        engine = sqlite_engine(target, uri=ro_uri(target.path, immutable), read_only=True)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1 FROM alembic_version")).all()
            return engine
        except OperationalError as exc:
            reason = f" ({exc.orig})"
            engine.dispose()
    raise DatabaseProblem(f"cannot read database {target.display}{reason}")


def create_or_upgrade(
    tx: Tx, path: Path, on_progress: Callable[[int, int | None], None] | None = None
) -> None:
    # Under the write lock now: re-read, since another process may have done it.
    connection = tx.connection
    revision = schema.read_revision(connection)
    if revision == schema.SCHEMA_HEAD:
        return
    if revision is not None:
        check_revision(revision, str(path))
        backup_sqlite(path, path.with_name(f"{path.name}.bak-{revision}"), on_progress)
    schema.upgrade_to_head(connection)


def backup_sqlite(
    source: Path,
    destination: Path,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> None:
    """A consistent copy through SQLite's backup API, never more readable than
    the database at any moment: written under a temporary name created 0600,
    given the database's mode and group (within what a file made in that
    directory may have, file_mode), then renamed into place.

    The caller holds the write lock on another connection, so nothing changes
    underneath; the copy reads through a connection of its own, since SQLite
    refuses to back up from a connection that holds a write transaction. With
    `on_progress`, the copy goes BACKUP_STEP pages at a time, each step reported as
    (pages copied, pages in all)."""
    import tempfile

    database = source.stat()
    fd, name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"
    )
    os.close(fd)
    temporary = Path(name)
    try:
        reader = sqlite3.connect(ro_uri(source), uri=True)
        try:
            copy = sqlite3.connect(temporary)
            try:
                if on_progress is None:
                    reader.backup(copy)
                else:
                    reader.backup(
                        copy,
                        pages=BACKUP_STEP,
                        progress=lambda _, left, total: on_progress(total - left, total),
                    )
            finally:
                copy.close()
        finally:
            reader.close()
        with contextlib.suppress(OSError):
            os.chown(temporary, -1, database.st_gid)
        os.chmod(temporary, database.st_mode & file_mode(destination.parent))
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- one database, shared


def placeholder(target: Target) -> Database:
    """An empty in-memory schema standing in for a database that does not exist
    yet (a SQLite file or a server's): read commands show nothing, create nothing."""
    from resgate.store.database import Database  # late: database.py imports this module
    from resgate.store.models import Base

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    return Database(target, engine, placeholder=True)
