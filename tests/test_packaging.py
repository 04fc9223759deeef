"""README "Development": the wheel works on its own (migrations inside), the packaged head
constant matches Alembic's, and the migrations round-trip cleanly."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from harness import REPO

from resgate.store import schema

pytestmark = pytest.mark.sqlite_only


def test_schema_head_constant_matches_alembic():
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(schema.alembic_config()).get_heads()
    assert len(heads) == 1, f"more than one head: {heads}"
    assert schema.SCHEMA_HEAD == schema.script_head() == heads[0]
    assert schema.SCHEMA_HEAD in schema.known_revisions()


def _alembic(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("RESGATE_DB", None)
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={db}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def _schema(path: Path) -> list[tuple[str, str, str]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
            "ORDER BY type, name"
        ).fetchall()
    finally:
        connection.close()


def _revision(path: Path) -> list[tuple[str]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        connection.close()


def test_migrations_round_trip_and_check(cli, tmp_path: Path):
    db = tmp_path / "dev.db"
    _alembic(db, "upgrade", "head")
    assert _revision(db) == [(schema.SCHEMA_HEAD,)]
    upgraded = _schema(db)
    names = {name for _, name, _ in upgraded}
    assert {"pools", "tenants", "reservations", "pool_utilization", "active_reservations"} <= names
    _alembic(db, "downgrade", "base")
    assert _revision(db) == []
    assert {name for _, name, _ in _schema(db)} <= {"alembic_version"}
    _alembic(db, "upgrade", "head")
    assert _schema(db) == upgraded
    done = _alembic(db, "check")
    assert "No new upgrade operations detected" in done.stdout + done.stderr
    # The same schema resgate makes by itself, and resgate uses the result.
    own = tmp_path / "own.db"
    assert cli("--db", str(own), "db", "upgrade").code == 0
    assert _schema(own) == upgraded
    assert cli("--db", str(db), "pool", "create", "--name", "p", "--cpu", "1").code == 0
    result = cli("--db", str(db), "db", "current", "--json")
    assert json.loads(result.stdout) == {"revision": schema.SCHEMA_HEAD, "head": schema.SCHEMA_HEAD}


# ---------------------------------------------------------------- the wheel


def _copy_source(destination: Path) -> Path:
    """The files a wheel is built from, outside the work tree (a build writes
    build/ and *.egg-info beside its source)."""
    source = destination / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for name in ("resgate", "migrations"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    return source


def test_python_m_resgate_works_from_the_checkout_root(tmp_path: Path):
    """In the repository's root the source tree shadows an installed resgate, and the
    source tree has no resgate._migrations: the checkout's migrations/ stand in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESGATE_")}
    env.pop("PYTHONPATH", None)
    db = tmp_path / "fresh.db"
    done = subprocess.run(
        [sys.executable, "-m", "resgate", "--db", str(db), "pool", "create", "--name", "p",
         "--cpu", "1"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith("Pool 'p' created")
    assert db.exists()


@pytest.mark.slow
def test_wheel_installs_and_works_in_a_clean_venv(tmp_path: Path):
    source = _copy_source(tmp_path)
    dist = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [wheel] = dist.glob("resgate-*.whl")
    members = zipfile.ZipFile(wheel).namelist()
    assert "resgate/_migrations/env.py" in members
    assert "resgate/_migrations/script.py.mako" in members
    assert f"resgate/_migrations/versions/{_first_migration()}" in members
    assert not any(m.startswith(("tests/", "migrations/")) for m in members)

    venv = tmp_path / "venv"
    # A clean venv: nothing from this interpreter's site-packages.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RESGATE_"))}
    env["RESGATE_DB"] = str(work / "fresh.db")
    env["HOME"] = str(work)

    def resgate(*args: str) -> str:
        done = subprocess.run(
            [str(venv / "bin" / "resgate"), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            timeout=120,
        )
        assert done.returncode == 0 and done.stderr == "", (args, done)
        return done.stdout

    where = subprocess.run(
        [str(python), "-c", "import resgate, sys; print(resgate.__file__); print(sys.path)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=60,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where
    assert str(REPO) not in where

    assert resgate("pool", "create", "--name", "gpu-box", "--cpu", "8", "--gpu", "2") == (
        "Pool 'gpu-box' created — CPU: 8  Memory: 0MB  GPU: 2\n"
    )
    assert resgate("tenant", "add", "--name", "lab", "--priority", "7") == (
        "Tenant 'lab' registered with priority 7\n"
    )
    created = resgate("reserve", "--tenant", "lab", "--pool", "gpu-box", "--gpu", "1")
    assert created.startswith("Reservation created: ")
    rid = created.split()[2]
    [row] = json.loads(resgate("list", "--json"))
    assert (row["id"], row["tenant"], row["pool"], row["gpu"], row["status"]) == (
        rid,
        "lab",
        "gpu-box",
        1,
        "active",
    )
    assert json.loads(resgate("db", "current", "--json")) == {
        "revision": schema.SCHEMA_HEAD,
        "head": schema.SCHEMA_HEAD,
    }
    done = subprocess.run(
        [str(python), "-m", "resgate", "version"],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=60,
    )
    assert done.stdout.startswith("resgate ")


def _first_migration() -> str:
    names = sorted(p.name for p in (REPO / "migrations" / "versions").glob("0*.py"))
    assert names
    return names[0]
