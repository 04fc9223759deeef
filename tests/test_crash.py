"""SIGKILL at random moments, most of them inside a write
transaction, and nothing acknowledged is lost or needs manual recovery.

Three worker processes (tests/workers/engine_worker.py, looping forever; forked
by tests/workers/forkserver.py so that replacing one costs no imports) keep
running random engine operations on one SQLite file, with the default
`synchronous=FULL`. The test kills one with SIGKILL, starts a replacement, and
goes on until it has killed at least 56. Most kills are aimed: the test watches
the worker's marker file and kills it the moment the worker reports `C` — written
just before COMMIT, while the write lock is held; the rest land at a random time.
A kill counts as confirmed inside a write transaction when the marker's last line
is that `C` (its `D`, written once COMMIT returned, never came).

Afterwards, with no recovery step of any kind: `resgate db check` passes,
`PRAGMA integrity_check` is ok, the invariants hold, every acknowledged operation
(ledger line) is in the database — only the one in-flight operation of each killed
worker may or may not be — and the next commands work.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import verify
from harness import WORKERS, env, resgate
from ledger import read_ledger

from resgate.engine import pools, tenants
from resgate.engine.records import Amounts
from resgate.store.database import open_database, resolve_target

KILLS = 56
SLOTS = 3
AIMED = 0.7  # share of kills aimed at a `C` marker
POOLS = {"p0": Amounts(8, 4096, 2), "p1": Amounts(4, 2048, 1)}
TENANTS = {"t0": 1, "t1": 3, "t2": 5, "t3": 7, "t4": 9}


class ForkServer:
    """tests/workers/forkserver.py: forks workers on request (see there)."""

    def __init__(self, stderr: Path) -> None:
        self.stderr_path = stderr
        with stderr.open("w") as errors:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKERS / "forkserver.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=env(),
            )

    def ask(self, *words: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(words) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().split()
        assert reply, f"fork server died: {self.stderr_path.read_text()}"
        return reply

    def spawn(self, *args: str) -> int:
        return int(self.ask("spawn", *args)[1])

    def running(self, pid: int) -> bool:
        reply = self.ask("poll", str(pid))
        if reply[0] == "running":
            return True
        raise AssertionError(
            f"worker {pid} exited by itself (status {reply[2]}):\n{self.stderr_path.read_text()}"
        )

    def wait(self, pid: int) -> int:
        return int(self.ask("wait", str(pid))[2])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@dataclass
class Running:
    name: str
    pid: int
    ledger: Path
    marker: Path


def marker_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().split("\n")[:-1] if line]  # complete lines only


def wait_until(condition: Callable[[], bool], what: str, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.001)


@pytest.mark.slow
def test_sigkill_inside_write_transactions_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    database = open_database(resolve_target(str(db)), write=True)
    for name, totals in POOLS.items():
        database.run(lambda tx, n=name, a=totals: pools.create_pool(tx, n, a), write=True)
    for name, priority in TENANTS.items():
        database.run(lambda tx, n=name, p=priority: tenants.add_tenant(tx, n, p), write=True)
    database.dispose()

    seed = int(os.environ.get("RESGATE_TEST_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    server = ForkServer(tmp_path / "workers.err")
    generation = 0

    def start(slot: int) -> Running:
        nonlocal generation
        generation += 1
        name = f"s{slot}g{generation}"
        ledger, marker = tmp_path / f"ledger-{name}.jsonl", tmp_path / f"marker-{name}.txt"
        pid = server.spawn(
            str(db), name, str(seed + generation), "-1", str(ledger), "--marker", str(marker)
        )
        return Running(name, pid, ledger, marker)

    started = time.monotonic()
    slots = [start(i) for i in range(SLOTS)]
    finished: list[Running] = []
    in_flight = verify.InFlight()
    kills = confirmed = aimed = 0
    ops_in_flight: list[str] = []

    def kill(victim: Running) -> None:
        nonlocal kills, confirmed
        os.kill(victim.pid, signal.SIGKILL)
        status = server.wait(victim.pid)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        kills += 1
        lines = marker_lines(victim.marker)
        if lines and lines[-1].startswith("C "):
            confirmed += 1
        acknowledged = {entry["seq"] for entry in read_ledger(victim.ledger)}
        commits = [line.split() for line in lines if line.startswith("C ")]
        if commits and int(commits[-1][1]) not in acknowledged:
            # Reached COMMIT, never acknowledged: may or may not have committed.
            _, _, op, target = commits[-1]
            in_flight.add(op, target)
            ops_in_flight.append(op)
        finished.append(victim)

    while kills < KILLS:
        slot = kills % SLOTS
        victim = slots[slot]
        alive = lambda v=victim: server.running(v.pid)  # noqa: E731
        if rng.random() < AIMED:
            # At its n-th commit, with the write lock held and COMMIT not yet sent.
            aimed += 1
            n = rng.randint(1, 6)

            def at_commit(v: Running = victim, n: int = n) -> bool:
                lines = marker_lines(v.marker)
                commits = sum(1 for line in lines if line.startswith("C "))
                return commits >= n and lines[-1].startswith("C ")

            wait_until(at_commit, "a commit", alive)
        else:
            # Anywhere: starting, reading, waiting for the lock, writing, committing.
            wait_until(lambda v=victim: bool(marker_lines(v.marker)), "a start", alive)
            time.sleep(rng.uniform(0.0, 0.1))
            assert alive()
        kill(victim)
        slots[slot] = start(slot)
    for running in slots:  # the last ones die the same way
        kill(running)
    server.close()
    elapsed = time.monotonic() - started
    errors = (tmp_path / "workers.err").read_text()
    assert errors == "", errors

    entries = [entry for run in finished for entry in read_ledger(run.ledger)]
    context = (
        f"seed {seed}: {kills} kills, {confirmed} confirmed inside a write transaction, "
        f"{len(entries)} acknowledged operations, in flight: {ops_in_flight}"
    )
    assert kills >= 50, context
    assert confirmed >= kills / 2, context
    assert len(entries) >= 200, context

    # The very next command, with no recovery step: db check passes.
    check = resgate(db, "db", "check")
    assert check.code == 0, f"{context}\n{check.stdout}{check.stderr}"

    problems = verify.all_problems(db, entries, {k: list(v) for k, v in POOLS.items()}, in_flight)
    assert problems == [], f"{context}\n" + "\n".join(problems[:30])

    # And the database takes new work as usual.
    for command in (
        ["pool", "create", "--name", "after", "--cpu", "2"],
        ["tenant", "add", "--name", "after"],
        ["reserve", "--tenant", "after", "--pool", "after", "--cpu", "2"],
        ["sweep"],
        ["db", "check"],
    ):
        done = resgate(db, *command)
        assert done.code == 0, f"{command}: {done.stderr}"
    print(f"\ncrash: {context}; {aimed} aimed; {elapsed:.1f}s")
