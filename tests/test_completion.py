"""Shell completion through the installed `resgate` script, as a shell's script calls it
(README "Help and completion"): the scripts, and what a TAB offers: live pool and tenant
names, active reservation ids and choice values, read read-only from the SQLite file the
settings name; nothing, and no change to anything, wherever that cannot be done."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from harness import resgate_command
from helpers import ok, reserve_id

from resgate.cli import build, completion, invoke

pytestmark = pytest.mark.sqlite_only

SHELL_PROTOCOL = ("_RESGATE_COMPLETE", "COMP_WORDS", "COMP_CWORD", "_TYPER_COMPLETE_ARGS")


def offered(env: dict[str, str], line: str, shell: str = "bash", **extra: str) -> list[str]:
    """The values a TAB at the end of `line` offers in `shell`, through the installed
    script, with the variables that shell's completion script sets."""
    env = {k: v for k, v in env.items() if k not in SHELL_PROTOCOL}
    env.update(extra, _RESGATE_COMPLETE=f"complete_{shell}")
    if shell == "bash":
        words = line.split()
        env.update(COMP_WORDS=line, COMP_CWORD=str(len(words) - (not line.endswith(" "))))
    else:
        env.update(_TYPER_COMPLETE_ARGS=line, _TYPER_COMPLETE_FISH_ACTION="get-args")
    done = subprocess.run(
        resgate_command(), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    return parsed(done.stdout, shell)


def parsed(stdout: str, shell: str) -> list[str]:
    if shell == "bash":
        return stdout.split()
    if shell == "fish":
        return [line.split("\t")[0] for line in stdout.splitlines() if line]
    # zsh: `_arguments '*: :(("value":"help" "value"))'`, or `_files` for none.
    if stdout.strip() == "_files":
        return []
    return re.findall(r'^"((?:[^"]|"")*)"', stdout.split("((", 1)[1], re.MULTILINE)


@pytest.fixture
def live(cli, isolated_env: Path) -> dict[str, str]:
    """Through resgate itself: two live pools and a deleted one, two live tenants and a
    removed one, two active reservations, a released one and one past its end that no
    sweep has expired yet."""
    for name, cpu in (("gpu-box", "8"), ("cpu-farm", "64"), ("old-box", "1")):
        ok(cli, "pool", "create", "--name", name, "--cpu", cpu)
    for name in ("alice", "bob", "carol"):
        ok(cli, "tenant", "add", "--name", name)
    ok(cli, "pool", "delete", "--name", "old-box")
    ok(cli, "tenant", "remove", "--name", "carol")
    ids = {
        "alice": reserve_id(cli, "alice", "gpu-box", cpu=1),
        "bob": reserve_id(cli, "bob", "cpu-farm", cpu=2, ttl="1h"),
        "released": reserve_id(cli, "alice", "cpu-farm", cpu=1),
        "due": reserve_id(cli, "bob", "gpu-box", cpu=1, ttl="1h"),
    }
    ok(cli, "unreserve", "--id", ids["released"])
    with sqlite3.connect(isolated_env / "resgate.db") as db:
        db.execute(
            "UPDATE reservations SET expires_at = '2000-01-01 00:00:00.000000' WHERE id = ?",
            (ids["due"],),
        )
    db.close()
    return ids


# ---------------------------------------------------------------- the scripts


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(subprocess_env, shell: str):
    done = subprocess.run(
        [*resgate_command(), "completion", shell],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip()
    assert "resgate" in done.stdout and "_RESGATE_COMPLETE" in done.stdout


def test_an_unknown_shell_is_a_usage_error(subprocess_env):
    done = subprocess.run(
        [*resgate_command(), "completion", "ksh"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "ksh" in done.stderr and "bash" in done.stderr


def test_typers_own_completion_options_stay(subprocess_env):
    done = subprocess.run(
        [*resgate_command(), "--help"], env=subprocess_env, capture_output=True, text=True
    )
    assert "--install-completion" in done.stdout and "--show-completion" in done.stdout
    assert offered(subprocess_env, "resgate comp") == ["completion"]


# ---------------------------------------------------------------- what a TAB offers


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("resgate reserve --pool ", ["cpu-farm", "gpu-box"]),
        ("resgate reserve -p gp", ["gpu-box"]),
        ("resgate list --pool ", ["cpu-farm", "gpu-box"]),
        ("resgate reserve --tenant ", ["alice", "bob"]),
        ("resgate reserve -t b", ["bob"]),
        ("resgate preempt --target ", ["alice", "bob"]),
        ("resgate pool resize --name ", ["cpu-farm", "gpu-box"]),
        ("resgate pool delete ", ["cpu-farm", "gpu-box"]),
        ("resgate tenant update --name a", ["alice"]),
        ("resgate tenant remove ", ["alice", "bob"]),
        # A new name: nothing to offer.
        ("resgate pool create --name ", []),
        ("resgate tenant add ", []),
        ("resgate export --format ", ["json", "csv"]),
        ("resgate --color ", ["auto", "always", "never"]),
        ("resgate list --status ", ["upcoming", "active", "released", "expired", "preempted"]),
        ("resgate completion ", ["bash", "zsh", "fish"]),
    ],
)
def test_names_and_choices(subprocess_env, live, line: str, expected: list[str]):
    assert offered(subprocess_env, line) == expected


def test_active_reservation_ids_only(subprocess_env, live):
    active = [live["alice"], live["bob"]]  # by creation: not released, not past their end
    assert offered(subprocess_env, "resgate unreserve ") == active
    assert offered(subprocess_env, "resgate unreserve --id ") == active
    assert offered(subprocess_env, f"resgate unreserve {live['alice']} ") == active
    assert offered(subprocess_env, "resgate extend ") == active
    prefix = live["bob"][:5].upper()  # any case, as ids are read
    assert offered(subprocess_env, f"resgate extend --id {prefix}") == [live["bob"]]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish(subprocess_env, live, shell: str):
    assert offered(subprocess_env, "resgate reserve --pool ", shell) == ["cpu-farm", "gpu-box"]
    assert offered(subprocess_env, "resgate reserve -t a", shell) == ["alice"]
    assert offered(subprocess_env, "resgate unreserve ", shell) == [live["alice"], live["bob"]]
    assert offered(subprocess_env, "resgate export --format c", shell) == ["csv"]


def test_the_database_the_command_line_names(subprocess_env, live, isolated_env: Path):
    elsewhere = dict(subprocess_env, RESGATE_DB=str(isolated_env / "missing.db"))
    assert offered(elsewhere, "resgate reserve --pool ") == []
    db = str(isolated_env / "resgate.db")
    for line in (
        f"resgate --db {db} reserve --pool ",
        f"resgate reserve --db {db} --pool ",
        f"resgate reserve --db={db} -p ",
    ):
        assert offered(elsewhere, line) == ["cpu-farm", "gpu-box"], line
    # After `--` it is the job's own command line.
    assert offered(elsewhere, "resgate run -p gpu-box -- job --db x --pool ") == []


def test_the_database_a_configuration_file_names(subprocess_env, live, isolated_env: Path):
    config = isolated_env / "config.toml"
    config.write_text('db = "resgate.db"\n')  # relative to the file's directory
    env = {k: v for k, v in subprocess_env.items() if k != "RESGATE_DB"}
    env["RESGATE_CONFIG"] = str(config)
    assert offered(env, "resgate reserve --pool ") == ["cpu-farm", "gpu-box"]
    config.write_text("db = 3\n")  # a bad file: nothing, and no error shown
    assert offered(env, "resgate reserve --pool ") == []


# ---------------------------------------------------------------- nothing, and no change


def test_nothing_for_a_postgresql_url(subprocess_env):
    env = dict(subprocess_env, RESGATE_DB="postgresql+psycopg://u:secret@127.0.0.1:9/none")
    assert offered(env, "resgate reserve --pool ") == []
    assert offered(env, "resgate export --format ") == ["json", "csv"]  # choices still


def test_nothing_for_a_missing_file_and_none_is_created(subprocess_env, isolated_env: Path):
    before = sorted(p.name for p in isolated_env.rglob("*"))
    assert offered(subprocess_env, "resgate reserve --pool ") == []
    assert offered(subprocess_env, "resgate unreserve ") == []
    missing = isolated_env / "nowhere" / "x.db"
    assert offered(subprocess_env, f"resgate --db {missing} reserve -p ") == []
    assert sorted(p.name for p in isolated_env.rglob("*")) == before
    # The default path, with no RESGATE_DB: not created either, nor its directory.
    env = {k: v for k, v in subprocess_env.items() if k != "RESGATE_DB"}
    assert offered(env, "resgate reserve --pool ") == []
    assert not (isolated_env / "home" / "data" / "resgate").exists()


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE pools (name TEXT, deleted_at TEXT)")
        db.execute("INSERT INTO pools VALUES ('theirs', NULL)")
    db.close()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p: p.write_text("not a database\n" * 50), id="text"),
        pytest.param(
            lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000), id="corrupt"
        ),
        pytest.param(_foreign, id="another-applications-sqlite"),
        pytest.param(lambda p: p.mkdir(), id="directory"),
        pytest.param(lambda p: os.mkfifo(p), id="fifo"),
    ],
)
def test_nothing_for_what_is_not_a_resgate_database(subprocess_env, isolated_env: Path, make):
    path = isolated_env / "resgate.db"
    make(path)
    before = _snapshot(isolated_env)
    assert offered(subprocess_env, "resgate reserve --pool ") == []
    assert offered(subprocess_env, "resgate unreserve ") == []
    assert _snapshot(isolated_env) == before


def _snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file beside the database: name, mtime, size and bytes."""
    found = {}
    for path in sorted(directory.iterdir()):
        info = path.lstat()
        content = path.read_bytes() if path.is_file() else b""
        found[path.name] = (info.st_mtime_ns, info.st_size, content)
    return found


def test_completion_never_writes(subprocess_env, live, isolated_env: Path):
    db = isolated_env / "resgate.db"
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    before = _snapshot(isolated_env)
    for line in ("resgate reserve --pool ", "resgate reserve -t ", "resgate unreserve "):
        assert offered(subprocess_env, line)
    assert _snapshot(isolated_env) == before  # no -wal, no -shm, not a byte changed


def test_a_commit_still_in_the_wal_is_seen(subprocess_env, live, isolated_env: Path):
    """With the file open elsewhere (its -wal and -shm there), it is read as it is now."""
    holder = sqlite3.connect(isolated_env / "resgate.db", isolation_level=None)
    try:
        holder.execute("PRAGMA wal_autocheckpoint = 0")
        holder.execute(
            "INSERT INTO pools (name, cpu, memory, gpu, created_at) "
            "VALUES ('new-box', 1, 0, 0, '2026-01-01 00:00:00.000000')"
        )
        assert Path(f"{isolated_env / 'resgate.db'}-wal").exists()
        assert offered(subprocess_env, "resgate reserve --pool ") == [
            "cpu-farm",
            "gpu-box",
            "new-box",
        ]
    finally:
        holder.close()


def test_a_locked_database_offers_nothing_quickly(subprocess_env, live, isolated_env: Path):
    """A writer in the middle of a transaction that changed the schema: the read waits a
    moment for it, then gives up without a word."""
    holder = sqlite3.connect(isolated_env / "resgate.db", isolation_level=None)
    try:
        holder.execute("PRAGMA journal_mode = DELETE")  # a rollback journal: readers wait
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO tenants (name, priority, created_at) VALUES ('x', 5, '')")
        assert offered(subprocess_env, "resgate reserve --tenant ") == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# ---------------------------------------------------------------- the quick answer


def _name_options(command, path: tuple[str, ...] = ()):
    """(command words, option spelling) for every option that offers names."""
    for param in command.params:
        for spelling in param.opts:
            if spelling in completion.OPTION_SOURCES:
                yield path, spelling
    for name, sub in getattr(command, "commands", {}).items():
        yield from _name_options(sub, (*path, name))


def _answer(monkeypatch, capsys, line: str, shell: str, quick: bool) -> str:
    with monkeypatch.context() as m:
        m.setenv("_RESGATE_COMPLETE", f"complete_{shell}")
        m.setenv("COMP_WORDS", line)
        m.setenv("COMP_CWORD", str(len(line.split()) - (not line.endswith(" "))))
        m.setenv("_TYPER_COMPLETE_ARGS", line)
        m.setenv("_TYPER_COMPLETE_FISH_ACTION", "get-args")
        if not quick:
            m.setattr(completion, "quick_answer", lambda: False)
        try:
            assert invoke([]) == 0 and quick
        except SystemExit as exc:
            assert exc.code == 0 and not quick  # the full path ends in Click's sys.exit
    return capsys.readouterr().out


def test_the_quick_answer_is_the_full_paths_answer(live, monkeypatch, capsys):
    """Every option that offers names, in every shell: the answer given without building
    the command tree reads exactly as the one the tree gives."""
    cases = sorted(set(_name_options(typer.main.get_command(build()))))
    assert len(cases) > 20
    for path, spelling in cases:
        for typed in ("", "g", "a"):
            line = " ".join(("resgate", *path, spelling, typed))
            line = line if typed else line + " "
            for shell in ("bash", "zsh", "fish"):
                quick = _answer(monkeypatch, capsys, line, shell, quick=True)
                full = _answer(monkeypatch, capsys, line, shell, quick=False)
                assert quick == full, (line, shell)
    both = _answer(monkeypatch, capsys, "resgate reserve --pool ", "bash", quick=True)
    assert both.split() == ["cpu-farm", "gpu-box"]


def test_the_quick_answer_builds_no_command(subprocess_env, live):
    code = (
        "import sys; from resgate.cli import invoke; code = invoke([]);"
        " print(sorted(m for m in sys.modules if m.startswith('resgate.cli.')), code)"
    )
    env = dict(
        subprocess_env,
        _RESGATE_COMPLETE="complete_bash",
        COMP_WORDS="resgate reserve --pool ",
        COMP_CWORD="3",
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    *names, loaded = done.stdout.splitlines()
    assert names == ["cpu-farm", "gpu-box"]
    assert "resgate.cli.reservations" not in loaded and "resgate.cli.completion" in loaded
    assert loaded.endswith(" 0")
