"""Which database a command uses: `--db` or RESGATE_DB turned into a `Target`, and
the environment settings every engine reads (README "Where the data lives",
"Many processes at once")."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from resgate.errors import DatabaseProblem, InvalidInput
from resgate.passwords import hide_in_url

DEFAULT_BUSY_TIMEOUT = 10.0
# PostgreSQL's lock_timeout is a 32-bit count of milliseconds; SQLite's busy
# timeout too. The same ceiling on both, so a value means the same everywhere.
MAX_BUSY_TIMEOUT = 2_147_483.647
MEMORY_REFUSED = "an in-memory database keeps nothing: give a file"


@dataclass(frozen=True)
class Target:
    """Where the database is: a SQLite file (`path`) or a server URL."""

    url: str
    path: Path | None
    display: str  # safe to print: never holds a password
    # A configuration file's busy timeout, resolved by the CLI: used when
    # RESGATE_BUSY_TIMEOUT is unset (the variable wins, README "Configuration files").
    configured_busy_timeout: float | None = None
    # Whether a write may create or upgrade the schema on its own: the CLI says no
    # for someone who is not an admin while admins are set (README "Admins").
    may_upgrade: bool = True

    @property
    def is_sqlite(self) -> bool:
        return self.path is not None


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "resgate" / "resgate.db"


def resolve_target(value: str | None, *, busy: float | None = None) -> Target:
    """`--db` (or RESGATE_DB): a path means a SQLite file, a URL goes to SQLAlchemy.
    `busy`: the busy timeout when RESGATE_BUSY_TIMEOUT is unset (a configuration
    file's, which the caller has checked)."""
    target = _resolve(value)
    return target if busy is None else replace(target, configured_busy_timeout=busy)


def _resolve(value: str | None) -> Target:
    if value is None:
        value = os.environ.get("RESGATE_DB") or None
    if value is None:
        return _file_target(default_path())
    if value.strip() == "":
        raise InvalidInput("--db must not be empty")
    if value.startswith("sqlite:"):
        value = _sqlite_url_path(value)
    elif "://" in value:
        value = server_url(value)
        return Target(url=value, path=None, display=hide_in_url(value))
    if value == ":memory:":
        raise InvalidInput(MEMORY_REFUSED)
    try:
        path = Path(value).expanduser().absolute()
    except RuntimeError:  # `~name` for a user this machine does not have
        user = value[1:].split("/", 1)[0]
        raise DatabaseProblem.cannot_open(value, f"no such user: {user}") from None
    return _file_target(path)


def server_url(value: str) -> str:
    """`postgres://` and `postgresql://` (what libpq and most tools write) as the
    driver resgate ships with, `postgresql+psycopg://`."""
    for scheme in ("postgres://", "postgresql://"):
        if value.startswith(scheme):
            return "postgresql+psycopg://" + value[len(scheme) :]
    return value


def _file_target(path: Path) -> Target:
    return Target(url=f"sqlite:///{path}", path=path, display=str(path))


def _sqlite_url_path(value: str) -> str:
    """The path of a `sqlite:///PATH` URL, which takes no parameters."""
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
        raise InvalidInput(MEMORY_REFUSED)
    return rest


def shown_path(path: Path | str, limit: int = 200) -> str:
    """A path for a message: a name of thousands of characters is cut short."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def busy_timeout(configured: float | None = None) -> float:
    """RESGATE_BUSY_TIMEOUT in seconds: how long a writer waits for a lock; unset,
    `configured` (a configuration file's), else the default."""
    raw = os.environ.get("RESGATE_BUSY_TIMEOUT")
    if raw is None or raw == "":
        return DEFAULT_BUSY_TIMEOUT if configured is None else configured
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"RESGATE_BUSY_TIMEOUT must be seconds, got {raw!r}") from None
    return checked_busy_timeout(value, "RESGATE_BUSY_TIMEOUT", repr(raw))


def checked_busy_timeout(value: float, name: str, shown: str) -> float:
    """A busy timeout within what both databases can hold; `name` and `shown` say
    where it came from in the message (exit 2)."""
    if not value >= 0 or value == float("inf"):
        raise InvalidInput(f"{name} must be seconds, got {shown}")
    if value > MAX_BUSY_TIMEOUT:
        raise InvalidInput(f"{name} must be at most {MAX_BUSY_TIMEOUT:.3f} seconds, got {shown}")
    return value


def synchronous_mode() -> str:
    """RESGATE_SYNCHRONOUS: SQLite's `synchronous` pragma for connections that write."""
    raw = (os.environ.get("RESGATE_SYNCHRONOUS") or "FULL").upper()
    if raw not in ("FULL", "NORMAL", "EXTRA"):
        raise InvalidInput(f"RESGATE_SYNCHRONOUS must be FULL or NORMAL, got {raw!r}")
    return raw
