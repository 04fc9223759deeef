"""Test-side helpers for the multi-process tests: start workers, release the
barrier, collect results, run the real `resgate` script. Also the one place that
says how a test runs resgate in a subprocess (`resgate_command`, `env`), for the
test modules too: the workers cannot import conftest.py."""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

WORKERS = Path(__file__).resolve().parent
REPO = WORKERS.parent.parent


def resgate_command() -> list[str]:
    """The installed console script when there is one, else `python -P -m resgate`
    (-P: never the `resgate` of whatever directory the subprocess runs in)."""
    script = Path(sys.executable).parent / "resgate"
    return [str(script)] if script.exists() else [sys.executable, "-P", "-m", "resgate"]


@functools.cache
def installed() -> bool:
    """Whether resgate is installed, editable or as a wheel: only an install maps the
    package `resgate._migrations` (pyproject.toml's package-dir); a bare checkout
    on sys.path has no such directory."""
    try:
        return importlib.util.find_spec("resgate._migrations") is not None
    except ModuleNotFoundError:
        return False


def env(**extra: str) -> dict[str, str]:
    """This process's environment for a subprocess; PYTHONPATH names the checkout
    only when resgate is not installed."""
    result = dict(os.environ)
    if not installed():
        result["PYTHONPATH"] = str(REPO)
    result.update(extra)
    return result


def spawn(script: str, *args: str, **extra_env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKERS / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra_env),
    )


def release(barrier: Path, names: list[str], procs: list[subprocess.Popen[str]]) -> float:
    """Wait until every worker is ready, then let them all go at once."""
    deadline = time.monotonic() + 120
    while not all((barrier / f"ready-{name}").exists() for name in names):
        for proc in procs:
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"a worker died before the start: {proc.returncode}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError("workers did not get ready within 120 s")
        time.sleep(0.01)
    (barrier / "go").touch()
    return time.monotonic()


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str


def collect(procs: list[subprocess.Popen[str]], timeout: float = 170) -> list[Finished]:
    deadline = time.monotonic() + timeout
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        results.append(Finished(proc.returncode, out, err))
    return results


def resgate(db: Path | str, *args: str, timeout: float = 60) -> Finished:
    """The installed `resgate` script, as a user would run it."""
    done = subprocess.run(
        [*resgate_command(), "--db", str(db), *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
    )
    return Finished(done.returncode, done.stdout, done.stderr)
