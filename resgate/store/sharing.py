"""A database shared by a Unix group (README "Sharing one machine"): `db init --shared
--group` gives the directory to the group, setgid, and the files to the group too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from resgate.errors import DatabaseProblem
from resgate.store.inspect import described, group_name, side_files
from resgate.store.sqlite import SHARED_MODE

SHARED_DIRECTORY_MODE = 0o2770


def find_group(name: str | None, directory: Path) -> int:
    """The group id for `resgate db init --shared`: `name` (a group name or
    number); None: the directory's group if it exists, else the caller's."""
    import grp

    if name is None:
        return os.stat(directory).st_gid if os.path.isdir(directory) else os.getgid()
    with contextlib.suppress(KeyError):
        return grp.getgrnam(name).gr_gid
    if name.isdigit():
        with contextlib.suppress(KeyError, OverflowError):
            return grp.getgrgid(int(name)).gr_gid
    raise DatabaseProblem.no_such_group(name)


def share_directory(path: Path, gid: int) -> None:
    """Give the database's directory group `gid` and mode 2770 (setgid: what is
    made in it is the group's). A missing one is created; an existing one is
    changed only when it holds nothing but this database's files; one that holds
    others is left as it is if it is shared with the group already, else refused."""
    directory = path.parent
    if _made_directory(path):
        give(directory, gid, SHARED_DIRECTORY_MODE)
        return
    info = directory.stat()
    if info.st_gid == gid and stat.S_IMODE(info.st_mode) == SHARED_DIRECTORY_MODE:
        return
    others = _other_files(directory, path.name)
    if not others:
        give(directory, gid, SHARED_DIRECTORY_MODE)
    elif not (info.st_gid == gid and _group_rwx_setgid(info.st_mode)):
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise DatabaseProblem(
            f"cannot share directory {directory}: it holds files other than the "
            f"database's ({shown}); give the database a directory of its own"
        )


def _made_directory(path: Path) -> bool:
    """Create the database's directory, private until it is the group's; False
    if it was there already."""
    directory = path.parent
    if os.path.isdir(directory):
        return False
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        return False
    except FileNotFoundError:
        reason = f"directory {directory.parent} does not exist"
        raise DatabaseProblem.cannot_open(str(path), reason) from None
    except OSError as exc:
        reason = f"cannot create directory {directory}: {(exc.strerror or str(exc)).lower()}"
        raise DatabaseProblem.cannot_open(str(path), reason) from None
    return True


def share_files(path: Path, gid: int) -> None:
    """The database and its -wal and -shm, those that exist: mode 0660, group `gid`."""
    for file in (path, *side_files(path)):
        if file.exists():
            give(file, gid, SHARED_MODE)


def give(where: Path, gid: int, mode: int) -> None:
    """Group `gid` and `mode` for `where`, changing only what differs; a change
    the caller may not make: exit 1 naming it."""
    info = where.stat()
    try:
        if info.st_gid != gid:
            os.chown(where, -1, gid)
        if stat.S_IMODE(info.st_mode) != mode or info.st_gid != gid:
            os.chmod(where, mode)  # after chown, which may clear setgid
        done = where.stat()
        if done.st_gid != gid or stat.S_IMODE(done.st_mode) != mode:
            # chmod drops setgid, silently, for a group the caller is not in.
            raise PermissionError(1, "not permitted")
    except OSError as exc:
        raise DatabaseProblem(
            f"cannot give {where} group {group_name(gid)} and mode {mode:04o}: "
            f"{(exc.strerror or str(exc)).lower()} ({described(where)})"
        ) from None


def _group_rwx_setgid(mode: int) -> bool:
    return bool(mode & stat.S_ISGID) and mode & stat.S_IRWXG == stat.S_IRWXG


def _other_files(directory: Path, name: str) -> list[str]:
    """What `directory` holds besides the database `name`, its -wal, -shm and
    -journal, and its upgrade backups (finished or being written)."""
    try:
        entries = sorted(entry.name for entry in directory.iterdir())
    except OSError as exc:
        raise DatabaseProblem(
            f"cannot share directory {directory}: {(exc.strerror or str(exc)).lower()}"
        ) from None
    ours = {name, f"{name}-wal", f"{name}-shm", f"{name}-journal"}
    return [
        entry
        for entry in entries
        if entry not in ours
        and not entry.startswith(f"{name}.bak-")
        and not (entry.startswith(f".{name}.bak-") and entry.endswith(".tmp"))
    ]
