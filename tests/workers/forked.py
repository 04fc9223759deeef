"""Race real processes without paying Python's and SQLAlchemy's import time for
each one: fork them from the test process (which has imported everything), let
each wait at the start barrier (ledger.barrier), then run its target — one
`resgate` command through resgate's own entry point, or an engine worker.

Each child is a separate OS process with its own database connection (it opens
the database itself after the fork and never touches the parent's). Its stdout
and stderr go to files; it leaves with os._exit, running no inherited cleanup.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledger import barrier


@dataclass
class Forked:
    pid: int
    name: str
    out: Path
    err: Path


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str


def _child(directory: Path, name: str, target: Callable[[], None], out: Path, err: Path) -> None:
    code = 1
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        barrier(directory, name)
        try:
            target()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def fork(directory: Path, name: str, target: Callable[[], None]) -> Forked:
    out, err = directory / f"{name}.out", directory / f"{name}.err"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(directory, name, target, out, err)
    return Forked(pid, name, out, err)


def resgate_command(*args: str) -> Callable[[], None]:
    def run() -> None:
        import resgate.cli

        sys.argv = ["resgate", *args]
        resgate.cli.main()

    return run


def engine_worker(*args: str) -> Callable[[], None]:
    def run() -> None:
        import engine_worker

        sys.argv = ["engine_worker.py", *args]
        engine_worker.main()

    return run


def race(directory: Path, targets: list[Callable[[], None]], timeout: float = 120) -> list[Done]:
    """Fork one child per target, release them together, wait for all."""
    directory.mkdir(exist_ok=True)
    children = [fork(directory, f"c{i}", target) for i, target in enumerate(targets)]
    deadline = time.monotonic() + timeout
    status: dict[int, int] = {}
    try:
        while not all((directory / f"ready-{c.name}").exists() for c in children):
            for child in children:
                pid, code = os.waitpid(child.pid, os.WNOHANG)
                if pid:
                    status[child.pid] = code
                    raise AssertionError(
                        f"{child.name} died before the start:\n{child.err.read_text()}"
                    )
            if time.monotonic() > deadline:
                raise AssertionError("the children did not get ready in time")
            time.sleep(0.005)
        (directory / "go").touch()
        for child in children:
            while child.pid not in status:
                pid, code = os.waitpid(child.pid, os.WNOHANG)
                if pid:
                    status[child.pid] = code
                elif time.monotonic() > deadline:
                    raise AssertionError(f"{child.name} did not finish in time")
                else:
                    time.sleep(0.005)
    finally:
        for child in children:
            if child.pid not in status:
                try:
                    os.kill(child.pid, 9)
                    os.waitpid(child.pid, 0)
                except ProcessLookupError:
                    pass
    return [
        Done(os.waitstatus_to_exitcode(status[c.pid]), c.out.read_text(), c.err.read_text())
        for c in children
    ]
