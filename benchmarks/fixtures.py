"""The databases the figures run on (benchmarks/README.md, Method): the base database
made by resgate itself, a large history of ended reservations, and due rows."""

from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from harness import Config, log

STAMP = "%Y-%m-%d %H:%M:%S.%f"
N_POOLS = 4
N_TENANTS = 24
ACTIVE_PER_POOL = 12  # the active set: 48 reservations


def now_stamp() -> str:
    """The stored timestamp text of now (UTC, naive, microseconds included)."""
    return datetime.now(UTC).replace(tzinfo=None).strftime(STAMP)


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


def remove_db(path: Path) -> None:
    """Remove a database file with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def copy_db(source: Path, dest: Path) -> None:
    remove_db(dest)
    shutil.copyfile(source, dest)


def count_rows(path: Path, where: str = "1") -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM reservations WHERE {where}").fetchone()[0])
    finally:
        conn.close()


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
                                      created_at, expires_at, ended_at, preempted_by, starts_at)
            SELECT lower(hex(randomblob(8))),
                   {t0} + n % {N_TENANTS}, {p0} + n % {N_POOLS},
                   1 + n % 16, 1024 * (1 + n % 8), n % 3, NULL,
                   CASE n % 3 WHEN 0 THEN 'released' WHEN 1 THEN 'expired'
                              ELSE 'preempted' END,
                   {created}, NULL, {ended},
                   CASE n % 3 WHEN 2 THEN 'team00' END, {created}
              FROM seq
            """
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - start


DUE_PER_POOL = 1000  # due reservations per pool; as many tenants, one row each per pool


def _add_due_pools_and_tenants(conn: sqlite3.Connection, rows: int) -> None:
    pools = (rows + DUE_PER_POOL - 1) // DUE_PER_POOL
    now = now_stamp()
    conn.execute(
        f"""
        WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {pools})
        INSERT INTO pools (name, cpu, memory, gpu, created_at)
        SELECT 'due' || n, 1000000, 1000000, 0, '{now}' FROM seq"""
    )
    conn.execute(
        f"""
        WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {DUE_PER_POOL})
        INSERT INTO tenants (name, priority, created_at)
        SELECT 'due' || n, 5, '{now}' FROM seq"""
    )


def _add_due_reservations(conn: sqlite3.Connection, rows: int) -> None:
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
                                  created_at, expires_at, ended_at, starts_at, ends_at)
        SELECT lower(hex(randomblob(8))), dt.id, dp.id, 1, 1, 0, 60, 'active',
               {created}, {expires}, NULL, {created}, {expires}
          FROM seq JOIN dp ON dp.k = seq.n / {DUE_PER_POOL}
                   JOIN dt ON dt.k = seq.n % {DUE_PER_POOL}
        """
    )


def add_due(path: Path, rows: int) -> None:
    """Add `rows` active reservations that fell due an hour ago, on their own pools
    and tenants (one active reservation per tenant and pool). The trigger that
    keeps pool_free is lifted for the fill only and put back as it was: every plan
    added ended before now, so pool_free from now on is what it was (db check
    agrees), and taking each out of the step function one by one, 1,000 to a pool,
    costs minutes of setup."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        _add_due_pools_and_tenants(conn, rows)
        (trigger_sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
            "AND name = 'reservations_capacity_guard'"
        ).fetchone()
        conn.execute("DROP TRIGGER reservations_capacity_guard")
        _add_due_reservations(conn, rows)
        conn.execute(trigger_sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


class Databases:
    """The databases the figures share, each built the first time a figure asks
    for it, in the work directory."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    @cached_property
    def base(self) -> Path:
        """Pools, tenants and the active set; no history."""
        path = self.cfg.workdir / "base.db"
        if path.exists():
            path.unlink()
        build_base(path)
        return path

    @cached_property
    def big(self) -> Path:
        """The base database plus the large history (`--rows`)."""
        path = self.cfg.workdir / "history-big.db"
        copy_db(self.base, path)
        took = add_history(path, self.cfg.history_rows)
        log(f"filled {self.cfg.history_rows:,} ended reservations in {took:.1f} s")
        return path

    @cached_property
    def small(self) -> Path:
        """The base database plus a tenth of the large history."""
        path = self.cfg.workdir / "history-small.db"
        copy_db(self.base, path)
        add_history(path, self.cfg.small_rows)
        return path
