"""resgate benchmarks (benchmarks/README.md, issue 5): every figure beside its baseline,
measured in the same run, as medians of repeated, interleaved runs.

    python benchmarks/run.py                 # everything (~5-8 minutes)
    python benchmarks/run.py --quick         # fewer repeats, shorter loops, smaller history
    python benchmarks/run.py --only startup,history --json results.json

See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIGURES = ("startup", "history", "sweep", "cycles", "audit", "export")

# ---------------------------------------------------------------- plumbing


@dataclass
class Row:
    figure: str
    subject: str
    baseline: str
    value: str
    target: str
    met: bool | None  # None: reported, no target
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    repeat: int
    history_rows: int
    small_rows: int
    sweep_rows: int
    cycle_seconds: float
    cycle_repeat: int
    export_repeat: int
    workdir: Path


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def resgate_argv() -> list[str]:
    """The installed `resgate` script beside this interpreter, else `python -m resgate`."""
    script = Path(sys.executable).with_name("resgate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "resgate"]


PYCACHE: Path | None = None  # set in main(): bytecode caches for the child processes


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of measured processes: no RESGATE_* settings, and bytecode
    caches on (in a private directory), as an installed wheel has them; with
    PYTHONDONTWRITEBYTECODE every run would compile resgate from source."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RESGATE_")
        and k not in ("NO_COLOR", "FORCE_COLOR", "PYTHONDONTWRITEBYTECODE")
    }
    if PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra)
    return env


def timed(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
    return elapsed


def interleave(
    runs: dict[str, Callable[[], float]], repeat: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run each callable `repeat` times, round-robin (rotating the starting one),
    after `warmup` untimed rounds; return every sample."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeat):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            samples[name].append(runs[name]())
    return samples


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# ---------------------------------------------------------------- databases

STAMP = "%Y-%m-%d %H:%M:%S.%f"
N_POOLS = 4
N_TENANTS = 24
ACTIVE_PER_POOL = 12  # the active set: 48 reservations


def sql_stamp(offset_seconds_expr: str) -> str:
    """SQL for the stored timestamp text of (now + expr seconds), microseconds included."""
    epoch = int(time.time())
    return (
        f"(strftime('%Y-%m-%d %H:%M:%S', {epoch} + ({offset_seconds_expr}), 'unixepoch')"
        f" || printf('.%06d', abs(random()) % 1000000))"
    )


def build_base(path: Path) -> None:
    """A database made by resgate itself: pools, tenants and the active set,
    through the engine API (the same code as the CLI)."""
    from resgate.engine.pools import create_pool
    from resgate.engine.records import Amounts
    from resgate.engine.reservations import ReserveRequest, reserve
    from resgate.engine.tenants import add_tenant
    from resgate.store.database import open_database, resolve_target

    db = open_database(resolve_target(str(path)), write=True)
    try:

        def setup(tx: Any) -> None:
            for p in range(N_POOLS):
                create_pool(tx, f"pool{p}", Amounts(1024, 1 << 20, 64))
            for t in range(N_TENANTS):
                add_tenant(tx, f"team{t:02d}", 1 + t % 10)
            for p in range(N_POOLS):
                for t in range(ACTIVE_PER_POOL):
                    ttl = None if t % 2 else 86_400
                    reserve(
                        tx,
                        ReserveRequest(
                            f"team{(t + p) % N_TENANTS:02d}", f"pool{p}", Amounts(4, 4096, 1), ttl
                        ),
                    )

        db.run(setup, write=True)
    finally:
        db.dispose()
    checkpoint(path)


def checkpoint(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def copy_db(source: Path, dest: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(dest) + suffix).unlink(missing_ok=True)
    shutil.copyfile(source, dest)


def add_history(path: Path, rows: int) -> float:
    """Append `rows` ended reservations (spread over two years, random ids) with
    one INSERT … SELECT; returns the seconds it took."""
    start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -200000")
        conn.execute("BEGIN")
        # The base database's tenants and pools have consecutive ids.
        (t0,) = conn.execute("SELECT min(id) FROM tenants").fetchone()
        (p0,) = conn.execute("SELECT min(id) FROM pools").fetchone()
        span = 2 * 365 * 86_400
        created = sql_stamp(f"-{span} + (n * {span} / {rows})")
        ended = sql_stamp(f"-{span} + (n * {span} / {rows}) + 60 + n % 7200")
        conn.execute(
            f"""
            WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows})
            INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, ttl, status,
                                      created_at, expires_at, ended_at, preempted_by)
            SELECT lower(hex(randomblob(8))),
                   {t0} + n % {N_TENANTS}, {p0} + n % {N_POOLS},
                   1 + n % 16, 1024 * (1 + n % 8), n % 3, NULL,
                   CASE n % 3 WHEN 0 THEN 'released' WHEN 1 THEN 'expired'
                              ELSE 'preempted' END,
                   {created}, NULL, {ended},
                   CASE n % 3 WHEN 2 THEN 'team00' END
              FROM seq
            """
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - start


def add_due(path: Path, rows: int) -> None:
    """Add `rows` active reservations that fell due an hour ago, on their own pools
    and tenants (one active reservation per tenant and pool). The capacity trigger
    is lifted for the fill only (rows are within capacity) and put back as it was."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        per_pool = 1000
        pools = (rows + per_pool - 1) // per_pool
        now = datetime.now(UTC).replace(tzinfo=None).strftime(STAMP)
        conn.execute(
            f"""
            WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {pools})
            INSERT INTO pools (name, cpu, memory, gpu, created_at)
            SELECT 'due' || n, 1000000, 1000000, 0, '{now}' FROM seq"""
        )
        conn.execute(
            f"""
            WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {per_pool})
            INSERT INTO tenants (name, priority, created_at)
            SELECT 'due' || n, 5, '{now}' FROM seq"""
        )
        (trigger_sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
            "AND name = 'reservations_capacity_guard'"
        ).fetchone()
        conn.execute("DROP TRIGGER reservations_capacity_guard")
        created = sql_stamp("-3600")
        expires = sql_stamp("-3540 - n % 600")
        conn.execute(
            f"""
            WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq
                                      WHERE n < {rows - 1}),
            dp AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM pools
                    WHERE name LIKE 'due%'),
            dt AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM tenants
                    WHERE name LIKE 'due%')
            INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, ttl, status,
                                      created_at, expires_at, ended_at)
            SELECT lower(hex(randomblob(8))), dt.id, dp.id, 1, 1, 0, 60, 'active',
                   {created}, {expires}, NULL
              FROM seq JOIN dp ON dp.k = seq.n / {per_pool} JOIN dt ON dt.k = seq.n % {per_pool}
            """
        )
        conn.execute(trigger_sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def count_rows(path: Path, where: str = "1") -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM reservations WHERE {where}").fetchone()[0])
    finally:
        conn.close()


# ---------------------------------------------------------------- figures


def fig_startup(cfg: Config, base: Path) -> list[Row]:
    log("startup: resgate version / list against bare imports")
    env = clean_env()
    py = sys.executable
    rg = resgate_argv()
    current = cfg.workdir / "startup.db"
    copy_db(base, current)
    samples = interleave(
        {
            "typer": lambda: timed([py, "-c", "import typer"], env),
            "version": lambda: timed([*rg, "version"], env),
            "imports": lambda: timed(
                [py, "-c", "import typer, sqlalchemy.orm, tabulate, colorama"], env
            ),
            "list": lambda: timed([*rg, "--db", str(current), "list"], env),
        },
        cfg.repeat,
    )
    m = {k: med(v) for k, v in samples.items()}
    r1 = m["version"] / m["typer"]
    r2 = m["list"] / m["imports"]
    return [
        Row(
            "resgate version",
            ms(m["version"]),
            f"import typer: {ms(m['typer'])}",
            f"{r1:.2f}x",
            "<= 1.30x",
            r1 <= 1.30,
            {"subject_s": m["version"], "baseline_s": m["typer"], "ratio": r1, "samples": samples},
        ),
        Row(
            "resgate list (current db)",
            ms(m["list"]),
            f"import typer, sqlalchemy.orm, tabulate, colorama: {ms(m['imports'])}",
            f"{r2:.2f}x",
            "<= 1.25x",
            r2 <= 1.25,
            {"subject_s": m["list"], "baseline_s": m["imports"], "ratio": r2},
        ),
    ]


def fig_history(cfg: Config, base: Path, big: Path) -> list[Row]:
    log(f"history: commands on {cfg.history_rows:,} ended reservations vs none")
    env = clean_env()
    rg = resgate_argv()
    rows: list[Row] = []
    empty = cfg.workdir / "history-empty.db"
    copy_db(base, empty)

    def cmd(db: Path, *args: str) -> Callable[[], float]:
        return lambda: timed([*rg, "--db", str(db), *args], env)

    def cycle(db: Path) -> Callable[[], float]:
        # One reserve + unreserve through the CLI (two processes), timed together.
        def run() -> float:
            start = time.perf_counter()
            out = subprocess.run(
                [
                    *rg,
                    "--db",
                    str(db),
                    "reserve",
                    "--tenant",
                    "team23",
                    "--pool",
                    "pool0",
                    "--cpu",
                    "1",
                    "--json",
                ],
                env=env,
                capture_output=True,
                check=True,
            )
            rid = json.loads(out.stdout)["id"]
            subprocess.run(
                [*rg, "--db", str(db), "unreserve", "--id", rid],
                env=env,
                stdout=subprocess.DEVNULL,
                check=True,
            )
            return time.perf_counter() - start

        return run

    cases = {
        "status": ("status",),
        "list": ("list",),
        "pool list": ("pool", "list"),
    }
    for label, args in cases.items():
        s = interleave({"none": cmd(empty, *args), "big": cmd(big, *args)}, cfg.repeat)
        rows.append(_ratio_row(f"{label} @ {cfg.history_rows:,} ended", s, 1.15))
    s = interleave({"none": cycle(empty), "big": cycle(big)}, cfg.repeat)
    rows.append(_ratio_row(f"reserve+unreserve @ {cfg.history_rows:,} ended", s, 1.15))
    return rows


def _ratio_row(label: str, s: dict[str, list[float]], target: float) -> Row:
    none, big = med(s["none"]), med(s["big"])
    ratio = big / none
    return Row(
        label,
        ms(big),
        f"no history: {ms(none)}",
        f"{ratio:.2f}x",
        f"<= {target:.2f}x",
        ratio <= target,
        {"subject_s": big, "baseline_s": none, "ratio": ratio, "samples": s},
    )


_SWEEP_BARE = (
    "UPDATE reservations SET status = 'expired', ended_at = expires_at "
    "WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= ?"
)


def _bare_sweep(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        now = datetime.now(UTC).replace(tzinfo=None).strftime(STAMP)
        count = conn.execute(_SWEEP_BARE, (now,)).rowcount
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.perf_counter() - start, count


def _engine_sweep(path: Path) -> tuple[float, int, int]:
    """In-process engine sweep: seconds, rows expired, SQL statements executed."""
    from sqlalchemy import event

    from resgate.engine.sweep import sweep
    from resgate.store.database import open_database, resolve_target

    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    start = time.perf_counter()
    db = open_database(resolve_target(str(path)), write=True)
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        ids = db.run(sweep, write=True)
    finally:
        db.dispose()
    return time.perf_counter() - start, len(ids), statements


def fig_sweep(cfg: Config, base: Path) -> list[Row]:
    n = cfg.sweep_rows
    few = max(1, n // 100)
    log(f"sweep: building {n:,} and {few:,} due reservations")
    templates = {}
    for count in (n, few):
        path = cfg.workdir / f"sweep-template-{count}.db"
        copy_db(base, path)
        add_due(path, count)
        templates[count] = path
    work = cfg.workdir / "sweep.db"
    env = clean_env()
    rg = resgate_argv()
    counts: dict[str, int] = {}

    def cli() -> float:
        copy_db(templates[n], work)
        start = time.perf_counter()
        out = subprocess.run(
            [*rg, "--db", str(work), "sweep", "--json"], env=env, capture_output=True, check=True
        )
        elapsed = time.perf_counter() - start
        counts["cli"] = json.loads(out.stdout)["expired"]
        return elapsed

    def bare() -> float:
        copy_db(templates[n], work)
        elapsed, counts["bare"] = _bare_sweep(work)
        return elapsed

    def engine() -> float:
        copy_db(templates[n], work)
        elapsed, counts["engine"], counts["statements"] = _engine_sweep(work)
        return elapsed

    s = interleave({"cli": cli, "engine": engine, "bare": bare}, max(3, cfg.repeat // 2))
    copy_db(templates[few], work)
    _, few_count, few_statements = _engine_sweep(work)
    m = {k: med(v) for k, v in s.items()}
    fixed = few_statements == counts["statements"]
    ok = fixed and m["cli"] <= 2.0 and counts["cli"] == n == counts["bare"]
    return [
        Row(
            f"sweep {n:,} due (resgate sweep)",
            f"{m['cli']:.2f} s (engine {m['engine']:.2f} s)",
            f"bare UPDATE: {m['bare']:.2f} s",
            f"{m['cli'] / m['bare']:.2f}x; {counts['statements']} stmts "
            f"({few_statements} @ {few_count:,})",
            "<= 2 s, fixed stmts",
            ok,
            {
                "cli_s": m["cli"],
                "engine_s": m["engine"],
                "baseline_s": m["bare"],
                "expired": counts,
                "statements": counts["statements"],
                "statements_few": few_statements,
                "few": few_count,
                "samples": s,
            },
        )
    ]


def _cycle_worker(
    kind: str,
    path: str,
    sync: str,
    tenant: str,
    seconds: float,
    barrier: Any,
    queue: Any,
) -> None:
    os.environ["RESGATE_SYNCHRONOUS"] = sync
    step: Callable[[], None]
    if kind == "engine":
        from resgate.engine.records import Amounts
        from resgate.engine.reservations import ReserveRequest, reserve, unreserve
        from resgate.store.database import open_database, resolve_target

        db = open_database(resolve_target(path), write=True)
        request = ReserveRequest(tenant, "pool0", Amounts(1, 0, 0))

        def step() -> None:
            info = db.run(lambda tx: reserve(tx, request), write=True)
            db.run(lambda tx: unreserve(tx, info.id), write=True)

    else:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {sync}")
        (tenant_id,) = conn.execute("SELECT id FROM tenants WHERE name = ?", (tenant,)).fetchone()
        (pool_id,) = conn.execute("SELECT id FROM pools WHERE name = 'pool0'").fetchone()

        # The statements the engine's two transactions run, minus SQLAlchemy:
        # reserve = look up tenant and pool, sweep, conflict check, pool usage,
        # insert; release = look up the reservation, sweep, update.
        def now() -> str:
            return datetime.now(UTC).replace(tzinfo=None).strftime(STAMP)

        def step() -> None:
            rid = os.urandom(8).hex()
            at = now()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "SELECT * FROM tenants WHERE name = ? AND deleted_at IS NULL", (tenant,)
            ).fetchall()
            conn.execute(
                "SELECT * FROM pools WHERE name = 'pool0' AND deleted_at IS NULL"
            ).fetchall()
            conn.execute(_SWEEP_BARE + " RETURNING id", (at,)).fetchall()
            conn.execute(
                "SELECT id FROM reservations WHERE tenant_id = ? AND pool_id = ?"
                " AND status = 'active'",
                (tenant_id, pool_id),
            ).fetchall()
            conn.execute(
                "SELECT sum(cpu), sum(memory), sum(gpu) FROM reservations WHERE pool_id = ?"
                " AND status = 'active' AND (expires_at IS NULL OR expires_at > ?)",
                (pool_id, at),
            ).fetchall()
            conn.execute(
                "INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, status,"
                " created_at) VALUES (?, ?, ?, 1, 0, 0, 'active', ?)",
                (rid, tenant_id, pool_id, at),
            )
            conn.execute("COMMIT")
            at = now()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("SELECT * FROM reservations WHERE id = ?", (rid,)).fetchall()
            conn.execute(_SWEEP_BARE + " RETURNING id", (at,)).fetchall()
            conn.execute(
                "UPDATE reservations SET status = 'released', ended_at = ? WHERE id = ?",
                (at, rid),
            )
            conn.execute("COMMIT")

    step()  # warm up: connections, statement caches
    barrier.wait()
    start = time.perf_counter()
    cycles = 0
    while time.perf_counter() - start < seconds:
        step()
        cycles += 1
    queue.put((cycles, time.perf_counter() - start))


def _cycles(kind: str, path: Path, sync: str, procs: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(procs)
    queue = ctx.Queue()
    workers = [
        ctx.Process(
            target=_cycle_worker,
            args=(kind, str(path), sync, f"cyc{i}", seconds, barrier, queue),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"cycle worker failed ({kind}, {sync}, {procs})")
    total = sum(c for c, _ in results)
    return total / max(e for _, e in results)


def fig_cycles(cfg: Config, base: Path) -> list[Row]:
    log("cycles: engine API reserve+release vs bare sqlite3, 1 and 4 processes")
    path = cfg.workdir / "cycles.db"
    copy_db(base, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        "INSERT INTO tenants (name, priority, created_at) VALUES "
        + ", ".join(f"('cyc{i}', 5, '2026-01-01 00:00:00.000000')" for i in range(4))
    )
    conn.close()
    rows: list[Row] = []
    for sync in ("FULL", "NORMAL"):
        for procs in (1, 4):
            s: dict[str, list[float]] = {"engine": [], "bare": []}
            for i in range(cfg.cycle_repeat):
                order = ("engine", "bare") if i % 2 == 0 else ("bare", "engine")
                for kind in order:
                    s[kind].append(_cycles(kind, path, sync, procs, cfg.cycle_seconds))
            engine, bare = med(s["engine"]), med(s["bare"])
            share = engine / bare
            target = sync == "FULL" and procs == 1
            rows.append(
                Row(
                    f"reserve+release/s, {procs} proc, {sync}",
                    f"{engine:,.0f}/s",
                    f"bare sqlite3: {bare:,.0f}/s",
                    f"{share:.0%}",
                    ">= 25%" if target else "(report)",
                    share >= 0.25 if target else None,
                    {"engine_per_s": engine, "bare_per_s": bare, "share": share, "samples": s},
                )
            )
    return rows


# The engine reserve + unreserve loop of one source tree, run in a subprocess with
# PYTHONPATH set to that tree, on a database the tree creates itself (its own
# schema revision): argv = database, seconds; prints {"cycles", "seconds", "module"}.
_TREE_CYCLES = """
import json, os, sys, time
from pathlib import Path
import resgate
from resgate.engine.pools import create_pool
from resgate.engine.records import Amounts
from resgate.engine.reservations import ReserveRequest, reserve, unreserve
from resgate.engine.tenants import add_tenant
from resgate.store.database import open_database, resolve_target

path, seconds = sys.argv[1], float(sys.argv[2])
fresh = not Path(path).exists()
db = open_database(resolve_target(path), write=True)
if fresh:
    def setup(tx):
        create_pool(tx, "pool0", Amounts(1024, 1 << 20, 64))
        for t in range(12):
            add_tenant(tx, f"team{t:02d}", 1 + t % 10)
            reserve(tx, ReserveRequest(f"team{t:02d}", "pool0", Amounts(4, 4096, 1), None))
        add_tenant(tx, "cyc0", 5)
    db.run(setup, write=True)
request = ReserveRequest("cyc0", "pool0", Amounts(1, 0, 0))

def step():
    info = db.run(lambda tx: reserve(tx, request), write=True)
    db.run(lambda tx: unreserve(tx, info.id), write=True)

for _ in range(20):
    step()  # warm up: connections, statement caches
start = time.perf_counter()
cycles = 0
while time.perf_counter() - start < seconds:
    step()
    cycles += 1
elapsed = time.perf_counter() - start
db.dispose()
print(json.dumps({"cycles": cycles, "seconds": elapsed, "module": resgate.__file__}))
"""

AUDIT_MARK = "reserve --preempt, --dry-run, --request-id; audit log"


def _tree_before_log(dest: Path) -> tuple[str | None, str]:
    """Extract the tree of the commit before the audit log into `dest`; returns
    (commit, note) — commit None, with the reason, when it cannot be had."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "log", "--format=%H %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"git log failed ({exc})"
    found = [line.split(" ", 1)[0] for line in out.splitlines() if line[41:].startswith(AUDIT_MARK)]
    if not found:
        return None, f"no commit whose message starts with {AUDIT_MARK!r} (shallow clone?)"
    try:
        parent = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{found[-1]}^"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None, f"the parent of {found[-1][:10]} is not available (shallow clone?)"
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", parent], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=False)
    if archive.wait() != 0 or untar.returncode != 0:
        return None, f"git archive {parent[:10]} failed"
    return parent, f"commit {parent[:10]}"


def _tree_cycles(tree: Path, db: Path, seconds: float) -> float:
    env = clean_env(PYTHONPATH=str(tree), RESGATE_SYNCHRONOUS="FULL")
    result = subprocess.run(
        [sys.executable, "-c", _TREE_CYCLES, str(db), str(seconds)],
        env=env,
        cwd=str(db.parent),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cycle run on {tree} failed: {result.stderr[-800:]}")
    data = json.loads(result.stdout)
    if not str(data["module"]).startswith(str(tree)):
        raise RuntimeError(f"ran {data['module']}, not the tree {tree}")
    return float(data["cycles"]) / float(data["seconds"])


def fig_audit(cfg: Config) -> list[Row]:
    """Issue 7, item 5: the audit log adds at most 15 % to a reserve + unreserve
    cycle, against the same loop at the commit before the log, in the same run."""
    log("audit: engine reserve+unreserve now vs at the commit before the audit log")
    label = "audit log cost: reserve+unreserve, 1 proc, FULL"
    before_tree = cfg.workdir / "tree-before-log"
    shutil.rmtree(before_tree, ignore_errors=True)
    commit, note = _tree_before_log(before_tree)
    if commit is None:
        log(f"audit: skipped: {note}")
        return [Row(label, "skipped", note, "-", "<= 1.15x time", None, {"skipped": note})]
    dbs = {"now": cfg.workdir / "audit-now.db", "before": cfg.workdir / "audit-before.db"}
    trees = {"now": REPO, "before": before_tree}
    for db in dbs.values():
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    s: dict[str, list[float]] = {"now": [], "before": []}
    for name in s:  # creates each database; untimed
        _tree_cycles(trees[name], dbs[name], 0.2)
    for i in range(max(3, cfg.cycle_repeat * 2 + 1)):
        order = ("now", "before") if i % 2 == 0 else ("before", "now")
        for name in order:
            s[name].append(_tree_cycles(trees[name], dbs[name], cfg.cycle_seconds))
    now, before = med(s["now"]), med(s["before"])
    ratio = before / now  # time per cycle, now over before
    return [
        Row(
            label,
            f"{now:,.0f}/s",
            f"before the log ({commit[:10]}): {before:,.0f}/s",
            f"{ratio:.2f}x time",
            "<= 1.15x time",
            ratio <= 1.15,
            {
                "now_per_s": now,
                "before_per_s": before,
                "ratio": ratio,
                "commit": commit,
                "samples": s,
            },
        )
    ]


_RUSAGE_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
elapsed = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": code, "seconds": elapsed, "maxrss_kb": rss}))
"""


def _export(db: Path, fmt: str, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `resgate export` process, measured by a
    wrapper process (RUSAGE_CHILDREN), so the harness's own memory is not counted."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _RUSAGE_WRAPPER,
            *resgate_argv(),
            "--db",
            str(db),
            "export",
            "--format",
            fmt,
            "--output",
            str(out),
        ],
        env=env,
        capture_output=True,
        check=True,
        text=True,
    )
    data = json.loads(result.stdout)
    if data["code"] != 0:
        raise RuntimeError(f"export failed with exit {data['code']}")
    return data["seconds"], data["maxrss_kb"] / 1024


def fig_export(cfg: Config, big: Path, small: Path) -> list[Row]:
    env = clean_env()
    n_big, n_small = count_rows(big), count_rows(small)
    log(f"export: {n_big:,} vs {n_small:,} rows, CSV and JSON")
    rows: list[Row] = []
    for fmt in ("csv", "json"):
        out = cfg.workdir / f"export.{fmt}"
        s: dict[str, list[tuple[float, float]]] = {"big": [], "small": []}
        _export(small, fmt, out, env)  # warm up
        for i in range(cfg.export_repeat):
            order = (("big", big), ("small", small))
            for name, db in order if i % 2 == 0 else order[::-1]:
                s[name].append(_export(db, fmt, out, env))
        big_s = med([t for t, _ in s["big"]])
        small_s = med([t for t, _ in s["small"]])
        big_rss = med([r for _, r in s["big"]])
        small_rss = med([r for _, r in s["small"]])
        rate = n_big / big_s
        growth = big_rss / small_rss
        rows.append(
            Row(
                f"export {fmt} {n_big:,} rows",
                f"{rate:,.0f} rows/s; RSS {big_rss:.0f} MB",
                f"{n_small:,} rows: {n_small / small_s:,.0f} rows/s; RSS {small_rss:.0f} MB",
                f"RSS {growth:.2f}x",
                ">= 50,000 rows/s; RSS <= 100 MB, <= 1.20x",
                rate >= 50_000 and big_rss <= 100 and growth <= 1.20,
                {
                    "rows": n_big,
                    "rows_small": n_small,
                    "seconds": big_s,
                    "seconds_small": small_s,
                    "rows_per_s": rate,
                    "rows_per_s_small": n_small / small_s,
                    "rss_mb": big_rss,
                    "rss_mb_small": small_rss,
                    "rss_ratio": growth,
                    "samples": s,
                },
            )
        )
    return rows


# ---------------------------------------------------------------- output


def table(rows: list[Row]) -> str:
    headers = ("figure", "resgate", "baseline (same run)", "result", "target", "met")
    cells = [
        (
            r.figure,
            r.subject,
            r.baseline,
            r.value,
            r.target,
            "-" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(c) for c in cells)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 200k-row history")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma list of {FIGURES}")
    parser.add_argument("--repeat", type=int, help="timed runs per command (default 9, quick 3)")
    parser.add_argument("--rows", type=int, help="ended reservations in the large history")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--keep", metavar="DIR", help="build the databases in DIR and keep them")
    args = parser.parse_args(argv)
    only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(only) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")

    history_rows = args.rows or (200_000 if args.quick else 1_000_000)
    if args.keep:
        workdir = Path(args.keep).absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="resgate-bench-")
        workdir = Path(cleanup.name)
    cfg = Config(
        repeat=args.repeat or (3 if args.quick else 9),
        history_rows=history_rows,
        small_rows=history_rows // 10,
        sweep_rows=100_000,
        cycle_seconds=1.0 if args.quick else 2.0,
        cycle_repeat=1 if args.quick else 3,
        export_repeat=1 if args.quick else 3,
        workdir=workdir,
    )
    global PYCACHE
    PYCACHE = workdir / "pycache"
    started = time.perf_counter()
    try:
        rows: list[Row] = []
        log(f"building databases in {workdir}")
        base = workdir / "base.db"
        copy_db_needed = any(f in only for f in FIGURES if f != "audit")
        if copy_db_needed:
            if base.exists():
                base.unlink()
            build_base(base)
        big = small = None
        if "history" in only or "export" in only:
            big = workdir / "history-big.db"
            copy_db(base, big)
            took = add_history(big, cfg.history_rows)
            log(f"filled {cfg.history_rows:,} ended reservations in {took:.1f} s")
        if "startup" in only:
            rows += fig_startup(cfg, base)
        if "history" in only:
            assert big is not None
            rows += fig_history(cfg, base, big)
        if "sweep" in only:
            rows += fig_sweep(cfg, base)
        if "cycles" in only:
            rows += fig_cycles(cfg, base)
        if "audit" in only:
            rows += fig_audit(cfg)
        if "export" in only:
            assert big is not None
            small = workdir / "history-small.db"
            copy_db(base, small)
            add_history(small, cfg.small_rows)
            rows += fig_export(cfg, big, small)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    elapsed = time.perf_counter() - started
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"resgate benchmarks: {command.strip()}")
    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, {elapsed:.0f} s; medians of {cfg.repeat} interleaved runs"
    )
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "command": command.strip(),
                    "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version,
                    "cpus": os.cpu_count(),
                    "seconds": elapsed,
                    "config": {k: str(v) for k, v in cfg.__dict__.items()},
                    "figures": [r.__dict__ for r in rows],
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
