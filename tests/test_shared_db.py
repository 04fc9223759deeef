"""One database for the whole machine (README "One database for the whole
machine"): `resgate db init --shared` gives a directory to a
group (2770, setgid) and the database and its -wal and -shm to that group (0660);
every file resgate makes beside a database is 0600 in a private directory and
0660 with the directory's group in a shared one; a backup is never more readable
than its database; readers see every committed write; permission problems are
said as such, with owner, group and mode.

The root tests use throwaway Unix users and a group, made with useradd and
groupadd and removed afterwards, and run resgate as those users."""

from __future__ import annotations

import functools
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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import REPO, env
from helpers import run_cli

from resgate.engine.pools import create_pool
from resgate.engine.records import Amounts
from resgate.store.database import open_database, resolve_target
from resgate.store.schema import SCHEMA_HEAD, known_revisions

pytestmark = pytest.mark.sqlite_only

# Runs code as user NAME with umask UMASK: `python -c LAUNCH NAME UMASK CODE ARGS…`.
# Started by `runuser -u NAME` when that user can run this interpreter; else (it
# lives where only root may go, e.g. under /root) started as root, it imports
# what the commands will need while it still may, then becomes NAME: its uid,
# its group and its supplementary groups, as a login would give it.
LAUNCH = r"""
import ast, importlib, os, pkgutil, pwd, sys
from pathlib import Path

name, umask, code = sys.argv[1], int(sys.argv[2], 8), sys.argv[3]
del sys.argv[1:4]
if os.geteuid() == 0 and name != "root":
    import resgate

    wanted = {"alembic.command", "alembic.runtime.migration", "alembic.runtime.environment",
              "alembic.ddl.sqlite", "alembic.operations.ops", "sqlalchemy.dialects.sqlite"}
    for file in Path(resgate.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                wanted.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                wanted.add(node.module)
    wanted.update(m.name for m in pkgutil.walk_packages(resgate.__path__, "resgate."))
    for module in sorted(wanted):
        if not module.endswith("__main__") and "_migrations" not in module:
            try:
                importlib.import_module(module)
            except Exception:
                pass
    from resgate.store import schema

    schema.known_revisions()  # loads the migrations themselves
    entry = pwd.getpwnam(name)
    os.initgroups(name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
os.umask(umask)
exec(code)
"""
RESGATE = "from resgate.console import main; sys.argv[0] = 'resgate'; main()"
# Keeps a writer's connection open (so its -wal and -shm stay) until stdin closes.
HOLD = (
    "from resgate.store.database import open_database, resolve_target\n"
    "db = open_database(resolve_target(sys.argv[1]), write=True)\n"
    "db.run(lambda tx: None, write=True)\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
    "db.dispose()\n"
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def group_of(path: Path) -> str:
    return grp.getgrgid(path.stat().st_gid).gr_name


def owner_of(path: Path) -> str:
    return pwd.getpwuid(path.stat().st_uid).pw_name


def described(path: Path) -> str:
    return f"owner {owner_of(path)}, group {group_of(path)}, mode {mode_of(path):04o}"


def side(path: Path, suffix: str) -> Path:
    return Path(f"{path}{suffix}")


def names(result_stdout: str) -> list[str]:
    return [pool["name"] for pool in json.loads(result_stdout)]


def old_database(path: Path) -> str:
    """A database at the first revision, made by Alembic run by hand: its revision."""
    first = min(known_revisions())
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={path}", "upgrade", first],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return first


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@dataclass
class Machine:
    """Throwaway users and a group; `base`, a directory everyone may pass through."""

    group: str
    bob: str  # a member of `group`
    carol: str  # not a member
    base: Path

    def run(self, user: str, *args: str, umask: int = 0o022) -> Ran:
        """resgate as `user`, as that user would run it."""
        done = subprocess.run(
            launch(user, umask, RESGATE, *args),
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
            cwd=self.base,
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    def hold(self, user: str, db: Path, umask: int) -> subprocess.Popen[str]:
        """A writer's connection, as `user`, kept open until its stdin closes."""
        process = subprocess.Popen(
            launch(user, umask, HOLD, str(db)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=self.base,
        )
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n", process.communicate()
        return process

    def env(self) -> dict[str, str]:
        # No user configuration file; a home the user may enter.
        return env(HOME=str(self.base), RESGATE_CONFIG="", PYTHONDONTWRITEBYTECODE="1")


@functools.cache
def runuser_works() -> bool:
    """Whether `runuser -u nobody` can run this interpreter and import resgate."""
    if shutil.which("runuser") is None:
        return False
    try:
        done = subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, "-c", "import resgate.cli"],
            capture_output=True,
            env=env(),
            timeout=60,
            cwd="/",
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def launch(user: str, umask: int, code: str, *args: str) -> list[str]:
    command = [sys.executable, "-c", LAUNCH, user, f"{umask:o}", code, *args]
    if user != "root" and runuser_works():
        return ["runuser", "-u", user, "--", *command]
    return command


def _tool(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (command, done.stderr)


@pytest.fixture
def machine() -> Iterator[Machine]:
    if shutil.which("useradd") is None or shutil.which("groupadd") is None:
        pytest.skip("needs useradd and groupadd")
    tag = uuid.uuid4().hex[:8]
    group, bob, carol = f"rgg{tag}", f"rgb{tag}", f"rgc{tag}"
    base = Path(tempfile.mkdtemp(prefix="resgate-shared-", dir="/tmp"))
    made: list[tuple[str, str]] = []
    try:
        base.chmod(0o755)  # anyone may pass through
        _tool("groupadd", group)
        made.append(("groupdel", group))
        for user, groups in ((bob, [group]), (carol, [])):
            extra = ["-G", ",".join(groups)] if groups else []
            _tool("useradd", "-M", "-U", "-s", "/usr/sbin/nologin", "-d", str(base), *extra, user)
            made.append(("userdel", user))
        yield Machine(group, bob, carol, base)
    finally:
        for tool, name in reversed(made):
            subprocess.run([tool, name], capture_output=True, timeout=60)
            if tool == "userdel":  # its own group, if userdel left it
                subprocess.run(["groupdel", name], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def shared(machine: Machine) -> Path:
    """`resgate db init --shared --group G`, run by root: the database."""
    db = machine.base / "shared" / "resgate.db"
    result = run_cli("--db", str(db), "db", "init", "--shared", "--group", machine.group, "--json")
    assert result.code == 0, result
    assert json.loads(result.stdout) == {
        "path": str(db),
        "revision": SCHEMA_HEAD,
        "from": None,
        "shared": True,
        "group": machine.group,
        "config_line": f'db = "{db}"',
    }
    return db


# ---------------------------------------------------------------- as root, with other users


@pytest.mark.root
def test_init_shared_gives_the_directory_and_the_database_to_the_group(
    machine: Machine, shared: Path
) -> None:
    directory = shared.parent
    assert (mode_of(directory), group_of(directory)) == (0o2770, machine.group)
    assert (mode_of(shared), group_of(shared)) == (0o660, machine.group)
    assert sorted(p.name for p in directory.iterdir()) == ["resgate.db"]
    result = run_cli("--db", str(shared), "db", "init", "--shared", "--group", machine.group)
    assert result.code == 0 and result.stderr == "", result
    lines = result.stdout.splitlines()
    assert lines[0] == f"Database {shared} is at revision {SCHEMA_HEAD}"
    assert lines[-1] == f'db = "{shared}"'
    assert "/etc/resgate/config.toml" in result.stdout


@pytest.mark.root
def test_a_member_writes_and_everyone_in_the_group_sees_it(machine: Machine, shared: Path) -> None:
    bob = machine.bob
    db = ("--db", str(shared))
    for args in (
        ("pool", "create", "--name", "gpu", "--gpu", "4"),
        ("tenant", "add", "--name", "lab"),
        ("reserve", "--tenant", "lab", "--pool", "gpu", "--gpu", "1"),
    ):
        # A umask that would keep the group out of anything it made.
        result = machine.run(bob, *db, *args, umask=0o077)
        assert result.code == 0, (args, result)
    listed = run_cli(*db, "list", "--json")
    assert listed.code == 0, listed
    (reservation,) = json.loads(listed.stdout)
    assert (reservation["tenant"], reservation["created_by"]) == ("lab", bob)
    for path in (shared, side(shared, "-wal"), side(shared, "-shm")):
        if path.exists():
            assert (mode_of(path), group_of(path)) == (0o660, machine.group), path


@pytest.mark.root
def test_wal_and_shm_made_by_a_member_are_the_groups(machine: Machine, shared: Path) -> None:
    assert not side(shared, "-wal").exists() and not side(shared, "-shm").exists()
    holder = machine.hold(machine.bob, shared, umask=0o077)
    try:
        for suffix in ("-wal", "-shm"):
            path = side(shared, suffix)
            assert (owner_of(path), group_of(path), mode_of(path)) == (
                machine.bob,
                machine.group,
                0o660,
            ), suffix
        # Another member writes beside bob's open connection, through its -wal and -shm.
        assert run_cli("--db", str(shared), "pool", "create", "--name", "p", "--cpu", "1").code == 0
    finally:
        holder.communicate(timeout=60)
    assert holder.returncode == 0, holder.stderr


@pytest.mark.root
def test_outside_the_group_a_read_is_refused_as_a_permission_problem(
    machine: Machine, shared: Path
) -> None:
    carol = machine.carol
    directory = shared.parent
    result = machine.run(carol, "--db", str(shared), "list")
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: cannot open {directory}: permission denied ({described(directory)})\n"
    )
    # A directory others may pass through: the database itself refuses.
    directory.chmod(0o2771)
    for args in (("list",), ("pool", "create", "--name", "q", "--cpu", "1")):
        result = machine.run(carol, "--db", str(shared), *args)
        assert (result.code, result.stdout) == (1, ""), args
        assert result.stderr == (
            f"Error: cannot open {shared}: permission denied ({described(shared)})\n"
        ), args
        assert "not a resgate database" not in result.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["resgate.db"]


@pytest.mark.root
def test_a_member_who_may_only_read_is_told_the_database_is_read_only_for_them(
    machine: Machine, shared: Path
) -> None:
    db = ("--db", str(shared))
    assert run_cli(*db, "pool", "create", "--name", "p", "--cpu", "1").code == 0
    shared.chmod(0o640)
    before = shared.read_bytes()
    result = machine.run(machine.bob, *db, "pool", "list", "--json")
    assert result.code == 0, result
    assert names(result.stdout) == ["p"]
    result = machine.run(machine.bob, *db, "pool", "create", "--name", "q", "--cpu", "1")
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: database is read-only for you: {shared} (owner root, group "
        f"{machine.group}, mode 0640)\n"
    )
    assert shared.read_bytes() == before and mode_of(shared) == 0o640


@pytest.mark.root
def test_a_member_upgrading_an_old_database_makes_a_backup_the_group_shares(
    machine: Machine, shared: Path
) -> None:
    shared.unlink()
    first = old_database(shared)  # made in the shared directory: 0660, the group's
    assert (mode_of(shared), group_of(shared)) == (0o660, machine.group)
    result = machine.run(
        machine.bob, "--db", str(shared), "pool", "create", "--name", "p", "--cpu", "1",
        umask=0o077,
    )  # fmt: skip
    assert result.code == 0, result
    backup = shared.with_name(f"{shared.name}.bak-{first}")
    assert (owner_of(backup), group_of(backup), mode_of(backup)) == (
        machine.bob,
        machine.group,
        0o660,
    )
    with sqlite3.connect(f"file:{backup}?immutable=1", uri=True) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (first,)
        ]
    connection.close()
    assert (mode_of(shared), group_of(shared)) == (0o660, machine.group)


@pytest.mark.root
def test_a_backup_of_a_private_database_in_a_shared_directory_stays_private(
    machine: Machine, shared: Path
) -> None:
    shared.unlink()
    first = old_database(shared)
    shared.chmod(0o600)
    assert run_cli("--db", str(shared), "pool", "create", "--name", "p", "--cpu", "1").code == 0
    backup = shared.with_name(f"{shared.name}.bak-{first}")
    assert (mode_of(backup), group_of(backup)) == (0o600, machine.group)


@pytest.mark.root
def test_a_reader_sees_what_is_still_in_the_wal(machine: Machine, shared: Path) -> None:
    """A reader who may not write opens the database normally (mode=ro), never
    as immutable while a -wal holds commits."""
    shared.parent.chmod(0o2775)
    shared.chmod(0o664)  # others may read; the -wal and -shm follow
    database = open_database(resolve_target(str(shared)), write=True)
    try:
        database.run(lambda tx: create_pool(tx, "fresh", Amounts(cpu=1)), write=True)
        assert side(shared, "-wal").stat().st_size > 0  # not checkpointed: the commit is there
        result = machine.run(machine.carol, "--db", str(shared), "pool", "list", "--json")
        assert result.code == 0, result
        assert names(result.stdout) == ["fresh"]
    finally:
        database.dispose()


@pytest.mark.root
def test_a_reader_who_cannot_use_the_wal_is_refused_rather_than_shown_old_data(
    machine: Machine, shared: Path
) -> None:
    shared.parent.chmod(0o2775)
    shared.chmod(0o664)
    database = open_database(resolve_target(str(shared)), write=True)
    try:
        database.run(lambda tx: create_pool(tx, "fresh", Amounts(cpu=1)), write=True)
        shm = side(shared, "-shm")
        shm.chmod(0o660)  # the WAL index, out of an outsider's reach
        result = machine.run(machine.carol, "--db", str(shared), "pool", "list", "--json")
        # Read as immutable, the file alone would show no pool at all.
        assert (result.code, result.stdout) == (1, ""), result
        assert result.stderr == f"Error: cannot open {shm}: permission denied ({described(shm)})\n"
    finally:
        database.dispose()


@pytest.mark.root
def test_run_again_init_corrects_what_it_may_and_names_what_it_may_not(
    machine: Machine, shared: Path
) -> None:
    directory = shared.parent
    shared.chmod(0o600)
    directory.chmod(0o700)
    os.chown(directory, -1, 0)
    args = ("--db", str(shared), "db", "init", "--shared", "--group", machine.group)
    assert run_cli(*args).code == 0
    assert (mode_of(directory), group_of(directory)) == (0o2770, machine.group)
    assert (mode_of(shared), group_of(shared)) == (0o660, machine.group)
    # A member re-running it where nothing needs changing: fine.
    result = machine.run(machine.bob, *args)
    assert result.code == 0, result
    # A file the member does not own cannot be changed by them: named.
    shared.chmod(0o640)
    result = machine.run(machine.bob, *args)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: cannot give {shared} group {machine.group} ")
    assert result.stderr.endswith(f"({described(shared)})\n") and "0640" in result.stderr
    assert mode_of(shared) == 0o640


@pytest.mark.root
def test_the_default_group_is_the_directorys(machine: Machine) -> None:
    directory = machine.base / "lab"
    directory.mkdir()
    os.chown(directory, -1, grp.getgrnam(machine.group).gr_gid)
    db = directory / "resgate.db"
    result = run_cli("--db", str(db), "db", "init", "--shared", "--json")
    assert result.code == 0, result
    assert json.loads(result.stdout)["group"] == machine.group
    assert (mode_of(directory), group_of(directory)) == (0o2770, machine.group)
    assert (mode_of(db), group_of(db)) == (0o660, machine.group)


# ---------------------------------------------------------------- as anyone


@pytest.fixture
def umask_077() -> Iterator[None]:
    """A umask that would keep everyone else out of what is made."""
    old = os.umask(0o077)
    yield
    os.umask(old)


def my_group() -> str:
    return grp.getgrgid(os.getgid()).gr_name


def test_init_without_shared_keeps_the_default_private(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    monkeypatch.delenv("RESGATE_DB")
    old = os.umask(0)  # nothing taken away by the umask: the modes are resgate's own
    try:
        result = run_cli("db", "init", "--json")
    finally:
        os.umask(old)
    path = isolated_env / "home" / "data" / "resgate" / "resgate.db"
    assert result.code == 0, result
    assert json.loads(result.stdout) == {
        "path": str(path),
        "revision": SCHEMA_HEAD,
        "from": None,
        "shared": False,
    }
    assert (mode_of(path.parent), mode_of(path)) == (0o700, 0o600)
    database = open_database(resolve_target(None), write=True)
    try:
        database.run(lambda tx: None, write=True)
        for suffix in ("-wal", "-shm"):
            assert mode_of(side(path, suffix)) == 0o600, suffix
    finally:
        database.dispose()
    assert "db = " not in run_cli("db", "init").stdout


def test_files_made_in_a_shared_directory_are_its_groups(tmp_path: Path, umask_077: None) -> None:
    """Without root: a directory of one's own group, group-writable and setgid."""
    directory = tmp_path / "lab"
    directory.mkdir()
    directory.chmod(0o2770)
    db = directory / "resgate.db"
    assert run_cli("--db", str(db), "db", "init").code == 0
    assert (mode_of(db), group_of(db)) == (0o660, group_of(directory))
    database = open_database(resolve_target(str(db)), write=True)
    try:
        database.run(lambda tx: None, write=True)
        for suffix in ("-wal", "-shm"):
            path = side(db, suffix)
            assert (mode_of(path), group_of(path)) == (0o660, group_of(directory)), suffix
    finally:
        database.dispose()


def test_backups_follow_the_directory_and_never_open_up_the_database(
    tmp_path: Path, umask_077: None
) -> None:
    # directory mode, database mode → the backup's mode
    cases = {
        "private": (0o700, 0o660, 0o600),
        "shared": (0o2770, 0o660, 0o660),
        "shared-but-0640": (0o2770, 0o640, 0o640),
        "shared-but-0600": (0o2770, 0o600, 0o600),
    }
    for name, (directory_mode, database_mode, backup_mode) in cases.items():
        directory = tmp_path / name
        directory.mkdir()
        directory.chmod(directory_mode)
        db = directory / "resgate.db"
        first = old_database(db)
        db.chmod(database_mode)
        assert run_cli("--db", str(db), "pool", "create", "--name", "p", "--cpu", "1").code == 0
        backup = directory / f"resgate.db.bak-{first}"
        assert mode_of(backup) == backup_mode, name
        assert group_of(backup) == group_of(db), name


def test_init_shared_without_root(tmp_path: Path, umask_077: None) -> None:
    db = tmp_path / "new" / "resgate.db"
    result = run_cli("--db", str(db), "db", "init", "--shared")
    assert result.code == 0, result
    assert (mode_of(db.parent), group_of(db.parent)) == (0o2770, my_group())
    assert (mode_of(db), group_of(db)) == (0o660, my_group())
    assert result.stdout.splitlines()[-1] == f'db = "{db}"'


def test_an_unknown_group_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new" / "resgate.db"
    name = f"no-such-group-{uuid.uuid4().hex[:8]}"
    result = run_cli("--db", str(db), "db", "init", "--shared", "--group", name)
    assert (result.code, result.stdout, result.stderr) == (1, "", f"Error: no such group: {name}\n")
    assert not db.parent.exists()


def test_a_directory_with_other_files_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "home-ish"
    directory.mkdir()
    directory.chmod(0o755)
    (directory / "notes.txt").write_text("mine\n")
    db = directory / "resgate.db"
    result = run_cli("--db", str(db), "db", "init", "--shared")
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: cannot share directory {directory}: ")
    assert "notes.txt" in result.stderr and result.stderr.count("\n") == 1
    assert mode_of(directory) == 0o755
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]


def test_a_directory_holding_only_the_database_is_made_shared(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    directory.mkdir()
    db = directory / "resgate.db"
    assert run_cli("--db", str(db), "pool", "create", "--name", "p", "--cpu", "1").code == 0
    assert mode_of(db) == 0o600
    result = run_cli("--db", str(db), "db", "init", "--shared")
    assert result.code == 0, result
    assert (mode_of(directory), mode_of(db)) == (0o2770, 0o660)
    assert names(run_cli("--db", str(db), "pool", "list", "--json").stdout) == ["p"]


def test_a_foreign_file_is_refused_before_anything_changes(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    directory.mkdir()
    directory.chmod(0o700)
    db = directory / "resgate.db"
    db.write_text("not a database\n")
    db.chmod(0o600)
    result = run_cli("--db", str(db), "db", "init", "--shared")
    assert result.code == 1 and result.stderr.startswith("Error: not a resgate database: ")
    assert (mode_of(directory), mode_of(db)) == (0o700, 0o600)


def test_group_needs_shared_and_postgresql_takes_neither(tmp_path: Path) -> None:
    result = run_cli("--db", str(tmp_path / "x.db"), "db", "init", "--group", my_group())
    assert (result.code, result.stderr) == (2, "Error: --group needs --shared\n")
    url = "postgresql+psycopg://u:secret@127.0.0.1:1/x"
    for args in (("--shared",), ("--shared", "--group", my_group())):
        result = run_cli("--db", url, "db", "init", *args)
        assert (result.code, result.stdout) == (2, ""), args
        assert result.stderr == (
            "Error: --shared and --group apply to a SQLite file; a PostgreSQL database is "
            "shared through the server's roles and grants\n"
        )
    assert not (tmp_path / "x.db").exists()


def test_while_admins_are_set_only_they_may_init(tmp_path: Path, isolated_env: Path) -> None:
    from resgate.config import os_user

    system = isolated_env / "etc" / "config.toml"  # conftest's stand-in for /etc/resgate
    system.parent.mkdir()
    system.write_text('admins = ["someone-else"]\n')
    db = tmp_path / "lab" / "resgate.db"
    for args in ((), ("--shared",)):
        result = run_cli("--db", str(db), "db", "init", *args)
        assert (result.code, result.stdout) == (4, ""), args
        assert result.stderr == (
            f"Error: only admins may upgrade the database (see admins in {system})\n"
        )
    assert not db.parent.exists()
    system.write_text(f'admins = ["someone-else", "{os_user()}"]\n')
    assert run_cli("--db", str(db), "db", "init", "--shared").code == 0
    assert mode_of(db) == 0o660


@pytest.mark.postgres
def test_init_on_postgresql(pg_database: str) -> None:
    result = run_cli("--db", pg_database, "db", "init", "--json")
    assert result.code == 0, result
    assert json.loads(result.stdout) == {
        "path": pg_database,
        "revision": SCHEMA_HEAD,
        "from": SCHEMA_HEAD,
        "shared": False,
    }
