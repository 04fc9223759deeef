"""Shared fixtures. No test ever touches a real user's data: RESGATE_DB, HOME and
XDG_DATA_HOME point into a temporary directory for every test."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from harness import env
from helpers import Engine, Result, pg_admin, run_cli

from resgate.clock import FixedClock
from resgate.store.database import open_database, resolve_target


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("RESGATE_DB", str(tmp_path / "resgate.db"))
    for name in (
        "NO_COLOR",
        "FORCE_COLOR",
        "RESGATE_BUSY_TIMEOUT",
        "RESGATE_SYNCHRONOUS",
        "RESGATE_DEBUG",
        "RESGATE_ACTOR",
        "RESGATE_CONFIG",
        "RESGATE_TENANT",
        "RESGATE_POOL",
        "XDG_CONFIG_HOME",  # the user file is then HOME/.config/resgate/config.toml
    ):
        monkeypatch.delenv(name, raising=False)
    # In-process commands read this instead of /etc/resgate/config.toml (missing
    # unless a test writes it); a subprocess still reads the machine's.
    monkeypatch.setattr("resgate.config.SYSTEM_FILE", tmp_path / "etc" / "config.toml")
    return tmp_path


# ---------------------------------------------------------------- backends
#
# Modules that hold for both databases say `pytestmark = pytest.mark.usefixtures("backend")`:
# each of their tests then runs on SQLite and on a real PostgreSQL server, with
# RESGATE_DB pointing at a fresh database. Tests marked `sqlite_only` run once.
# The server comes from RESGATE_TEST_POSTGRES_URL (as .ci/run sets it), else the
# suite starts its own throwaway one when PostgreSQL's binaries are installed.


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        if item.get_closest_marker("root") and os.geteuid() != 0:
            # Device nodes and chown need root, as CI runs (.ci/run); said here, once,
            # for every such test, and shown in the summary as a skip.
            item.add_marker(pytest.mark.skip(reason="needs root (CI runs as root)"))
        callspec = getattr(item, "callspec", None)
        on_pg = callspec is not None and callspec.params.get("backend") == "postgresql"
        (dropped if on_pg and item.get_closest_marker("sqlite_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


_skipped_on_postgres: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "postgres" in report.keywords:
        _skipped_on_postgres.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI promises the PostgreSQL half of the suite ran: a skip there fails the run.
    if os.environ.get("RESGATE_REQUIRE_POSTGRES") == "1" and _skipped_on_postgres:
        print(
            f"\n{len(_skipped_on_postgres)} PostgreSQL test(s) were skipped, "
            f"but RESGATE_REQUIRE_POSTGRES=1: {_skipped_on_postgres[:5]}"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a PostgreSQL server (no database name)."""
    url = os.environ.get("RESGATE_TEST_POSTGRES_URL")
    if url:
        yield url.rstrip("/")
        return
    import pgserver

    if not pgserver.available():
        if os.environ.get("RESGATE_REQUIRE_POSTGRES") == "1":
            pytest.fail(
                "PostgreSQL is required (RESGATE_REQUIRE_POSTGRES=1) but initdb/pg_ctl "
                "are not installed"
            )
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    directory = Path(tempfile.mkdtemp(prefix="resgate-pg-"))
    try:
        yield pgserver.start(directory)
    finally:
        pgserver.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> str:
    """A database migrated to head once; each test copies it (fast)."""
    name = f"resgate_template_{os.getpid()}"
    with pg_admin(pg_server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    open_database(resolve_target(f"{pg_server}/{name}"), write=True).dispose()
    return name


@pytest.fixture
def pg_database(pg_server: str, pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database at head: its URL."""
    name = f"resgate_test_{uuid.uuid4().hex[:12]}"
    with pg_admin(pg_server) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield f"{pg_server}/{name}"
    with pg_admin(pg_server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgresql":
        monkeypatch.setenv("RESGATE_DB", request.getfixturevalue("pg_database"))
    return str(request.param)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "resgate.db"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def engine(clock: FixedClock) -> Iterator[Engine]:
    """The database RESGATE_DB names: SQLite, or PostgreSQL under `backend`."""
    database = open_database(resolve_target(None), write=True)
    yield Engine(database, clock)
    database.dispose()


FROZEN_AT = datetime(2026, 11, 24, 12, 0, 0)


@pytest.fixture
def frozen() -> FixedClock:
    """A clock that moves only when told; the `cli` fixture hands it to every command
    of a test that asks for it (directly, or through another fixture)."""
    return FixedClock(FROZEN_AT)


@pytest.fixture
def cli(request: pytest.FixtureRequest) -> Callable[..., Result]:
    if "frozen" not in request.fixturenames:
        return run_cli
    return functools.partial(run_cli, clock=request.getfixturevalue("frozen"))


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for a `resgate` subprocess (see harness.env)."""
    return env()
