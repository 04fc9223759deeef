"""Opening the database, and one transaction per command.

Where the database is comes from target.py; a SQLite file is looked at read-only
by inspect.py before anything is trusted to it (README "Where the data lives");
sqlite.py and postgres.py open each backend. SQLite writers take the write lock
up front with BEGIN IMMEDIATE (README "Many processes at once"); PostgreSQL
writers lock the audit head first and then rows in one fixed order, and
serialization failures are retried here (README "Running on PostgreSQL").
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from resgate.clock import Clock, SystemClock
from resgate.errors import Busy, DatabaseProblem, InvalidInput, Refused
from resgate.interrupts import GUARD
from resgate.store import postgres, schema, sharing, sqlite
from resgate.store.inspect import group_name, inspect_sqlite_file, read_only_problem
from resgate.store.sqlite import backup_sqlite
from resgate.store.target import Target, busy_timeout, resolve_target

__all__ = [
    "Database",
    "Initialized",
    "Target",
    "Tx",
    "backup_sqlite",
    "current_revision",
    "first_line",
    "initialize",
    "migration_engine",
    "open_database",
    "resolve_target",
    "upgrade",
]

T = TypeVar("T")

PG_RETRIES = 5


@dataclass
class Tx:
    """One transaction: the session, the moment it runs at, and the backend."""

    session: Session
    now: datetime
    dialect: str
    # The session's connection for this transaction, for Core statements: asking
    # the session for it again costs more than many a statement (benchmarks/README.md).
    # Inside session.begin_nested(), ask the session: that emits the SAVEPOINT.
    connection: Connection
    # Work that must see everything the transaction did, run once each just before
    # it commits (the engine's line of waiting requests asks for this).
    before_commit: list[Callable[[Tx], None]] = field(default_factory=list)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def at_commit(self, hook: Callable[[Tx], None]) -> None:
        """Run `hook(tx)` just before this transaction commits (once, however often
        it is asked for)."""
        if hook not in self.before_commit:
            self.before_commit.append(hook)

    def run_before_commit(self) -> None:
        done: list[Callable[[Tx], None]] = []
        while self.before_commit:
            hook = self.before_commit.pop(0)
            if hook not in done:
                done.append(hook)
                hook(self)


class Database:
    def __init__(
        self,
        target: Target,
        engine: Engine,
        *,
        read_only: bool = False,
        placeholder: bool = False,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self.engine = engine
        self.dialect = engine.dialect.name
        self.read_only = read_only
        # An empty in-memory schema standing in for a database that does not
        # exist yet: read commands show the empty result and create nothing.
        self.placeholder = placeholder
        # Called once when a writer has waited sqlite.WAIT_NOTICE for the lock
        # (the CLI's notice on a terminal); the store itself says nothing.
        self.on_wait = on_wait

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
            raise self._read_only()
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
                raise Refused(f"refused by the database: {first_line(exc.orig)}") from None
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
                    # path can do without (benchmarks/README.md).
                    if write:
                        timeout = busy_timeout(self.target.configured_busy_timeout)
                        sqlite.begin_immediate(connection, timeout, self.on_wait)
                    else:
                        sqlite.begin_read(connection)
                if write and self.dialect == "postgresql" and not schema_change:
                    # Every PostgreSQL writer takes the audit head first
                    # (README "Running on PostgreSQL"): one lock order, and a linear audit chain.
                    # psycopg waits for the server in short polls, so signals are
                    # acted on while it waits.
                    with _notice_after(sqlite.WAIT_NOTICE, self.on_wait):
                        connection.exec_driver_sql(
                            "SELECT id FROM audit_head WHERE id = 1 FOR UPDATE"
                        )
                # The clock is read after the write lock is held: a writer that
                # waited must not act at the moment it started waiting
                # (tests/test_hammer.py).
                now = self._now(session, clock, write)
                tx = Tx(session=session, now=now, dialect=self.dialect, connection=connection)
                yield tx
                if commit and write and not schema_change:
                    tx.run_before_commit()
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
            return Busy.write_lock_timeout(busy_timeout(self.target.configured_busy_timeout))
        if "readonly" in message or "read-only" in message:
            return self._read_only()
        if self.dialect == "postgresql" and getattr(exc.orig, "sqlstate", None) == "55P03":
            return Busy.lock_timeout(busy_timeout(self.target.configured_busy_timeout))
        if self.dialect == "postgresql" and _is_retryable(exc):
            return Busy.conflicts()
        if "malformed" in message or "not a database" in message:
            return DatabaseProblem(f"database is corrupt: {self.target.display} ({exc.orig})")
        return DatabaseProblem(f"database error on {self.target.display}: {first_line(exc.orig)}")

    def _read_only(self) -> DatabaseProblem:
        """A write refused: the caller's permissions named when they are why."""
        if self.target.path is not None:
            return read_only_problem(self.target.path, self.target.display)
        return DatabaseProblem.read_only(self.target.display)


def _notice_after(
    seconds: float, on_wait: Callable[[], None] | None
) -> AbstractContextManager[None]:
    """Call `on_wait` (from a timer thread) if the block is still running after `seconds`."""
    if on_wait is None:
        return nullcontext()
    return _timer(seconds, on_wait)


@contextmanager
def _timer(seconds: float, on_wait: Callable[[], None]) -> Iterator[None]:
    timer = threading.Timer(seconds, on_wait)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def first_line(value: object) -> str:
    """The first line of a driver's message, or its type when it has none."""
    return str(value).strip().splitlines()[0] if str(value).strip() else type(value).__name__


def _is_retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01")


def open_database(
    target: Target, *, write: bool, on_wait: Callable[[], None] | None = None
) -> Database:
    """Open the database to read or to write; `on_wait` is called once when a
    write has waited a second for the lock (Database.on_wait)."""
    if target.is_sqlite:
        return sqlite.open_sqlite(target, write=write, on_wait=on_wait)
    database = postgres.open_server(target, write=write)
    database.on_wait = on_wait
    return database


def upgrade(
    target: Target,
    on_wait: Callable[[], None] | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> tuple[str | None, str]:
    """`resgate db upgrade`: returns (old revision, new revision). `on_progress`: told
    how far the backup of a SQLite file is (resgate/store/sqlite.py, backup_sqlite)."""
    if target.is_sqlite:
        assert target.path is not None
        state = inspect_sqlite_file(target.path)
        sqlite.open_sqlite(target, write=True, on_wait=on_wait, on_progress=on_progress).dispose()
        return state.revision, schema.SCHEMA_HEAD
    return postgres.upgrade_server(target), schema.SCHEMA_HEAD


@dataclass(frozen=True)
class Initialized:
    """What `resgate db init` did: the database, the revision it had (None: none
    yet) and has, and the group it is shared with (None: not shared)."""

    display: str
    old: str | None
    revision: str
    group: str | None = None


SHARED_ON_POSTGRES = (
    "--shared and --group apply to a SQLite file; a PostgreSQL database is shared "
    "through the server's roles and grants"
)


def initialize(
    target: Target,
    *,
    shared: bool = False,
    group: str | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Initialized:
    """`resgate db init`: create the database (or upgrade it, as any write would);
    `shared`: make it every member of `group`'s (README "One database for the
    whole machine")."""
    if not target.is_sqlite:
        if shared or group is not None:
            raise InvalidInput(SHARED_ON_POSTGRES)
        return Initialized(target.display, postgres.upgrade_server(target), schema.SCHEMA_HEAD)
    assert target.path is not None
    path = target.path
    gid = sharing.find_group(group, path.parent) if shared else None
    # Looked at before anything changes: a file that is not resgate's is refused
    # untouched, its directory too.
    old = inspect_sqlite_file(path).revision if os.path.isdir(path.parent) else None
    if gid is not None:
        sharing.share_directory(path, gid)
        sharing.share_files(path, gid)  # a private database made shared can be written
    sqlite.open_sqlite(target, write=True, on_wait=on_wait).dispose()
    if gid is not None:
        sharing.share_files(path, gid)  # and the -wal and -shm just made, if kept
    shown = None if gid is None else group_name(gid)
    return Initialized(target.display, old, schema.SCHEMA_HEAD, shown)


def migration_engine(target: Target) -> Engine:
    """An engine for running Alembic by hand (`alembic upgrade head` from the
    repository): the usual pragmas and write lock, no automatic schema handling."""
    if target.is_sqlite:
        assert target.path is not None
        state = inspect_sqlite_file(target.path)
        if state.new and not target.path.exists():
            sqlite.create_file(target.path)
        engine = sqlite.sqlite_engine(target)
        sqlite.install_begin(engine)
        return engine
    return postgres.server_engine(target)[0]


def current_revision(target: Target) -> str | None:
    """The stored revision, read without creating or changing anything."""
    if target.is_sqlite:
        assert target.path is not None
        return inspect_sqlite_file(target.path).revision
    database = postgres.open_server(target, write=False)
    try:
        if database.placeholder:
            return None
        with database.engine.connect() as connection:
            return schema.read_revision(connection)
    finally:
        database.dispose()
