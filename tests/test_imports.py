"""benchmarks/README.md import discipline, checked in fresh interpreters with -X importtime:
--help, version and completion load neither SQLAlchemy nor Alembic; a command on
a current database loads no Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sqlite_only

HEAVY = ("sqlalchemy", "alembic", "tabulate")


@pytest.fixture(autouse=True)
def outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m resgate` and `python -c` put their working directory first on
    sys.path: run them in tmp_path, not the checkout, so they import the installed
    resgate (or the one PYTHONPATH names) rather than the source tree."""
    monkeypatch.chdir(tmp_path)


def imported(
    env: dict[str, str],
    *args: str,
    extra_env: dict[str, str] | None = None,
    code: int = 0,
    full: bool = False,
) -> tuple[set[str], str]:
    """Top-level packages (every module, with `full`) imported by
    `python -X importtime -m resgate ARGS`, and stdout."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "resgate", *args],
        capture_output=True,
        text=True,
        env=dict(env, **(extra_env or {})),
        timeout=60,
    )
    assert done.returncode == code, done.stderr[-2000:]
    modules = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                modules.add(name if full else name.split(".")[0])
    assert modules, "no -X importtime output"
    return modules, done.stdout


def test_import_resgate_cli_is_light(subprocess_env):
    code = f"import sys, resgate.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args", [["--help"], ["version"], ["--version"], ["pool", "--help"], ["reserve", "--help"]]
)
def test_help_and_version_import_no_database_code(subprocess_env, args, isolated_env: Path):
    modules, stdout = imported(subprocess_env, *args)
    assert "sqlalchemy" not in modules and "alembic" not in modules
    assert stdout
    assert not (isolated_env / "resgate.db").exists()


def test_completion_imports_no_database_code(subprocess_env, isolated_env: Path):
    modules, stdout = imported(
        subprocess_env,
        extra_env={
            "_RESGATE_COMPLETE": "complete_bash",
            "COMP_WORDS": "resgate po",
            "COMP_CWORD": "1",
        },
    )
    assert stdout.split() == ["pool"]
    assert "sqlalchemy" not in modules and "alembic" not in modules
    assert not (isolated_env / "resgate.db").exists()


def test_completing_a_pool_name_imports_no_database_code(subprocess_env, isolated_env: Path):
    # The names come from the database itself, read with the standard sqlite3 module.
    imported(subprocess_env, "pool", "create", "--name", "gpu-box", "--cpu", "4")
    modules, stdout = imported(
        subprocess_env,
        extra_env={
            "_RESGATE_COMPLETE": "complete_bash",
            "COMP_WORDS": "resgate reserve --pool g",
            "COMP_CWORD": "3",
        },
        full=True,
    )
    assert stdout.split() == ["gpu-box"]
    assert "sqlite3" in modules
    assert not {m for m in modules if m.split(".")[0] in ("sqlalchemy", "alembic", "tabulate")}


def test_commands_on_a_current_database_import_no_alembic(subprocess_env):
    # Creating the database needs Alembic (proves the check sees it)...
    modules, _ = imported(subprocess_env, "pool", "create", "--name", "p", "--cpu", "4")
    assert "alembic" in modules and "sqlalchemy" in modules
    modules, _ = imported(subprocess_env, "tenant", "add", "--name", "t")
    assert "alembic" not in modules
    # ...a current one does not.
    for args in (
        ["list"],
        ["list", "--json"],
        ["status"],
        ["pool", "list"],
        ["reserve", "--tenant", "t", "--pool", "p", "--cpu", "1"],
        ["export"],
        ["db", "current"],
    ):
        modules, _ = imported(subprocess_env, *args, full=True)
        assert "alembic" not in modules, args
        # benchmarks/README.md: the PostgreSQL dialect (and asyncpg's asyncio glue) costs a
        # SQLite command tens of milliseconds; a stray postgresql_* option on a
        # model brings it back.
        assert "sqlalchemy.dialects.postgresql" not in modules, args
        assert "sqlalchemy" in modules, args


def test_read_on_a_missing_database_imports_no_alembic(subprocess_env, isolated_env: Path):
    modules, stdout = imported(subprocess_env, "list", "--json")
    assert stdout == "[]\n"
    assert "alembic" not in modules
    assert not (isolated_env / "resgate.db").exists()


def test_every_command_has_its_home() -> None:
    """resgate.cli.HOMES names the module of every top-level command: building that
    module alone gives the command, and the whole tree has no other."""
    import typer

    import resgate.cli as cli

    whole = typer.main.get_command(cli.build())
    assert set(whole.commands) == set(cli.HOMES)  # type: ignore[attr-defined]
    for name, home in cli.HOMES.items():
        alone = typer.main.get_command(cli.build(home))
        assert name in alone.commands, name  # type: ignore[attr-defined]
    assert cli.home_of(["--db", "x.db", "reserve", "--gpu", "1"]) == "reservations"
    assert cli.home_of(["--color=never", "pool", "list"]) == "pools"
    assert cli.home_of(["lst"]) is None and cli.home_of([]) is None
    assert cli.home_of(["res"], completing=True) is None
