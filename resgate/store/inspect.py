"""A SQLite file looked at before anything is trusted to it (README "Where the data
lives"): read-only, through the standard library alone, so a file that is refused
is left exactly as it was, and the files beside it too."""

from __future__ import annotations

import grp
import os
import pwd
import sqlite3
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from resgate.errors import DatabaseProblem
from resgate.store import schema
from resgate.store.target import default_path, shown_path

SQLITE_MAGIC = b"SQLite format 3\x00"
# The files SQLite keeps beside a database in WAL mode.
SIDE_SUFFIXES = ("-wal", "-shm")


@dataclass(frozen=True)
class FileState:
    new: bool  # missing, empty, or a SQLite file with no tables
    revision: str | None
    writable: bool


def ro_uri(path: Path, immutable: bool = False) -> str:
    """A read-only URI for `path`, quoted: a path with `#`, `?` or `%41` names this file."""
    query = "immutable=1" if immutable else "mode=ro"
    return f"file:{urllib.parse.quote(str(path))}?{query}"


def inspect_sqlite_file(path: Path) -> FileState:
    """Look at a file without writing to it: no statement or PRAGMA that writes."""
    try:
        return _inspect(path)
    except PermissionError:  # a directory on the way the caller may not pass
        raise read_problem(path) or DatabaseProblem.permission_denied(
            shown_path(path), _described_or_unknown(path)
        ) from None
    except OSError as exc:  # a name too long, a loop of links, ...
        raise DatabaseProblem.cannot_open(shown_path(path), exc.strerror or str(exc)) from None


def side_files(path: Path) -> tuple[Path, ...]:
    return tuple(Path(f"{path}{suffix}") for suffix in SIDE_SUFFIXES)


def described(path: Path) -> str:
    """Owner, group and mode of `path`, as a permission message shows them."""
    info = path.stat()
    return (
        f"owner {user_name(info.st_uid)}, group {group_name(info.st_gid)}, "
        f"mode {stat.S_IMODE(info.st_mode):04o}"
    )


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def unreadable(path: Path) -> Path | None:
    """What the caller's permissions keep it from reading: a directory on the way
    it may not pass, or the database, its -wal or its -shm."""
    for directory in reversed(path.parents):
        if not os.access(directory, os.X_OK):
            return directory
    for candidate in (path, *side_files(path)):
        if os.path.lexists(candidate) and not os.access(candidate, os.R_OK):
            return candidate
    return None


def unwritable(path: Path) -> Path | None:
    """What keeps the caller from writing the database: the file, its directory
    (where SQLite makes -wal and -shm), or a -wal or -shm already there."""
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        return path
    if os.path.isdir(path.parent) and not os.access(path.parent, os.W_OK | os.X_OK):
        return path.parent
    for side in side_files(path):
        if side.exists() and not os.access(side, os.W_OK):
            return side
    return None


def read_problem(path: Path) -> DatabaseProblem | None:
    """`cannot open PATH: permission denied (owner …)` when permissions are why
    the database cannot be read (never "not a resgate database")."""
    denied = unreadable(path)
    if denied is None:
        return None
    return DatabaseProblem.permission_denied(shown_path(denied), _described_or_unknown(denied))


def read_only_problem(path: Path, display: str) -> DatabaseProblem:
    """Why a write is refused: the caller's permissions (naming what forbids it,
    with its owner, group and mode), else a read-only file system."""
    denied = unwritable(path)
    if denied is None or _read_only_file_system(denied):
        return DatabaseProblem.read_only(display)
    where = display if denied == path else shown_path(denied)
    return DatabaseProblem.read_only_for_you(where, _described_or_unknown(denied))


def _described_or_unknown(path: Path) -> str:
    try:
        return described(path)
    except OSError:
        return "owner, group and mode unknown"


def _read_only_file_system(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_revision(revision: str, display: str) -> None:
    """Refuse a revision this resgate does not know (newer, or foreign)."""
    if revision == schema.SCHEMA_HEAD:
        return
    if revision not in schema.known_revisions():
        raise DatabaseProblem.unknown_revision(display, revision, schema.SCHEMA_HEAD)


def _refuse(path: Path, reason: str) -> DatabaseProblem:
    return DatabaseProblem.not_resgate(str(path), reason)


def _inspect(path: Path) -> FileState:
    if not path.exists():
        return _missing(path)
    if path.is_dir():
        raise _refuse(path, "is a directory")
    writable = unwritable(path) is None
    header = _read_header(path)
    if header == b"":
        return FileState(new=True, revision=None, writable=writable)
    if header[: len(SQLITE_MAGIC)] != SQLITE_MAGIC:
        raise _refuse(path, "not a SQLite file")
    tables, revision = _catalog(path, header)
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


def _missing(path: Path) -> FileState:
    """A path with no file: a new database, if its directory is there to hold it."""
    if path.is_symlink() and not path.resolve().parent.is_dir():
        raise DatabaseProblem.cannot_open(
            str(path), f"it is a link to {path.resolve()}, whose directory does not exist"
        )
    if not path.parent.is_dir() and path == default_path():
        # The default directory is made by the first write; until then, a new database.
        return FileState(new=True, revision=None, writable=True)
    if not path.parent.is_dir():
        raise DatabaseProblem.cannot_open(str(path), f"directory {path.parent} does not exist")
    return FileState(new=True, revision=None, writable=unwritable(path) is None)


def _read_header(path: Path) -> bytes:
    """The first 100 bytes (SQLite's file header) of a regular file."""
    try:
        # Non-blocking, and checked on the open file itself: a FIFO or a device
        # given as --db is refused, never waited on or written beside.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except PermissionError:
        raise read_problem(path) or DatabaseProblem.permission_denied(
            shown_path(path), _described_or_unknown(path)
        ) from None
    except OSError as exc:
        raise _refuse(path, exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(path, "not a regular file")
        return handle.read(100)


def _catalog(path: Path, header: bytes) -> tuple[set[str], str | None]:
    """The file's table names and stored revision, read without creating anything."""
    # Even a read-only connection to a WAL-mode file (header bytes 18-19 are 2)
    # creates its -wal and -shm. With neither present nobody has the file open and
    # everything is in the file itself: read it as immutable, which creates nothing,
    # so a file that is refused is left exactly as it was, beside it too.
    quiet = header[18:20] == b"\x02\x02" and not any(
        Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm")
    )
    try:
        return _read_catalog(path, immutable=quiet)
    except sqlite3.OperationalError as exc:
        denied = read_problem(path)
        if denied is not None:
            raise denied from None
        if Path(f"{path}-wal").exists():
            # Read as immutable, the file would hide what the -wal holds.
            raise DatabaseProblem.cannot_open(shown_path(path), str(exc)) from None
        # A read-only directory can keep SQLite from creating the WAL index.
        try:
            return _read_catalog(path, immutable=True)
        except sqlite3.DatabaseError as exc:
            raise _refuse(path, f"corrupt: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise _refuse(path, f"corrupt: {exc}") from None


def _read_catalog(path: Path, immutable: bool) -> tuple[set[str], str | None]:
    connection = sqlite3.connect(ro_uri(path, immutable), uri=True, isolation_level=None)
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
