"""Shared by the worker scripts: the start barrier and the ledger.

Workers are plain scripts (`python tests/workers/X.py ...`); this directory is
their sys.path[0], so they import this module by name.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def barrier(directory: str | Path, name: str, timeout: float = 120.0) -> None:
    """Say we are ready (a file `ready-<name>`), then wait for the file `go`.

    The test creates `go` only once every worker is ready, so all of them leave
    this function within a millisecond or two of each other and really collide.
    """
    directory = Path(directory)
    (directory / f"ready-{name}").touch()
    go = directory / "go"
    deadline = time.monotonic() + timeout
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"worker {name}: no start signal within {timeout}s")
        time.sleep(0.0005)


class Ledger:
    """One JSON line per acknowledged operation, appended after the commit
    returned, flushed and fsynced before the worker goes on."""

    def __init__(self, path: str | Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        os.write(self.fd, line.encode())
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line (a worker killed mid-write leaves at most a torn last line,
    which was never acknowledged)."""
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines(keepends=True):
        if line.endswith("\n"):
            entries.append(json.loads(line))
    return entries
