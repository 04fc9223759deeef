"""Choosing and opening the database (README, "Where the data lives"). Files that
are not resgate's are
refused and left byte-for-byte untouched; read commands on a missing database
create nothing; the default location's modes; revisions; read-only databases;
`--db` over RESGATE_DB; URLs; passwords never shown."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import REPO, resgate_command

from resgate.store.schema import SCHEMA_HEAD

pytestmark = pytest.mark.sqlite_only

SIDE_FILES = ("-wal", "-shm", "-journal")
READ_COMMANDS = [["list"], ["status"], ["pool", "list"], ["tenant", "list"], ["list", "--all"]]


def snapshot(path: Path) -> dict[str, object]:
    """Everything a refusal must leave alone: bytes, times, mode, and no side files."""
    if path.is_dir():
        content: object = sorted(p.name for p in path.iterdir())
    else:
        content = path.read_bytes()
    info = path.stat()
    return {
        "content": content,
        "mtime": info.st_mtime_ns,
        "mode": info.st_mode,
        "side": [s for s in SIDE_FILES if Path(f"{path}{s}").exists()],
        "siblings": sorted(p.name for p in path.parent.iterdir()),
    }


def make_sqlite(path: Path, wal: bool, sql: str = "CREATE TABLE notes (id INTEGER, body TEXT)"):
    connection = sqlite3.connect(path)
    if wal:
        connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(sql)
    connection.execute("INSERT INTO notes VALUES (1, 'keep me')")
    connection.commit()
    connection.close()
    for suffix in SIDE_FILES:
        assert not Path(f"{path}{suffix}").exists()


def make_corrupt(path: Path, wal: bool) -> None:
    source = path.with_name("source.db")
    make_sqlite(source, wal)
    header = source.read_bytes()[:100]
    source.unlink()
    path.write_bytes(header + b"\xde\xad\xbe\xef garbage " * 800)


def foreign_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    directory = tmp / "a-directory"
    directory.mkdir()
    (directory / "inside.txt").write_text("x")
    text = tmp / "notes.txt"
    text.write_text("just some text\nnot a database\n")
    files = {
        "directory": (directory, "is a directory"),
        "text": (text, "not a SQLite file"),
    }
    for wal in (False, True):
        mode = "wal" if wal else "rollback"
        corrupt = tmp / f"corrupt-{mode}.db"
        make_corrupt(corrupt, wal)
        files[f"corrupt-{mode}"] = (corrupt, "corrupt: ")
        other = tmp / f"other-{mode}.db"
        make_sqlite(other, wal)
        files[f"other-{mode}"] = (other, "no alembic_version")
    short = tmp / "short.db"
    short.write_bytes(b"SQLite")
    files["short"] = (short, "not a SQLite file")
    return files


FOREIGN = [
    "directory",
    "text",
    "corrupt-rollback",
    "corrupt-wal",
    "other-rollback",
    "other-wal",
    "short",
]


@pytest.mark.parametrize("kind", FOREIGN)
def test_foreign_files_are_refused_untouched(cli, tmp_path: Path, kind: str):
    path, reason = foreign_files(tmp_path)[kind]
    before = snapshot(path)
    for args in (
        ["list"],
        ["list", "--json"],
        ["status"],
        ["pool", "create", "--name", "p", "--cpu", "1"],
        ["sweep"],
        ["db", "upgrade"],
        ["db", "check"],
        ["db", "current"],
    ):
        result = cli("--db", str(path), *args)
        assert result.code == 1, (args, result)
        assert result.stdout == ""
        assert result.stderr.startswith(f"Error: not a resgate database: {path} ("), result
        assert reason in result.stderr
        assert result.stderr.endswith(")\n") and result.stderr.count("\n") == 1
        assert snapshot(path) == before, args


def test_memory_database_refused(cli, tmp_path: Path):
    for value in (":memory:", "sqlite:///:memory:", "sqlite://"):
        result = cli("--db", value, "pool", "create", "--name", "p", "--cpu", "1")
        assert result.code == 2, (value, result)
        assert result.stderr.startswith("Error: ") and result.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["home"]


@pytest.mark.parametrize("args", READ_COMMANDS)
def test_read_command_on_missing_or_empty_file_creates_nothing(cli, tmp_path: Path, args):
    missing = tmp_path / "missing.db"
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    before = snapshot(empty)
    for path in (missing, empty):
        result = cli("--db", str(path), *args)
        assert result.code == 0 and result.stderr == "", result
        assert result.stdout.startswith(("No ", "Reservations: 0 active")), result
        result = cli("--db", str(path), *args, "--json")
        assert result.code == 0 and result.stderr == "", result
        data = json.loads(result.stdout)
        if args == ["status"]:
            assert data["pools"] == [] and data["tenants"] == []
            assert data["reservations"] == {
                "active": 0,
                "upcoming": 0,
                "released": 0,
                "expired": 0,
                "preempted": 0,
            }
        else:
            assert data == []
    assert not missing.exists()
    assert snapshot(empty) == before
    assert sorted(os.listdir(tmp_path)) == ["empty.db", "home"]


def test_export_and_db_current_on_missing_file(cli, tmp_path: Path):
    path = tmp_path / "missing.db"
    result = cli("--db", str(path), "export")
    assert result.code == 0 and json.loads(result.stdout)["history"] == []
    result = cli("--db", str(path), "db", "current", "--json")
    assert json.loads(result.stdout) == {"revision": None, "head": SCHEMA_HEAD}
    assert not path.exists()


def test_empty_file_becomes_a_database_on_first_write(cli, tmp_path: Path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    assert cli("--db", str(path), "pool", "create", "--name", "p", "--cpu", "1").code == 0
    result = cli("--db", str(path), "pool", "list", "--json")
    assert [p["name"] for p in json.loads(result.stdout)] == ["p"]


def test_explicit_path_needs_its_directory(cli, tmp_path: Path):
    path = tmp_path / "nowhere" / "x.db"
    for args in (["list"], ["pool", "create", "--name", "p", "--cpu", "1"]):
        result = cli("--db", str(path), *args)
        assert result.code == 1 and result.stdout == ""
        assert result.stderr.startswith("Error: ") and str(path.parent) in result.stderr
    assert not path.parent.exists()


def test_default_path_modes(cli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RESGATE_DB")
    data_home = isolated_env / "home" / "data"
    directory = data_home / "resgate"
    old = os.umask(0o022)
    try:
        # A read before anything exists: the empty result, nothing created.
        result = cli("list", "--json")
        assert (result.code, result.stdout, result.stderr) == (0, "[]\n", "")
        assert not data_home.exists()
        result = cli("pool", "create", "--name", "p", "--cpu", "1")
        assert result.code == 0, result
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    path = directory / "resgate.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) == 0o600
    assert json.loads(cli("pool", "list", "--json").stdout)[0]["name"] == "p"


def test_default_path_without_xdg(cli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RESGATE_DB")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert cli("tenant", "add", "--name", "t").code == 0
    path = isolated_env / "home" / ".local" / "share" / "resgate" / "resgate.db"
    assert path.is_file()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_option_wins_over_environment(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    env_db, opt_db = tmp_path / "env.db", tmp_path / "opt.db"
    monkeypatch.setenv("RESGATE_DB", str(env_db))
    assert cli("--db", str(opt_db), "pool", "create", "--name", "o", "--cpu", "1").code == 0
    assert opt_db.exists() and not env_db.exists()
    assert cli("pool", "create", "--name", "e", "--cpu", "1").code == 0
    assert [p["name"] for p in json.loads(cli("pool", "list", "--json").stdout)] == ["e"]
    names = json.loads(cli("--db", str(opt_db), "pool", "list", "--json").stdout)
    assert [p["name"] for p in names] == ["o"]


def test_relative_and_home_paths(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert cli("--db", "rel.db", "pool", "create", "--name", "p", "--cpu", "1").code == 0
    assert (tmp_path / "rel.db").exists()
    assert cli("--db", "~/tilde.db", "pool", "create", "--name", "p", "--cpu", "1").code == 0
    assert (tmp_path / "home" / "tilde.db").exists()


def test_sqlite_url(cli, tmp_path: Path):
    path = tmp_path / "url.db"
    url = f"sqlite:///{path}"  # four slashes for an absolute path
    assert url.startswith("sqlite:////")
    assert cli("--db", url, "pool", "create", "--name", "p", "--cpu", "1").code == 0
    assert path.exists()
    result = cli("--db", str(path), "pool", "list", "--json")
    assert [p["name"] for p in json.loads(result.stdout)] == ["p"]


def test_password_never_shown(cli):
    url = "postgresql+psycopg://u:secret@127.0.0.1:1/x"
    for args in (
        ["list"],
        ["pool", "create", "--name", "p", "--cpu", "1"],
        ["db", "current"],
        ["db", "upgrade"],
    ):
        result = cli("--db", url, *args)
        assert result.code == 1, result
        assert result.stdout == ""
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert "secret" not in result.stderr + result.stdout


def test_unknown_revision_refused_naming_both(cli, db_path: Path):
    assert cli("pool", "create", "--name", "p", "--cpu", "1").code == 0
    with sqlite3.connect(db_path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffff'")
    connection.close()
    before = db_path.read_bytes()
    for args in (
        ["list"],
        ["status"],
        ["pool", "create", "--name", "q", "--cpu", "1"],
        ["sweep"],
        ["db", "upgrade"],
    ):
        result = cli(*args)
        assert result.code == 1, (args, result)
        assert result.stdout == "" and result.stderr.count("\n") == 1
        assert "ffff" in result.stderr and SCHEMA_HEAD in result.stderr, result.stderr
        assert db_path.read_bytes() == before
    assert not list(db_path.parent.glob("*.bak-*"))


def test_older_revision_is_upgraded_with_a_backup(cli, db_path: Path):
    from resgate.store.schema import known_revisions

    first = min(known_revisions())
    assert first != SCHEMA_HEAD
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={db_path}", "upgrade", first],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # A read does not upgrade: it says how.
    result = cli("list")
    assert result.code == 1 and "resgate db upgrade" in result.stderr
    result = cli("pool", "create", "--name", "p", "--cpu", "1")
    assert result.code == 0, result
    backup = db_path.with_name(f"{db_path.name}.bak-{first}")
    assert backup.is_file()
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (first,)
        ]
    connection.close()
    assert json.loads(cli("db", "current", "--json").stdout)["revision"] == SCHEMA_HEAD


# ---------------------------------------------------------------- read-only


def _runner_works(prefix: list[str], env: dict[str, str]) -> bool:
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", "import resgate.cli, sqlalchemy, alembic"],
            capture_output=True,
            env=env,
            timeout=60,
            cwd="/",
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@pytest.fixture
def unprivileged(subprocess_env: dict[str, str]) -> Iterator[tuple[list[str], str]]:
    """A command prefix that runs a process without the power to write others' files.
    As root: as user `nobody` (runuser), or, when `nobody` cannot run this
    interpreter (e.g. it lives under /root), as root without the capabilities
    that bypass file permissions (setpriv)."""
    if os.geteuid() != 0:
        yield [], "self"
        return
    if _runner_works(["runuser", "-u", "nobody", "--"], subprocess_env):
        yield ["runuser", "-u", "nobody", "--"], "nobody"
        return
    drop = "-dac_override,-dac_read_search,-fowner"
    setpriv = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--"]
    if shutil.which("setpriv") and _runner_works(setpriv, subprocess_env):
        yield setpriv, "no-dac-caps"
        return
    pytest.skip(
        f"running as root, user 'nobody' cannot run {sys.executable} (prefix {sys.prefix} "
        "not readable by it) and setpriv cannot drop CAP_DAC_OVERRIDE here"
    )


def test_read_only_database_serves_reads(cli, unprivileged, subprocess_env):
    prefix, how = unprivileged
    base = Path(tempfile.mkdtemp(prefix="resgate-ro-", dir="/tmp"))
    try:
        base.chmod(0o755)  # traversable by anyone
        directory = base / "ro"
        directory.mkdir()
        path = directory / "resgate.db"
        db = ["--db", str(path)]
        assert cli(*db, "pool", "create", "--name", "p", "--cpu", "4").code == 0
        assert cli(*db, "tenant", "add", "--name", "t").code == 0
        assert cli(*db, "reserve", "--tenant", "t", "--pool", "p", "--cpu", "1").code == 0
        for suffix in ("-wal", "-shm"):
            assert not Path(f"{path}{suffix}").exists()
        if how == "nobody":
            path.chmod(0o644)  # owned by root, readable by all
            directory.chmod(0o755)  # nobody cannot create -wal/-shm here
        else:
            path.chmod(0o444)  # root without DAC override: the bits apply to it too
            directory.chmod(0o555)
        before = snapshot(path)
        env = dict(subprocess_env, HOME=str(base))
        info = path.stat()
        owner = pwd.getpwuid(info.st_uid).pw_name
        group = grp.getgrgid(info.st_gid).gr_name
        # The caller's permissions are why (README "One database for the whole machine").
        refused = (
            f"Error: database is read-only for you: {path} "
            f"(owner {owner}, group {group}, mode {stat.S_IMODE(info.st_mode):04o})\n"
        )

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*prefix, *resgate_command(), *db, *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                cwd=str(base),
            )

        done = run("list", "--json")
        assert done.returncode == 0, done.stderr
        assert [r["tenant"] for r in json.loads(done.stdout)] == ["t"]
        done = run("status", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["reservations"]["active"] == 1
        done = run("pool", "list")
        assert done.returncode == 0 and done.stdout.splitlines()[2].startswith("p ")
        for args in (
            ["pool", "create", "--name", "q", "--cpu", "1"],
            ["sweep"],
            ["tenant", "add", "--name", "u"],
        ):
            done = run(*args)
            assert done.returncode == 1, (args, done)
            assert done.stdout == ""
            assert done.stderr == refused
        assert snapshot(path) == before
    finally:
        for p in (base, *base.rglob("*")):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
