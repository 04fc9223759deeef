"""Alembic environment.

resgate runs migrations in code with an open connection handed over through
`config.attributes["connection"]` (under its own write lock, see
resgate/store/schema.py). A developer running `alembic upgrade head` from the
repository gets a connection to the database named by `-x db=...` or RESGATE_DB.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from resgate.store.models import Base, postgresql_options

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        postgresql_options(target_metadata)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Developer path: the database named by `-x db=...` or RESGATE_DB, opened the
    # way resgate opens it (file checks, pragmas, write lock), without resgate's
    # own automatic creation and upgrade.
    from resgate.store.database import migration_engine, resolve_target

    target = context.get_x_argument(as_dictionary=True).get("db")
    engine = migration_engine(resolve_target(target))
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("resgate migrations run online only")
run_migrations_online()
