"""PostgreSQL: the engine for a server URL, and opening or upgrading the schema on
a server (README "Running on PostgreSQL")."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from resgate.errors import DatabaseProblem, InvalidInput
from resgate.passwords import url_passwords
from resgate.store import schema
from resgate.store.inspect import check_revision
from resgate.store.sqlite import placeholder
from resgate.store.target import Target, busy_timeout

if TYPE_CHECKING:
    from resgate.store.database import Database, Tx

PG_CONNECT_TIMEOUT = 5  # seconds: README "Running on PostgreSQL" promises a few

# psycopg logs what it ignores while a signal cuts a savepoint's rollback short;
# with no handler, Python would print that to stderr beside resgate's one line.
logging.getLogger("psycopg").addHandler(logging.NullHandler())


def server_engine(target: Target) -> tuple[Engine, str]:
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
    timeout_ms = max(1, int(busy_timeout(target.configured_busy_timeout) * 1000))

    # A lock that cannot be had in time fails the command with exit 5, as on SQLite.
    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")

    return engine, f"{url.host or 'localhost'}:{url.port or 5432}"


@contextmanager
def listening(target: Target, channel: str) -> Iterator[Callable[[float], bool]]:
    """A connection of its own that LISTENs on `channel` while the block runs:
    `wait(seconds)` is True as soon as a notification comes, False after `seconds`."""
    engine, _ = server_engine(target)
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        assert connection is not None
        connection.autocommit = True
        connection.execute(f"LISTEN {channel}")

        def wait(seconds: float) -> bool:
            return any(True for _ in connection.notifies(timeout=seconds, stop_after=1))

        yield wait
    finally:
        raw.close()
        engine.dispose()


def connect_error(exc: DBAPIError, where: str, target: Target) -> DatabaseProblem:
    """The server could not be reached: the driver's reason, with any password hidden."""
    from resgate.store.database import first_line  # late: database.py imports this module

    reason = first_line(exc.orig)
    for password in url_passwords(target.url):
        reason = reason.replace(password, "***")
    return DatabaseProblem(f"cannot connect to PostgreSQL at {where}: {reason}")


def open_server(target: Target, *, write: bool) -> Database:
    """Open a server's database; a write to an empty one creates the schema first,
    an older schema is refused until `resgate db upgrade`."""
    from resgate.store.database import Database  # late: database.py imports this module

    engine, where = server_engine(target)
    database = Database(target, engine)
    try:
        with engine.connect() as connection:
            revision = schema.read_revision(connection)
    except OperationalError as exc:
        engine.dispose()
        raise connect_error(exc, where, target) from None
    if revision == schema.SCHEMA_HEAD:
        return database
    if revision is not None:
        check_revision(revision, target.display)
        engine.dispose()
        raise DatabaseProblem.needs_upgrade(target.display, revision, schema.SCHEMA_HEAD)
    if not write:
        engine.dispose()
        return placeholder(target)
    if not target.may_upgrade:
        engine.dispose()
        raise DatabaseProblem.ask_an_admin()
    upgrade_schema(database)  # a new, empty database: create the schema
    return database


def upgrade_server(target: Target) -> str | None:
    """`resgate db upgrade` on a server: returns the revision it found."""
    from resgate.store.database import Database  # late: database.py imports this module

    engine, where = server_engine(target)
    database = Database(target, engine)
    try:
        with engine.connect() as connection:
            old = schema.read_revision(connection)
        upgrade_schema(database)
    except OperationalError as exc:
        raise connect_error(exc, where, target) from None
    finally:
        database.dispose()
    return old


def upgrade_schema(database: Database) -> None:
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
