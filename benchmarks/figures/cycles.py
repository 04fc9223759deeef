"""reserve+release per second through the engine API against the same two
transactions with the bare `sqlite3` module, 1 and 4 processes, synchronous FULL
and NORMAL (benchmarks/README.md, Figures)."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fixtures import Databases, copy_db, now_stamp
from harness import Config, Row, log, med

from figures.sweep import SWEEP_BARE


def _engine_step(path: str, tenant: str) -> Callable[[], None]:
    from resgate.engine.records import Amounts
    from resgate.engine.release import unreserve
    from resgate.engine.reservations import ReserveRequest, reserve
    from resgate.store.database import open_database, resolve_target

    db = open_database(resolve_target(path), write=True)
    request = ReserveRequest(tenant, "pool0", Amounts(1, 0, 0))

    def step() -> None:
        info = db.run(lambda tx: reserve(tx, request), write=True)
        db.run(lambda tx: unreserve(tx, info.id), write=True)

    return step


def _bare_step(path: str, sync: str, tenant: str) -> Callable[[], None]:
    """The statements the engine's two transactions run, minus SQLAlchemy:
    reserve = look up tenant and pool, sweep, conflict check, pool usage, insert;
    release = look up the reservation, sweep, update."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    (tenant_id,) = conn.execute("SELECT id FROM tenants WHERE name = ?", (tenant,)).fetchone()
    (pool_id,) = conn.execute("SELECT id FROM pools WHERE name = 'pool0'").fetchone()

    def step() -> None:
        rid = os.urandom(8).hex()
        at = now_stamp()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "SELECT * FROM tenants WHERE name = ? AND deleted_at IS NULL", (tenant,)
        ).fetchall()
        conn.execute("SELECT * FROM pools WHERE name = 'pool0' AND deleted_at IS NULL").fetchall()
        conn.execute(SWEEP_BARE + " RETURNING id", (at,)).fetchall()
        conn.execute(
            "SELECT id FROM reservations WHERE tenant_id = ? AND pool_id = ? AND status = 'active'",
            (tenant_id, pool_id),
        ).fetchall()
        conn.execute(
            "SELECT sum(cpu), sum(memory), sum(gpu) FROM reservations WHERE pool_id = ?"
            " AND status = 'active' AND (expires_at IS NULL OR expires_at > ?)",
            (pool_id, at),
        ).fetchall()
        conn.execute(
            "INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, status,"
            " created_at, starts_at, lease) VALUES (?, ?, ?, 1, 0, 0, 'active', ?, ?, 0)",
            (rid, tenant_id, pool_id, at, at),
        )
        conn.execute("COMMIT")
        at = now_stamp()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT * FROM reservations WHERE id = ?", (rid,)).fetchall()
        conn.execute(SWEEP_BARE + " RETURNING id", (at,)).fetchall()
        conn.execute(
            "UPDATE reservations SET status = 'released', ended_at = ? WHERE id = ?",
            (at, rid),
        )
        conn.execute("COMMIT")

    return step


def _worker(
    kind: str,
    path: str,
    sync: str,
    tenant: str,
    seconds: float,
    barrier: Any,
    queue: Any,
) -> None:
    os.environ["RESGATE_SYNCHRONOUS"] = sync
    step = _engine_step(path, tenant) if kind == "engine" else _bare_step(path, sync, tenant)
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
            target=_worker,
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


def _prepare(cfg: Config, base: Path) -> Path:
    """A copy of the base database with the cycling tenants cyc0-cyc3."""
    path = cfg.workdir / "cycles.db"
    copy_db(base, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        "INSERT INTO tenants (name, priority, created_at) VALUES "
        + ", ".join(f"('cyc{i}', 5, '2026-01-01 00:00:00.000000')" for i in range(4))
    )
    conn.close()
    return path


def measure(cfg: Config, dbs: Databases) -> list[Row]:
    log("cycles: engine API reserve+release vs bare sqlite3, 1 and 4 processes")
    path = _prepare(cfg, dbs.base)
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
