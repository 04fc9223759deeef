"""SQLite: the engine and its pragmas, opening a file to read or to write, creating
or upgrading its schema, and the backup taken before an upgrade (README "Where the
data lives", "Many processes at once")."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from resgate.errors import DatabaseProblem
from resgate.store import schema
from resgate.store.inspect import check_revision, inspect_sqlite_file, ro_uri
from resgate.store.target import Target, busy_timeout, default_path, synchronous_mode

if TYPE_CHECKING:
    from resgate.store.database import Database, Tx

# The page cache of a connection opened to write, in KiB (SQLite's default is
# 2,000): a large sweep touches more pages than the default holds, and spilling
# them mid-transaction slows it down (benchmarks/README.md, sweep). An upper
# bound, not an allocation: pages are taken as they are used. Readers keep the
# default, so an export's memory stays flat.
WRITER_CACHE_KIB = 65_536


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
        if uri is not None:
            connection = sqlite3.connect(
                uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        else:
            connection = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
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


def create_file(path: Path) -> None:
    """A new database file is private to its owner (0600; -wal/-shm follow)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


def open_sqlite(target: Target, *, write: bool) -> Database:
    """Open a file to read (a placeholder if it is new, read-only if it cannot be
    written) or to write (created or upgraded first if need be)."""
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
            return Database(target, sqlite_engine(target))
        return Database(target, _read_only_engine(target), read_only=True)

    if not state.writable:
        raise DatabaseProblem.read_only(str(path))
    if state.new and not path.exists():
        create_file(path)
    database = Database(target, sqlite_engine(target, writer=True))
    if state.new or state.revision != schema.SCHEMA_HEAD:
        database.run(lambda tx: create_or_upgrade(tx, path), write=True, schema_change=True)
    return database


def _read_only_engine(target: Target) -> Engine:
    assert target.path is not None
    for immutable in (False, True):
        engine = sqlite_engine(target, uri=ro_uri(target.path, immutable), read_only=True)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1 FROM alembic_version")).all()
            return engine
        except OperationalError:
            engine.dispose()
    raise DatabaseProblem(f"cannot read database {target.display}")


def create_or_upgrade(tx: Tx, path: Path) -> None:
    # Under the write lock now: re-read, since another process may have done it.
    connection = tx.connection
    revision = schema.read_revision(connection)
    if revision == schema.SCHEMA_HEAD:
        return
    if revision is not None:
        check_revision(revision, str(path))
        backup_sqlite(path, path.with_name(f"{path.name}.bak-{revision}"))
    schema.upgrade_to_head(connection)


def backup_sqlite(source: Path, destination: Path) -> None:
    """A consistent copy through SQLite's backup API, never more readable than
    the database at any moment: written under a temporary name created 0600,
    given the database's mode and group, then renamed into place.

    The caller holds the write lock on another connection, so nothing changes
    underneath; the copy reads through a connection of its own, since SQLite
    refuses to back up from a connection that holds a write transaction."""
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
                reader.backup(copy)
            finally:
                copy.close()
        finally:
            reader.close()
        with contextlib.suppress(OSError):
            os.chown(temporary, -1, database.st_gid)
        os.chmod(temporary, database.st_mode & 0o660)
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def placeholder(target: Target) -> Database:
    """An empty in-memory schema standing in for a database that does not exist
    yet (a SQLite file or a server's): read commands show nothing, create nothing."""
    from resgate.store.database import Database  # late: database.py imports this module
    from resgate.store.models import Base

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    return Database(target, engine, placeholder=True)
