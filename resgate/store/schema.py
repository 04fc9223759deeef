"""Schema revision: the fast check, creation and upgrade.

SCHEMA_HEAD is the newest revision in migrations/versions; a test asserts it
equals Alembic's script head, so opening a current database compares one string
and never imports Alembic.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

SCHEMA_HEAD = "0010"


def migrations_dir() -> Path:
    """migrations/ ships inside the wheel as the package resgate._migrations. Run
    from a source checkout that shadows the installed package (`python -m resgate`
    in the repository's root), it is the checkout's own migrations/."""
    from importlib.util import find_spec

    from resgate.errors import DatabaseProblem

    spec = find_spec("resgate._migrations")
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    raise DatabaseProblem(
        f"resgate's migrations are missing beside {Path(__file__).resolve().parents[1]}: "
        "reinstall resgate (pip install .)"
    )


def alembic_config(connection: Connection | None = None) -> Config:
    # Built in code, never from the current directory (works from a wheel).
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def read_revision(connection: Connection) -> str | None:
    """The stored revision, or None for a database without resgate's tables."""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade_to_head(connection: Connection) -> None:
    """Run the migrations on `connection`, inside the caller's transaction."""
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
