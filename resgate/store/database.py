"""Choosing, inspecting and opening the database; one transaction per command.

SQLite files are inspected read-only before anything is trusted to them
(README "Where the data lives"). Writers take SQLite's write lock up front with BEGIN IMMEDIATE
(README "Many processes at once"); PostgreSQL writers lock rows in one fixed order (engine/locks.py)
and retry serialization failures here.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool, QueuePool

from resgate.clock import Clock, SystemClock
from resgate.errors import Busy, DatabaseProblem, InvalidInput, Refused
from resgate.interrupts import GUARD
from resgate.passwords import hide_in_url, url_passwords
from resgate.store import schema

if TYPE_CHECKING:
    pass

T = TypeVar("T")

SQLITE_MAGIC = b"SQLite format 3\x00"
DEFAULT_BUSY_TIMEOUT = 10.0
# PostgreSQL's lock_timeout is a 32-bit count of milliseconds; SQLite's busy
# timeout too. The same ceiling on both, so a value means the same everywhere.
MAX_BUSY_TIMEOUT = 2_147_483.647
PG_RETRIES = 5


@dataclass(frozen=True)
class Target:
    """Where the database is: a SQLite file (`path`) or a server URL."""

    url: str
    path: Path | None
    display: str  # safe to print: never holds a password

    @property
    def is_sqlite(self) -> bool:
        return self.path is not None


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "resgate" / "resgate.db"


def resolve_target(value: str | None) -> Target:
    """`--db` (or RESGATE_DB): a path means a SQLite file, a URL goes to SQLAlchemy."""
    if value is None:
        value = os.environ.get("RESGATE_DB") or None
    if value is None:
        path = default_path()
        return Target(url=f"sqlite:///{path}", path=path, display=str(path))
    if value.strip() == "":
        raise InvalidInput("--db must not be empty")
    if value.startswith("sqlite:"):
        rest = value[len("sqlite:") :]
        if not rest.startswith("///"):
            raise InvalidInput(f"unsupported SQLite URL: {hide_in_url(value)}")
        rest, question, query = rest[3:].partition("?")
        if question:
            # Honouring some parameters and dropping the rest would be a lie;
            # read-only needs no parameter (a database you cannot write is
            # opened read-only by itself).
            raise InvalidInput(
                f"SQLite URL parameters are not supported: ?{query} (give the path alone)"
            )
        if rest in ("", ":memory:"):
            raise InvalidInput("an in-memory database keeps nothing: give a file")
        value = rest
    elif "://" in value:
        return Target(url=value, path=None, display=hide_in_url(value))
    if value == ":memory:":
        raise InvalidInput("an in-memory database keeps nothing: give a file")
    try:
        path = Path(value).expanduser().absolute()
    except RuntimeError:  # `~name` for a user this machine does not have
        user = value[1:].split("/", 1)[0]
        raise DatabaseProblem(f"cannot open database {value}: no such user: {user}") from None
    return Target(url=f"sqlite:///{path}", path=path, display=str(path))


def busy_timeout() -> float:
    raw = os.environ.get("RESGATE_BUSY_TIMEOUT")
    if raw is None or raw == "":
        return DEFAULT_BUSY_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"RESGATE_BUSY_TIMEOUT must be seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise InvalidInput(f"RESGATE_BUSY_TIMEOUT must be seconds, got {raw!r}")
    if value > MAX_BUSY_TIMEOUT:
        raise InvalidInput(
            f"RESGATE_BUSY_TIMEOUT must be at most {MAX_BUSY_TIMEOUT:.3f} seconds, got {raw!r}"
        )
    return value


def synchronous_mode() -> str:
    raw = (os.environ.get("RESGATE_SYNCHRONOUS") or "FULL").upper()
    if raw not in ("FULL", "NORMAL", "EXTRA"):
        raise InvalidInput(f"RESGATE_SYNCHRONOUS must be FULL or NORMAL, got {raw!r}")
    return raw


# ---------------------------------------------------------------- inspection


@dataclass(frozen=True)
class FileState:
    new: bool  # missing, empty, or a SQLite file with no tables
    revision: str | None
    writable: bool


def _refuse(path: Path, reason: str) -> DatabaseProblem:
    return DatabaseProblem(f"not a resgate database: {path} ({reason})")


def _ro_uri(path: Path, immutable: bool = False) -> str:
    query = "immutable=1" if immutable else "mode=ro"
    return f"file:{urllib.parse.quote(str(path))}?{query}"


def inspect_sqlite_file(path: Path) -> FileState:
    """Look at a file without writing to it: no statement or PRAGMA that writes."""
    try:
        return _inspect(path)
    except OSError as exc:  # a name too long, a loop of links, ...
        raise DatabaseProblem(
            f"cannot open database {shown_path(path)}: {exc.strerror or exc}"
        ) from None


def shown_path(path: Path | str, limit: int = 200) -> str:
    """A path for a message: a name of thousands of characters is cut short."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _inspect(path: Path) -> FileState:
    if not path.exists():
        if path.is_symlink() and not path.resolve().parent.is_dir():
            raise DatabaseProblem(
                f"cannot open database {path}: it is a link to {path.resolve()}, "
                "whose directory does not exist"
            )
        if not path.parent.is_dir() and path == default_path():
            # The default directory is made by the first write; until then, a new database.
            return FileState(new=True, revision=None, writable=True)
        if not path.parent.is_dir():
            raise DatabaseProblem(
                f"cannot open database {path}: directory {path.parent} does not exist"
            )
        return FileState(new=True, revision=None, writable=os.access(path.parent, os.W_OK))
    if path.is_dir():
        raise _refuse(path, "is a directory")
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    try:
        # Non-blocking, and checked on the open file itself: a FIFO or a device
        # given as --db is refused, never waited on or written beside.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise _refuse(path, exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(path, "not a regular file")
        header = handle.read(100)
    if header == b"":
        return FileState(new=True, revision=None, writable=writable)
    if header[: len(SQLITE_MAGIC)] != SQLITE_MAGIC:
        raise _refuse(path, "not a SQLite file")
    # Even a read-only connection to a WAL-mode file (header bytes 18-19 are 2)
    # creates its -wal and -shm. With neither present nobody has the file open and
    # everything is in the file itself: read it as immutable, which creates nothing,
    # so a file that is refused below is left exactly as it was, beside it too.
    quiet = header[18:20] == b"\x02\x02" and not any(
        Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm")
    )
    try:
        tables, revision = _read_catalog(path, immutable=quiet)
    except sqlite3.OperationalError:
        # A read-only directory can keep SQLite from creating the WAL index.
        try:
            tables, revision = _read_catalog(path, immutable=True)
        except sqlite3.DatabaseError as exc:
            raise _refuse(path, f"corrupt: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise _refuse(path, f"corrupt: {exc}") from None
    if not tables:
        return FileState(new=True, revision=None, writable=writable)
    if "alembic_version" not in tables:
        raise _refuse(path, "it has tables but no alembic_version: another application's database")
    if revision is None and tables == {"alembic_version"}:
        # Nothing but an empty alembic_version: resgate's schema downgraded to base.
        return FileState(new=True, revision=None, writable=writable)
    if revision is None:
        raise _refuse(path, "alembic_version is empty")
    return FileState(new=False, revision=revision, writable=writable)


def _read_catalog(path: Path, immutable: bool) -> tuple[set[str], str | None]:
    connection = sqlite3.connect(_ro_uri(path, immutable), uri=True, isolation_level=None)
    try:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        revision = None
        if "alembic_version" in tables:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        return tables, revision
    finally:
        connection.close()


def check_revision(revision: str, display: str) -> None:
    """Refuse a revision this resgate does not know (newer, or foreign)."""
    if revision == schema.SCHEMA_HEAD:
        return
    if revision not in schema.known_revisions():
        raise DatabaseProblem(
            f"database {display} is at schema revision {revision}, unknown to this resgate "
            f"(head {schema.SCHEMA_HEAD}): upgrade resgate"
        )


# ---------------------------------------------------------------- opening


@dataclass
class Tx:
    """One transaction: the session, the moment it runs at, and the backend."""

    session: Session
    now: datetime
    dialect: str
    # The session's connection for this transaction, for Core statements: asking
    # the session for it again costs more than many a statement (benchmarks/).
    # Inside session.begin_nested(), ask the session: that emits the SAVEPOINT.
    connection: Connection

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"


class Database:
    def __init__(
        self, target: Target, engine: Engine, *, read_only: bool = False, placeholder: bool = False
    ) -> None:
        self.target = target
        self.engine = engine
        self.dialect = engine.dialect.name
        self.read_only = read_only
        # An empty in-memory schema standing in for a database that does not
        # exist yet: read commands show the empty result and create nothing.
        self.placeholder = placeholder

    def dispose(self) -> None:
        self.engine.dispose()

    def run(
        self,
        work: Callable[[Tx], T],
        *,
        write: bool,
        clock: Clock | None = None,
        commit: bool = True,
        schema_change: bool = False,
    ) -> T:
        """Run `work` in one transaction; retry it on PostgreSQL serialization
        failures and deadlocks; map lock timeouts to Busy (exit 5)."""
        if write and self.read_only:
            raise DatabaseProblem(f"database is read-only: {self.target.display}")
        attempts = PG_RETRIES if self.dialect == "postgresql" else 1
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction(
                    write=write, clock=clock, commit=commit, schema_change=schema_change
                ) as tx:
                    return work(tx)
            except OperationalError as exc:
                if self.dialect == "postgresql" and _is_retryable(exc) and attempt < attempts:
                    time.sleep(0.01 * attempt)
                    continue
                raise self._translate(exc) from None
            except IntegrityError as exc:
                raise Refused(f"refused by the database: {_first_line(exc.orig)}") from None
        raise AssertionError("unreachable")

    @contextmanager
    def transaction(
        self,
        *,
        write: bool,
        clock: Clock | None = None,
        commit: bool = True,
        schema_change: bool = False,
    ) -> Iterator[Tx]:
        with Session(self.engine, expire_on_commit=False, autoflush=False) as session:
            try:
                connection = session.connection()
                if self.dialect == "sqlite":
                    # pysqlite's own BEGIN is off (isolation_level=None): writers
                    # take the write lock up front and wait for it within the busy
                    # timeout, instead of failing on the read→write upgrade (README
                    # "Many processes at once"). Sent here rather than from a "begin"
                    # event: any engine event listener makes SQLAlchemy dispatch
                    # events around every statement, a cost the engine API's hot
                    # path can do without.
                    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
                if write and self.dialect == "postgresql" and not schema_change:
                    # Every PostgreSQL writer takes the audit head first
                    # (README "Many processes at once"): one lock order, and a linear audit chain.
                    connection.exec_driver_sql("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE")
                # The clock is read after the write lock is held: a writer that
                # waited must not act at the moment it started waiting
                # (tests/test_hammer.py).
                now = self._now(session, clock, write)
                yield Tx(session=session, now=now, dialect=self.dialect, connection=connection)
                if commit and write and not schema_change:
                    # From here the command's work stands (resgate/interrupts.py).
                    with GUARD.commit_point():
                        session.commit()
                elif commit:
                    session.commit()
                else:
                    session.rollback()
            except BaseException:
                session.rollback()
                raise

    def _now(self, session: Session, clock: Clock | None, write: bool) -> datetime:
        if clock is not None:
            return clock.now()
        if self.dialect == "postgresql":
            # The server's clock, so hosts with skewed clocks agree on expiry;
            # for a writer, read after its locks (now() is when it began waiting).
            moment = "clock_timestamp()" if write else "now()"
            value: datetime = session.execute(
                text(f"SELECT {moment} AT TIME ZONE 'UTC'")
            ).scalar_one()
            return value
        return SystemClock().now()

    def _translate(self, exc: DBAPIError) -> Exception:
        message = str(exc.orig).lower()
        if "locked" in message or "busy" in message:
            return Busy(
                f"database is busy: the write lock was not free within {busy_timeout():g}s; "
                "the command changed nothing and may be retried"
            )
        if "readonly" in message or "read-only" in message:
            return DatabaseProblem(f"database is read-only: {self.target.display}")
        if self.dialect == "postgresql" and getattr(exc.orig, "sqlstate", None) == "55P03":
            return Busy(
                f"database is busy: a lock was not free within {busy_timeout():g}s; "
                "the command changed nothing and may be retried"
            )
        if self.dialect == "postgresql" and _is_retryable(exc):
            return Busy(
                "database is busy: too many conflicting transactions; the command "
                "changed nothing and may be retried"
            )
        if "malformed" in message or "not a database" in message:
            return DatabaseProblem(f"database is corrupt: {self.target.display} ({exc.orig})")
        return DatabaseProblem(f"database error on {self.target.display}: {_first_line(exc.orig)}")


def _first_line(value: object) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else type(value).__name__


def _is_retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01")


def open_database(target: Target, *, write: bool) -> Database:
    if target.is_sqlite:
        return _open_sqlite(target, write=write)
    return _open_server(target, write=write)


def _install_begin(engine: Engine) -> None:
    # For Alembic run by hand, which begins its own transactions: pysqlite's own
    # BEGIN is off (isolation_level=None), so emit one that takes the write lock.
    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# SQLite's page cache for a connection opened to write, in KiB (the default is
# 2,000): a sweep of 100,000 due reservations touches far more pages than that,
# and spilling them mid-transaction cost it a third of its time (benchmarks/,
# sweep). An upper bound, not an allocation: pages are taken as they are used.
# Readers keep the default, so an export's memory stays flat.
WRITER_CACHE_KIB = 65_536


def _sqlite_engine(
    target: Target, *, uri: str | None = None, read_only: bool = False, writer: bool = False
) -> Engine:
    assert target.path is not None
    timeout = busy_timeout()
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
        # Invariant 4: SQLite leaves foreign keys off unless asked, per connection.
        connection.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            # WAL: readers never block the writer, and the writer never blocks readers.
            connection.execute("PRAGMA journal_mode = WAL")
            # FULL: a command that printed success has committed, even on power loss.
            connection.execute(f"PRAGMA synchronous = {sync}")
        if writer:
            connection.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        return connection

    # One connection kept for the Database's lifetime (closed by dispose()): a
    # new connection per transaction re-reads the schema, and closing the last
    # connection to a WAL file checkpoints and fsyncs it, which cost an engine
    # API caller most of its transactions per second (benchmarks/, cycles).
    return create_engine(
        # The URL only picks the dialect: `creator` opens the file, so a path with
        # `?` or `#` is never parsed as a URL.
        "sqlite://",
        creator=connect,
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=8,
    )


def _create_file(path: Path) -> None:
    """A new database file is private to its owner (0600; -wal/-shm follow)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


def _open_sqlite(target: Target, *, write: bool) -> Database:
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
            return _placeholder(target)
        if state.revision != schema.SCHEMA_HEAD:
            raise DatabaseProblem(
                f"database {path} is at schema revision {state.revision}, this resgate needs "
                f"{schema.SCHEMA_HEAD}: run `resgate db upgrade`"
            )
        if state.writable:
            return Database(target, _sqlite_engine(target))
        return _open_read_only(target)

    if not state.writable:
        raise DatabaseProblem(f"database is read-only: {path}")
    if state.new and not path.exists():
        _create_file(path)
    engine = _sqlite_engine(target, writer=True)
    database = Database(target, engine)
    if state.new or state.revision != schema.SCHEMA_HEAD:
        database.run(lambda tx: _create_or_upgrade(tx, path), write=True, schema_change=True)
    return database


def _open_read_only(target: Target) -> Database:
    assert target.path is not None
    for immutable in (False, True):
        engine = _sqlite_engine(target, uri=_ro_uri(target.path, immutable), read_only=True)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1 FROM alembic_version")).all()
            return Database(target, engine, read_only=True)
        except OperationalError:
            engine.dispose()
    raise DatabaseProblem(f"cannot read database {target.display}")


def _create_or_upgrade(tx: Tx, path: Path) -> None:
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
        # The URI is quoted: a path with `#`, `?` or `%41` names this file.
        reader = sqlite3.connect(_ro_uri(source), uri=True)
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


def _placeholder(target: Target) -> Database:
    from resgate.store.models import Base

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    return Database(target, engine, placeholder=True)


# ---------------------------------------------------------------- PostgreSQL

PG_CONNECT_TIMEOUT = 5  # seconds; README "Exit codes" allows at most 10


def _server_engine(target: Target) -> tuple[Engine, str]:
    """An engine for a server URL, and `host:port` for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(target.url)
    except ArgumentError:
        raise InvalidInput(f"not a database URL: {target.display}") from None
    if url.get_backend_name() != "postgresql":
        raise InvalidInput(
            f"unsupported database URL: {target.display} "
            "(use a file path, sqlite:///PATH or postgresql+psycopg://...)"
        )
    if "@" in (url.host or ""):
        # SQLAlchemy ends the password at its first `@`, a URL parser at the
        # last: a guess either way would send part of the password as the host.
        raise InvalidInput(
            f"ambiguous database URL: {target.display} "
            "(write an `@` in the user name or password as %40)"
        )
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    try:
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT}
        )
    except (NoSuchModuleError, ModuleNotFoundError):
        raise DatabaseProblem(
            "PostgreSQL support is not installed: pip install 'resgate[postgres]'"
        ) from None
    # lock_timeout = 0 would mean "wait for ever": zero, or less than a
    # millisecond, fails at once, as SQLite's busy timeout does.
    timeout_ms = max(1, int(busy_timeout() * 1000))

    # A lock that cannot be had in time fails the command with exit 5, as on SQLite.
    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")

    return engine, f"{url.host or 'localhost'}:{url.port or 5432}"


def _connect_error(exc: DBAPIError, where: str, target: Target) -> DatabaseProblem:
    reason = _first_line(exc.orig)
    for password in url_passwords(target.url):
        reason = reason.replace(password, "***")
    return DatabaseProblem(f"cannot connect to PostgreSQL at {where}: {reason}")


def _open_server(target: Target, *, write: bool) -> Database:
    engine, where = _server_engine(target)
    database = Database(target, engine)
    try:
        with engine.connect() as connection:
            revision = schema.read_revision(connection)
    except OperationalError as exc:
        engine.dispose()
        raise _connect_error(exc, where, target) from None
    if revision == schema.SCHEMA_HEAD:
        return database
    if revision is not None:
        check_revision(revision, target.display)
        engine.dispose()
        raise DatabaseProblem(
            f"database {target.display} is at schema revision {revision}, this resgate needs "
            f"{schema.SCHEMA_HEAD}: run `resgate db upgrade`"
        )
    if not write:
        engine.dispose()
        return _placeholder(target)
    _upgrade_server(database)  # a new, empty database: create the schema
    return database


def _upgrade_server(database: Database) -> None:
    """Create or upgrade a PostgreSQL schema under an advisory lock, so concurrent
    first uses and upgrades from several hosts are safe."""

    def work(tx: Tx) -> None:
        connection = tx.connection
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('resgate.schema'))"))
        revision = schema.read_revision(connection)
        if revision != schema.SCHEMA_HEAD:
            if revision is not None:
                check_revision(revision, database.target.display)
            schema.upgrade_to_head(connection)

    database.run(work, write=True, schema_change=True)


def upgrade(target: Target) -> tuple[str | None, str]:
    """`resgate db upgrade`: returns (old revision, new revision)."""
    if target.is_sqlite:
        assert target.path is not None
        state = inspect_sqlite_file(target.path)
        _open_sqlite(target, write=True).dispose()
        return state.revision, schema.SCHEMA_HEAD
    engine, where = _server_engine(target)
    database = Database(target, engine)
    try:
        with engine.connect() as connection:
            old = schema.read_revision(connection)
        _upgrade_server(database)
    except OperationalError as exc:
        raise _connect_error(exc, where, target) from None
    finally:
        database.dispose()
    return old, schema.SCHEMA_HEAD


def migration_engine(target: Target) -> Engine:
    """An engine for running Alembic by hand (`alembic upgrade head` from the
    repository): the usual pragmas and write lock, no automatic schema handling."""
    if target.is_sqlite:
        assert target.path is not None
        state = inspect_sqlite_file(target.path)
        if state.new and not target.path.exists():
            _create_file(target.path)
        engine = _sqlite_engine(target)
        _install_begin(engine)
        return engine
    return _server_engine(target)[0]


def current_revision(target: Target) -> str | None:
    """The stored revision, read without creating or changing anything."""
    if target.is_sqlite:
        assert target.path is not None
        return inspect_sqlite_file(target.path).revision
    database = _open_server(target, write=False)
    try:
        if database.placeholder:
            return None
        with database.engine.connect() as connection:
            return schema.read_revision(connection)
    finally:
        database.dispose()
