"""Opening the database, and one transaction per command.

Where the database is comes from target.py; a SQLite file is looked at read-only
by inspect.py before anything is trusted to it (README "Where the data lives");
sqlite.py and postgres.py open each backend. SQLite writers take the write lock
up front with BEGIN IMMEDIATE (README "Many processes at once"); PostgreSQL
writers lock the audit head first and then rows in one fixed order, and
serialization failures are retried here (README "Running on PostgreSQL").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from resgate.clock import Clock, SystemClock
from resgate.errors import Busy, DatabaseProblem, Refused
from resgate.interrupts import GUARD
from resgate.store import postgres, schema, sqlite
from resgate.store.inspect import inspect_sqlite_file
from resgate.store.sqlite import backup_sqlite
from resgate.store.target import Target, busy_timeout, resolve_target

__all__ = [
    "Database",
    "Target",
    "Tx",
    "backup_sqlite",
    "current_revision",
    "first_line",
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
            raise DatabaseProblem.read_only(self.target.display)
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
                    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
                if write and self.dialect == "postgresql" and not schema_change:
                    # Every PostgreSQL writer takes the audit head first
                    # (README "Running on PostgreSQL"): one lock order, and a linear audit chain.
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
            return Busy.write_lock_timeout(busy_timeout(self.target.configured_busy_timeout))
        if "readonly" in message or "read-only" in message:
            return DatabaseProblem.read_only(self.target.display)
        if self.dialect == "postgresql" and getattr(exc.orig, "sqlstate", None) == "55P03":
            return Busy.lock_timeout(busy_timeout(self.target.configured_busy_timeout))
        if self.dialect == "postgresql" and _is_retryable(exc):
            return Busy.conflicts()
        if "malformed" in message or "not a database" in message:
            return DatabaseProblem(f"database is corrupt: {self.target.display} ({exc.orig})")
        return DatabaseProblem(f"database error on {self.target.display}: {first_line(exc.orig)}")


def first_line(value: object) -> str:
    """The first line of a driver's message, or its type when it has none."""
    return str(value).strip().splitlines()[0] if str(value).strip() else type(value).__name__


def _is_retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01")


def open_database(target: Target, *, write: bool) -> Database:
    if target.is_sqlite:
        return sqlite.open_sqlite(target, write=write)
    return postgres.open_server(target, write=write)


def upgrade(target: Target) -> tuple[str | None, str]:
    """`resgate db upgrade`: returns (old revision, new revision)."""
    if target.is_sqlite:
        assert target.path is not None
        state = inspect_sqlite_file(target.path)
        sqlite.open_sqlite(target, write=True).dispose()
        return state.revision, schema.SCHEMA_HEAD
    return postgres.upgrade_server(target), schema.SCHEMA_HEAD


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
