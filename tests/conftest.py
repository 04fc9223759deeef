"""Shared fixtures. No test ever touches a real user's data: RESGATE_DB, HOME and
XDG_DATA_HOME point into a temporary directory for every test."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from resgate.engine.clock import FixedClock
from resgate.store.database import Database, Tx, open_database, resolve_target

REPO = Path(__file__).resolve().parent.parent


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
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "resgate.db"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@dataclass
class Engine:
    """The engine API on one database with an injected clock."""

    database: Database
    clock: FixedClock

    def write(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.database.run(lambda tx: work(tx, *args, **kwargs), write=True, clock=self.clock)

    def read(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.database.run(
            lambda tx: work(tx, *args, **kwargs), write=False, clock=self.clock
        )

    def tx(self, work: Callable[[Tx], Any]) -> Any:
        return self.database.run(work, write=True, clock=self.clock)


@pytest.fixture
def engine(db_path: Path, clock: FixedClock) -> Iterator[Engine]:
    database = open_database(resolve_target(str(db_path)), write=True)
    yield Engine(database, clock)
    database.dispose()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> Result:
    """Run one command in-process through the real error boundary."""
    from resgate.cli import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(args))
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> Callable[..., Result]:
    return run_cli


def resgate_command() -> list[str]:
    """The installed console script when there is one, else `python -m resgate`."""
    script = Path(sys.executable).parent / "resgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "resgate"]


@pytest.fixture
def subprocess_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env
