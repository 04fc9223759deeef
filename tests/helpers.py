"""Plain helpers shared by the test modules (conftest.py keeps the fixtures).

The in-process CLI: `run_cli` runs one command through the real error boundary,
`ok` asserts it succeeded, `out` also that it wrote nothing on stderr, `js` reads
its `--json` output, `reserve_id` makes a reservation and returns its id.
The engine API: `Engine` binds a database and a clock, `reserve` makes a
reservation through it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from resgate.clock import FixedClock
from resgate.engine import reservations
from resgate.engine.records import Amounts, ReserveResult
from resgate.engine.reservations import ReserveRequest
from resgate.store.database import Database, Tx

# ---------------------------------------------------------------- the CLI, in-process


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


Cli = Callable[..., Result]


def run_cli(*args: str, clock: FixedClock | None = None) -> Result:
    """Run one command in-process through the real error boundary; `clock` is every
    transaction's "now" on both databases."""
    from resgate.cli import invoke

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = invoke(list(args), clock=clock)
    return Result(code, stdout.getvalue(), stderr.getvalue())


def ok(cli: Cli, *args: str) -> Result:
    """The command exits 0."""
    result = cli(*args)
    assert result.code == 0, (args, result)
    return result


def out(cli: Cli, *args: str) -> str:
    """The command exits 0 and writes nothing on stderr: its stdout."""
    result = cli(*args)
    assert result.code == 0, (args, result)
    assert result.stderr == "", (args, result)
    return result.stdout


def js(cli: Cli, *args: str) -> Any:
    """`out` of the command with `--json`, parsed."""
    return json.loads(out(cli, *args, "--json"))


def reserve_id(cli: Cli, tenant: str, pool: str = "p", **amounts: object) -> str:
    """`reserve --tenant TENANT --pool POOL --KEY VALUE…` (as `out`): the id its
    success line names."""
    args = ["reserve", "--tenant", tenant, "--pool", pool]
    for key, value in amounts.items():
        args += [f"--{key}", str(value)]
    stdout = out(cli, *args)
    match = re.match(r"Reservation created: ([0-9a-f]{16})\n", stdout)
    assert match, stdout
    return match.group(1)


# ---------------------------------------------------------------- the engine API


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


def reserve(
    engine: Engine,
    tenant: str,
    pool: str,
    *,
    cpu: int = 0,
    memory: int = 0,
    gpu: int = 0,
    ttl: int | None = None,
    ids: Iterable[int] | None = None,
    preempt: bool = False,
) -> ReserveResult:
    """One reservation through the engine; `ids` names the GPU devices wanted."""
    request = ReserveRequest(
        tenant=tenant,
        pool=pool,
        amounts=Amounts(cpu=cpu, memory=memory, gpu=gpu),
        ttl=ttl,
        preempt=preempt,
        gpu_ids=None if ids is None else tuple(ids),
    )
    return engine.write(reservations.reserve_and_report, request)


# ---------------------------------------------------------------- databases and servers

REPO = Path(__file__).resolve().parent.parent


def alembic(db: str, *args: str) -> None:
    """Alembic by hand on `db` (a path or URL), as a developer runs it from the checkout."""
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={db}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)


def pg_admin(pg_server: str) -> Any:
    """An autocommit connection to the server's `postgres` database."""
    import psycopg

    return psycopg.connect(
        pg_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres", autocommit=True
    )


@contextlib.contextmanager
def write_lock_held() -> Iterator[None]:
    """Another writer holds what every resgate writer takes first (on the database
    RESGATE_DB names)."""
    url = os.environ["RESGATE_DB"]
    if "://" in url:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as holder:
            holder.execute("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE")
            yield
            holder.rollback()
    else:
        holder = sqlite3.connect(url, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (as of now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def imported_packages(module: ModuleType) -> set[str]:
    """The top-level packages `module`'s source imports: a brute-force model must
    import nothing from resgate, so that a bug in the engine cannot leak into it."""
    import ast

    tree = ast.parse(Path(str(module.__file__)).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    return imported


STANDARD_LIBRARY = set(sys.stdlib_module_names) | {"__future__"}


@contextlib.contextmanager
def raw_sql() -> Iterator[Callable[..., Any]]:
    """A connection of the database's own client library (`sqlite3`, `psycopg`), not
    SQLAlchemy's, to write behind resgate's back; each statement commits on its own,
    foreign keys enforced as resgate's own connections enforce them."""
    url = os.environ["RESGATE_DB"]
    if "://" in url:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
            db.autocommit = True
            yield db.execute
    else:
        with contextlib.closing(sqlite3.connect(url, isolation_level=None)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            yield db.execute
