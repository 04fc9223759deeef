"""Every path that can be a file name works as a database, upgrade backups hold
the data and are never more readable than the database, and whatever is given
as --db that is not a database file gets one clear line, at once (README,
"Where the data lives")."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from harness import REPO, env, resgate_command

from resgate.store import database
from resgate.store.schema import SCHEMA_HEAD, known_revisions

pytestmark = pytest.mark.sqlite_only

NAMES = ["a#b", "q?x=1", "p%41", "sp ace", "ü", "semi;colon", "x&y=z"]


@pytest.fixture(scope="module")
def old_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database at the first revision, holding a pool."""
    path = tmp_path_factory.mktemp("old") / "old.db"
    first = min(known_revisions())
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={path}", "upgrade", first],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(pools)")]
        values = {"name": "'kept'", "cpu": "4", "memory": "0", "gpu": "0",
                  "created_at": "'2026-01-01 00:00:00.000000'"}  # fmt: skip
        names = [c for c in columns if c in values]
        connection.execute(
            f"INSERT INTO pools ({', '.join(names)}) VALUES ({', '.join(values[c] for c in names)})"
        )
    connection.close()
    return path


def resgate(db: Path | str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*resgate_command(), "--db", str(db), *args],
        capture_output=True, text=True, timeout=timeout,
        env=env(),
    )  # fmt: skip


def pools_in(path: Path) -> list[str]:
    # immutable: reading leaves no -wal or -shm beside it.
    connection = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?immutable=1", uri=True)
    try:
        return [row[0] for row in connection.execute("SELECT name FROM pools ORDER BY name")]
    finally:
        connection.close()


@pytest.mark.parametrize("name", NAMES)
def test_any_file_name_is_upgraded_with_a_full_backup(
    name: str, old_database: Path, tmp_path: Path
) -> None:
    first = min(known_revisions())
    folder = tmp_path / name
    folder.mkdir()
    path = folder / f"{name}.db"
    for _ in range(2):  # and upgraded again, later, from an old copy
        shutil.copyfile(old_database, path)
        path.chmod(0o600)
        result = resgate(path, "pool", "create", "--name", "new", "--cpu", "1")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        backup = folder / f"{name}.db.bak-{first}"
        assert pools_in(backup) == ["kept"]
        assert pools_in(path) == ["kept", "new"]
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, backup.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "home"])
    result = resgate(path, "db", "current", "--json")
    assert SCHEMA_HEAD in result.stdout


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o660])
def test_a_backup_is_never_more_readable_than_the_database(
    mode: int, old_database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.db"
    shutil.copyfile(old_database, path)
    path.chmod(mode)
    seen: list[int] = []
    replace = os.replace

    def watching(source: str | Path, destination: str | Path) -> None:
        seen.append(stat.S_IMODE(os.stat(source).st_mode))
        replace(source, destination)

    # The copy is written before it is renamed: look at it then, under a umask
    # that would let anything through.
    monkeypatch.setattr(os, "replace", watching)
    old_umask = os.umask(0)
    try:
        database.backup_sqlite(path, tmp_path / "r.db.bak-x")
    finally:
        os.umask(old_umask)
    # tmp_path is private (not group-writable and setgid), so a backup there is at
    # most 0600 (README "Sharing one machine"); never more than the database.
    assert seen == [mode & 0o600]
    assert stat.S_IMODE((tmp_path / "r.db.bak-x").stat().st_mode) == mode & 0o600
    assert pools_in(tmp_path / "r.db.bak-x") == ["kept"]


def test_what_is_not_a_database_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    dangling = tmp_path / "dangling.db"
    dangling.symlink_to(tmp_path / "missing-dir" / "x.db")
    long_name = tmp_path / ("x" * 5000)
    cases = {
        str(fifo): (1, f"Error: not a resgate database: {fifo} (not a regular file)\n"),
        str(dangling): (1, f"Error: cannot open database {dangling}: it is a link to "),
        "~nosuchuser-resgate/x.db": (
            1, "Error: cannot open database ~nosuchuser-resgate/x.db: no such user: "
        ),
        str(long_name): (1, "Error: cannot open database "),
        f"sqlite:///{tmp_path}/x.db?mode=ro": (
            2, "Error: SQLite URL parameters are not supported: ?mode=ro"
        ),
    }  # fmt: skip
    for db, (code, start) in cases.items():
        for args in (["list"], ["pool", "create", "--name", "p", "--cpu", "1"]):
            result = resgate(db, *args, timeout=10)
            assert result.returncode == code, (db[:80], result.stderr[:300])
            assert result.stderr.startswith(start), result.stderr[:300]
            assert result.stderr.count("\n") == 1 and len(result.stderr) < 500
            assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.db", "fifo.db", "home"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_dev_null_is_refused_and_left_alone() -> None:
    # As root (as CI runs) SQLite would once have made /dev/null-journal.
    before = sorted(os.listdir("/dev"))
    for args in (["list"], ["pool", "create", "--name", "p", "--cpu", "1"]):
        result = resgate("/dev/null", *args)
        assert result.returncode == 1
        assert result.stderr == "Error: not a resgate database: /dev/null (not a regular file)\n"
    assert sorted(os.listdir("/dev")) == before
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
