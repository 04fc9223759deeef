"""`resgate sweep` of many due reservations against a bare UPDATE of the same rows,
and its statement count against a sweep of a hundredth as many
(benchmarks/README.md, Figures)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from fixtures import Databases, add_due, copy_db, now_stamp
from harness import Config, Row, clean_env, interleave, log, med, resgate_argv

SWEEP_BARE = (
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
        count = conn.execute(SWEEP_BARE, (now_stamp(),)).rowcount
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


def _templates(cfg: Config, base: Path, counts: tuple[int, ...]) -> dict[int, Path]:
    """A database per count, holding that many due reservations, to copy from."""
    templates = {}
    for count in counts:
        path = cfg.workdir / f"sweep-template-{count}.db"
        copy_db(base, path)
        add_due(path, count)
        templates[count] = path
    return templates


def _sample(cfg: Config, template: Path, counts: dict[str, int]) -> dict[str, list[float]]:
    """Interleaved timings of the CLI, engine and bare sweeps, each on a fresh copy
    of `template`; records what each expired (and the engine's statements) in `counts`."""
    work = cfg.workdir / "sweep.db"
    env = clean_env(cfg.pycache)
    rg = resgate_argv()

    def cli() -> float:
        copy_db(template, work)
        start = time.perf_counter()
        out = subprocess.run(
            [*rg, "--db", str(work), "sweep", "--json"], env=env, capture_output=True, check=True
        )
        elapsed = time.perf_counter() - start
        counts["cli"] = json.loads(out.stdout)["expired"]
        return elapsed

    def bare() -> float:
        copy_db(template, work)
        elapsed, counts["bare"] = _bare_sweep(work)
        return elapsed

    def engine() -> float:
        copy_db(template, work)
        elapsed, counts["engine"], counts["statements"] = _engine_sweep(work)
        return elapsed

    return interleave({"cli": cli, "engine": engine, "bare": bare}, max(3, cfg.repeat // 2))


def measure(cfg: Config, dbs: Databases) -> list[Row]:
    n = cfg.sweep_rows
    few = max(1, n // 100)
    log(f"sweep: building {n:,} and {few:,} due reservations")
    templates = _templates(cfg, dbs.base, (n, few))
    counts: dict[str, int] = {}
    s = _sample(cfg, templates[n], counts)
    work = cfg.workdir / "sweep.db"
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
