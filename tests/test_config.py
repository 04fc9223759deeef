"""README "Configuration files": the system file, the user file (or RESGATE_CONFIG),
their keys and types, the precedence option > env > user > system > default for
every setting, `resgate config`, and that a bad file is exit 2 before anything is
opened while --help and version never read one."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from helpers import Cli, js, ok, out, write_lock_held

import resgate.config
from resgate.config import os_user

pytestmark = pytest.mark.sqlite_only

REPO = Path(__file__).resolve().parent.parent
ANSI = "\x1b["


@pytest.fixture
def system(isolated_env: Path) -> Path:
    """Where in-process commands look for /etc/resgate/config.toml (conftest)."""
    return isolated_env / "etc" / "config.toml"


@pytest.fixture
def user(isolated_env: Path) -> Path:
    return isolated_env / "home" / ".config" / "resgate" / "config.toml"


@pytest.fixture
def no_db_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """RESGATE_DB unset, so the files and the default can speak."""
    monkeypatch.delenv("RESGATE_DB")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def setting(cli: Cli, name: str) -> tuple[object, str]:
    shown = js(cli, "config")[name]
    return shown["value"], shown["source"]


def databases(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".db" in p.name)


def refused(cli: Cli, root: Path, message: str, *args: str) -> None:
    """Exit 2, one `Error:` line saying `message`, nothing on stdout, no database."""
    result = cli(*(args or ("pool", "create", "--name", "p", "--cpu", "1")))
    assert (result.code, result.stdout) == (2, ""), result
    assert result.stderr == f"Error: {message}\n"
    assert databases(root) == []


def test_the_fixture_keeps_the_machine_s_files_out(system: Path, user: Path) -> None:
    assert system == resgate.config.SYSTEM_FILE
    assert "RESGATE_CONFIG" not in os.environ and "XDG_CONFIG_HOME" not in os.environ
    assert resgate.config.user_file() == user


# ---------------------------------------------------------------- precedence: db


def test_db_option_over_env_over_user_over_system_over_default(
    cli: Cli, system: Path, user: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(system, 'db = "/srv/system.db"\n')
    write(user, 'db = "/srv/user.db"\n')
    monkeypatch.setenv("RESGATE_DB", "/srv/env.db")
    assert setting(cli, "db") == ("/srv/env.db", "env")
    assert js(cli, "--db", "/srv/option.db", "config")["db"] == {
        "value": "/srv/option.db",
        "source": "option",
    }
    monkeypatch.setenv("RESGATE_DB", "")  # empty is unset, as it always was
    assert setting(cli, "db") == ("/srv/user.db", str(user))
    user.unlink()
    assert setting(cli, "db") == ("/srv/system.db", str(system))
    system.unlink()
    default = isolated_env / "home" / "data" / "resgate" / "resgate.db"
    assert setting(cli, "db") == (str(default), "default")


def test_a_relative_db_is_relative_to_the_file_s_directory(
    cli: Cli, system: Path, user: Path, no_db_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(system, 'db = "data/gpu.db"\n')
    monkeypatch.chdir(user.parents[2])  # HOME, not the file's directory
    assert setting(cli, "db") == (str(system.parent / "data" / "gpu.db"), str(system))
    write(user, 'db = "../mine.db"\n')
    assert setting(cli, "db")[0] == str(user.parent / ".." / "mine.db")


def test_a_db_url_in_a_file_is_kept_and_its_password_hidden(
    cli: Cli, system: Path, no_db_env: None
) -> None:
    write(system, 'db = "postgresql+psycopg://u:s3cret@db.example/resgate"\n')
    text = out(cli, "config")
    assert "s3cret" not in text
    assert "db  postgresql+psycopg://u:***@db.example/resgate  (" in text


def test_a_db_in_a_file_is_the_database_commands_use(
    cli: Cli, system: Path, isolated_env: Path, no_db_env: None
) -> None:
    write(system, 'db = "data/gpu.db"\n')
    (system.parent / "data").mkdir()
    ok(cli, "pool", "create", "--name", "shared", "--cpu", "4")
    assert databases(isolated_env) == [system.parent / "data" / "gpu.db"]
    assert [pool["name"] for pool in js(cli, "pool", "list")] == ["shared"]
    assert "revision" in out(cli, "db", "current")
    # --db still wins: another file, which has no pool.
    assert js(cli, "--db", str(isolated_env / "other.db"), "pool", "list") == []


# ---------------------------------------------------------------- precedence: busy timeout


def test_busy_timeout_env_over_user_over_system_over_default(
    cli: Cli, system: Path, user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert setting(cli, "busy_timeout") == (10.0, "default")
    write(system, "busy_timeout = 30\n")
    assert setting(cli, "busy_timeout") == (30.0, str(system))
    write(user, "busy_timeout = 2.5\n")
    assert setting(cli, "busy_timeout") == (2.5, str(user))
    monkeypatch.setenv("RESGATE_BUSY_TIMEOUT", "7")
    assert setting(cli, "busy_timeout") == (7.0, "env")


def _reserve_while_locked(cli: Cli) -> tuple[int, str, float]:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "8")
    ok(cli, "tenant", "add", "--name", "t")
    with write_lock_held():
        started = time.monotonic()
        result = cli("reserve", "--tenant", "t", "--pool", "p", "--cpu", "1")
        elapsed = time.monotonic() - started
    return result.code, result.stderr, elapsed


def test_a_file_s_busy_timeout_is_how_long_a_writer_waits(cli: Cli, user: Path) -> None:
    write(user, "busy_timeout = 0.3\n")
    code, stderr, elapsed = _reserve_while_locked(cli)
    assert code == 5
    assert "the write lock was not free within 0.3s" in stderr
    assert 0.25 < elapsed < 5


def test_the_env_busy_timeout_beats_the_file_s(
    cli: Cli, system: Path, user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(system, "busy_timeout = 600\n")
    write(user, "busy_timeout = 300\n")
    monkeypatch.setenv("RESGATE_BUSY_TIMEOUT", "0")
    code, stderr, elapsed = _reserve_while_locked(cli)
    assert code == 5 and "within 0s" in stderr and elapsed < 3


def test_the_user_file_s_busy_timeout_beats_the_system_file_s(
    cli: Cli, system: Path, user: Path
) -> None:
    write(system, "busy_timeout = 600\n")
    write(user, "busy_timeout = 0\n")
    code, stderr, elapsed = _reserve_while_locked(cli)
    assert code == 5 and "within 0s" in stderr and elapsed < 3


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-1", "busy_timeout must be seconds, got -1"),
        ("nan", "busy_timeout must be seconds, got nan"),
        ("inf", "busy_timeout must be seconds, got inf"),
        ("2147483.648", "busy_timeout must be at most 2147483.647 seconds, got 2147483.648"),
        ('"5"', "busy_timeout must be a number of seconds, got the string '5'"),
        ("true", "busy_timeout must be a number of seconds, got a boolean"),
    ],
)
def test_a_bad_busy_timeout_in_a_file(
    cli: Cli, user: Path, isolated_env: Path, value: str, reason: str
) -> None:
    write(user, f"busy_timeout = {value}\n")
    refused(cli, isolated_env, f"{user}: {reason}")


# ---------------------------------------------------------------- precedence: colour


@pytest.fixture
def warning_pool(cli: Cli) -> None:
    """A pool at 75 % CPU: `pool list` paints its health when colour is on."""
    ok(cli, "pool", "create", "--name", "p", "--cpu", "4")
    ok(cli, "tenant", "add", "--name", "t")
    ok(cli, "reserve", "--tenant", "t", "--pool", "p", "--cpu", "3")


def painted(cli: Cli, *options: str) -> bool:
    return ANSI in out(cli, *options, "pool", "list")


def test_color_option_over_env_over_user_over_system_over_default(
    cli: Cli, warning_pool: None, system: Path, user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a terminal: auto means plain.
    assert not painted(cli) and setting(cli, "color") == ("auto", "default")
    write(system, 'color = "always"\n')
    assert painted(cli) and setting(cli, "color") == ("always", str(system))
    write(user, 'color = "never"\n')
    assert not painted(cli) and setting(cli, "color") == ("never", str(user))
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert painted(cli) and setting(cli, "color") == ("always", "env")
    assert not painted(cli, "--color", "never")
    assert js(cli, "--color", "never", "config")["color"] == {"value": "never", "source": "option"}
    monkeypatch.delenv("FORCE_COLOR")
    write(user, 'color = "always"\n')
    monkeypatch.setenv("NO_COLOR", "1")
    assert not painted(cli) and setting(cli, "color") == ("never", "env")
    assert painted(cli, "--color", "always")


# ---------------------------------------------------------------- tenant, pool, admins


def test_tenant_and_pool_env_over_user_over_system(
    cli: Cli, system: Path, user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert setting(cli, "tenant") == (None, "default")
    write(system, 'tenant = "ml"\npool = "box"\n')
    assert setting(cli, "tenant") == ("ml", str(system))
    write(user, 'tenant = "alice"\n')
    assert setting(cli, "tenant") == ("alice", str(user))
    assert setting(cli, "pool") == ("box", str(system))  # per key, not per file
    monkeypatch.setenv("RESGATE_TENANT", "job-tenant")
    monkeypatch.setenv("RESGATE_POOL", "job-pool")
    assert setting(cli, "tenant") == ("job-tenant", "env")
    assert setting(cli, "pool") == ("job-pool", "env")


def test_admins_come_from_the_system_file_whatever_resgate_config_says(
    cli: Cli, system: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(system, 'admins = ["alice", "root"]\n')
    for chosen in ("", str(write(isolated_env / "other.toml", 'tenant = "x"\n'))):
        monkeypatch.setenv("RESGATE_CONFIG", chosen)
        assert setting(cli, "admins") == (["alice", "root"], str(system))
    # RESGATE_CONFIG naming the system file itself reads it once, as the system file.
    monkeypatch.setenv("RESGATE_CONFIG", str(system))
    assert setting(cli, "admins") == (["alice", "root"], str(system))


@pytest.mark.parametrize("where", ["user", "chosen"])
def test_admins_anywhere_else_is_exit_2_naming_the_file(
    cli: Cli,
    user: Path,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    path = user if where == "user" else isolated_env / "team.toml"
    if where == "chosen":
        monkeypatch.setenv("RESGATE_CONFIG", str(path))
    write(path, 'admins = ["mallory"]\n')
    reason = f"admins may be set only in the system file {resgate.config.SYSTEM_FILE}"
    refused(cli, isolated_env, f"{path}: {reason}")
    refused(cli, isolated_env, f"{path}: {reason}", "config")


# ---------------------------------------------------------------- which files


def test_resgate_config_path_replaces_the_user_file(
    cli: Cli, system: Path, user: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(system, 'tenant = "sys"\npool = "sys-pool"\n')
    write(user, 'tenant = "mine"\n')
    chosen = write(isolated_env / "chosen.toml", 'pool = "chosen-pool"\n')
    monkeypatch.setenv("RESGATE_CONFIG", str(chosen))
    assert setting(cli, "tenant") == ("sys", str(system))  # the user file is not read
    assert setting(cli, "pool") == ("chosen-pool", str(chosen))


def test_resgate_config_empty_reads_no_user_file(
    cli: Cli, system: Path, user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(system, 'tenant = "sys"\n')
    write(user, "this is not toml\n")
    monkeypatch.setenv("RESGATE_CONFIG", "")
    assert setting(cli, "tenant") == ("sys", str(system))


def test_xdg_config_home_names_the_user_file(
    cli: Cli, user: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(user, 'tenant = "home-config"\n')
    xdg = write(isolated_env / "xdg" / "resgate" / "config.toml", 'tenant = "xdg"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(isolated_env / "xdg"))
    assert setting(cli, "tenant") == ("xdg", str(xdg))


def test_missing_files_are_fine(
    cli: Cli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESGATE_CONFIG", str(isolated_env / "nowhere.toml"))
    data = js(cli, "config")
    assert {name: data[name]["source"] for name in data if name != "user"} == {
        "db": "env",
        "tenant": "default",
        "pool": "default",
        "busy_timeout": "default",
        "color": "default",
        "admins": "default",
    }
    ok(cli, "pool", "create", "--name", "p", "--cpu", "1")


# ---------------------------------------------------------------- bad files


def test_a_parse_error_names_the_file_and_the_line(
    cli: Cli, user: Path, isolated_env: Path
) -> None:
    write(user, 'color = "never"\ntenant = \n')
    result = cli("pool", "list")
    assert (result.code, result.stdout) == (2, "")
    assert re.fullmatch(
        rf"Error: {re.escape(str(user))}: .*\(at line 2, column \d+\)\n", result.stderr
    ), result.stderr
    assert databases(isolated_env) == []


def test_an_unknown_key(cli: Cli, system: Path, isolated_env: Path) -> None:
    write(system, 'db = "x.db"\ncolour = "never"\n')
    refused(
        cli,
        isolated_env,
        f"{system}: unknown key 'colour' (known: db, tenant, pool, busy_timeout, color, admins)",
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("db = 5", "db must be a string, got the number 5"),
        ('db = ""', "db must not be empty"),
        ("tenant = 3", "tenant must be a string, got the number 3"),
        ('pool = ["a"]', "pool must be a string, got a list"),
        ("pool = { name = 'a' }", "pool must be a string, got a table"),
        ("tenant = 2026-01-01", "tenant must be a string, got a date"),
        ('color = "blue"', "color must be auto, always or never, got 'blue'"),
        ("color = true", "color must be a string, got a boolean"),
        ('admins = "alice"', "admins must be a list of user names, got the string 'alice'"),
        ('admins = ["alice", 1]', "admins must be a list of user names, got a list"),
    ],
)
def test_a_value_of_the_wrong_type(
    cli: Cli, system: Path, isolated_env: Path, line: str, reason: str
) -> None:
    write(system, line + "\n")
    refused(cli, isolated_env, f"{system}: {reason}")


def test_a_file_that_is_not_utf8(cli: Cli, user: Path, isolated_env: Path) -> None:
    user.parent.mkdir(parents=True)
    user.write_bytes(b'tenant = "\xff"\n')
    refused(cli, isolated_env, f"{user}: not UTF-8 text")


def test_a_file_that_cannot_be_read_is_named(cli: Cli, user: Path, isolated_env: Path) -> None:
    user.mkdir(parents=True)  # a directory where the file should be
    refused(cli, isolated_env, f"{user}: cannot read: Is a directory")


def test_a_file_without_read_permission_is_named(
    cli: Cli, system: Path, isolated_env: Path
) -> None:
    """Run by a user the file's mode shuts out: as root (CI) a forked child drops to
    `nobody` first, since root reads any file."""
    write(system, 'tenant = "x"\n').chmod(0)
    isolated_env.chmod(0o755)
    for parent in system.parents:
        if parent == isolated_env:
            break
        parent.chmod(0o755)
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            result = cli("config")
            os.write(writable, f"{result.code}\n{result.stdout}\n{result.stderr}".encode())
        finally:
            os._exit(0)
    os.close(writable)
    with os.fdopen(readable) as report:
        code, stdout, stderr = report.read().split("\n", 2)
    os.waitpid(child, 0)
    assert (code, stdout) == ("2", ""), stderr
    assert stderr == f"Error: {system}: cannot read: Permission denied\n"


def test_a_bad_file_is_refused_by_every_kind_of_command(
    cli: Cli, user: Path, isolated_env: Path
) -> None:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "1")  # a database, before the file
    write(user, "nonsense = 1\n")
    known = "db, tenant, pool, busy_timeout, color, admins"
    message = f"{user}: unknown key 'nonsense' (known: {known})"
    for args in (["pool", "list"], ["status"], ["list"], ["db", "current"], ["db", "upgrade"]):
        result = cli(*args)
        assert (result.code, result.stdout, result.stderr) == (2, "", f"Error: {message}\n"), args


def test_syntax_is_checked_before_the_configuration(cli: Cli, user: Path) -> None:
    write(user, "nonsense = 1\n")
    result = cli("reserve", "--tenant", "t", "--pool", "p", "--cpu", "abc")
    assert result.code == 2
    assert result.stderr.startswith("Error: invalid value for --cpu: 'abc'")


@pytest.mark.parametrize(
    "args", [["--help"], ["version"], ["--version"], ["pool", "--help"], ["config", "--help"]]
)
def test_help_and_version_never_read_the_files(
    cli: Cli, system: Path, user: Path, args: list[str]
) -> None:
    write(system, "[[[ broken\n")
    write(user, "also = broken = twice\n")
    result = cli(*args)
    assert result.code == 0, result
    assert result.stdout and result.stderr == ""


# ---------------------------------------------------------------- resgate config


def test_config_text(
    cli: Cli, system: Path, user: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESGATE_DB")
    default = isolated_env / "home" / "data" / "resgate" / "resgate.db"
    assert out(cli, "config").splitlines() == [
        f"db  {default}  (default)",
        "tenant  -  (default)",
        "pool  -  (default)",
        "busy_timeout  10  (default)",
        "color  auto  (default)",
        "admins  -  (default)",
        f"user  {os_user()}",
    ]
    write(system, 'db = "/srv/gpu/resgate.db"\nadmins = ["alice", "bob"]\nbusy_timeout = 2.5\n')
    write(user, 'tenant = "ml"\n')
    monkeypatch.setenv("RESGATE_POOL", "box")
    assert out(cli, "--color", "never", "config").splitlines() == [
        f"db  /srv/gpu/resgate.db  ({system})",
        f"tenant  ml  ({user})",
        "pool  box  (env)",
        f"busy_timeout  2.5  ({system})",
        "color  never  (option)",
        f"admins  alice, bob  ({system})",
        f"user  {os_user()}",
    ]


def test_config_json(cli: Cli, system: Path, isolated_env: Path) -> None:
    write(system, 'tenant = "ml"\nadmins = []\ncolor = "always"\n')
    assert js(cli, "config") == {
        "db": {"value": str(isolated_env / "resgate.db"), "source": "env"},
        "tenant": {"value": "ml", "source": str(system)},
        "pool": {"value": None, "source": "default"},
        "busy_timeout": {"value": 10.0, "source": "default"},
        "color": {"value": "always", "source": str(system)},
        "admins": {"value": [], "source": str(system)},
        "user": os_user(),
    }


def test_the_user_is_the_os_user_never_resgate_actor(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pwd

    monkeypatch.setenv("RESGATE_ACTOR", "cron@host1")
    monkeypatch.setenv("LOGNAME", "someone-else")
    monkeypatch.setenv("USER", "someone-else")
    assert js(cli, "config")["user"] == pwd.getpwuid(os.geteuid()).pw_name
    assert out(cli, "config").splitlines()[-1] == f"user  {pwd.getpwuid(os.geteuid()).pw_name}"


def test_config_opens_no_database(
    cli: Cli, system: Path, isolated_env: Path, no_db_env: None
) -> None:
    nowhere = isolated_env / "missing-dir" / "resgate.db"
    write(system, f'db = "{nowhere}"\n')
    assert setting(cli, "db") == (str(nowhere), str(system))
    assert not nowhere.parent.exists()
    # Nor the default, nor a file whose directory exists.
    there = isolated_env / "resgate.db"
    assert js(cli, "--db", str(there), "config")["db"]["value"] == str(there)
    assert databases(isolated_env) == []
    # A write command on the same settings would have failed on the directory.
    assert cli("pool", "create", "--name", "p", "--cpu", "1").code == 1


# ---------------------------------------------------------------- the README


def _block(text: str, after: str, fence: str) -> str:
    start = text.index(fence, text.index(after)) + len(fence)
    return text[start : text.index("```", start)]


def test_the_readme_sample_gives_the_readme_output(cli: Cli, system: Path, no_db_env: None) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Configuration files") :]
    write(system, _block(section, "A sample", "```toml\n"))
    start = section.index("```\ndb  ") + len("```\n")
    shown = section[start : section.index("```", start)].splitlines()
    expected = [line.replace("/etc/resgate/config.toml", str(system)) for line in shown]
    assert expected[-1].startswith("user  ")
    assert out(cli, "config").splitlines() == [*expected[:-1], f"user  {os_user()}"]
    # The --json the README sketches.
    data = json.loads(out(cli, "config", "--json"))
    assert list(data) == ["db", "tenant", "pool", "busy_timeout", "color", "admins", "user"]
