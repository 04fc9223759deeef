"""resgate benchmarks (benchmarks/README.md): every figure beside its baseline,
measured in the same run, as medians of repeated, interleaved runs.

    python benchmarks/run.py                 # everything (~5-8 minutes)
    python benchmarks/run.py --quick         # fewer repeats, shorter loops, smaller history
    python benchmarks/run.py --only startup,history --json results.json

See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from figures import audit, cycles, export, history, queue, startup, sweep
from fixtures import Databases
from harness import Config, Row, log, table

# Each figure in the order it runs; benchmarks/README.md, Figures.
FIGURES: dict[str, Callable[[Config, Databases], list[Row]]] = {
    "startup": startup.measure,
    "history": history.measure,
    "sweep": sweep.measure,
    "cycles": cycles.measure,
    "audit": audit.measure,
    "export": export.measure,
    "queue": queue.measure,
}


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The options, and the figures asked for (--only)."""
    names = tuple(FIGURES)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 200k-row history")
    parser.add_argument("--only", default=",".join(names), help=f"comma list of {names}")
    parser.add_argument("--repeat", type=int, help="timed runs per command (default 9, quick 3)")
    parser.add_argument("--rows", type=int, help="ended reservations in the large history")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--keep", metavar="DIR", help="build the databases in DIR and keep them")
    args = parser.parse_args(argv)
    only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(only) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    return args, only


def make_config(args: argparse.Namespace, workdir: Path) -> Config:
    history_rows = args.rows or (200_000 if args.quick else 1_000_000)
    return Config(
        repeat=args.repeat or (3 if args.quick else 9),
        history_rows=history_rows,
        small_rows=history_rows // 10,
        sweep_rows=100_000,
        cycle_seconds=1.0 if args.quick else 2.0,
        cycle_repeat=1 if args.quick else 3,
        export_repeat=1 if args.quick else 3,
        workdir=workdir,
    )


def report(
    command: str, cfg: Config, rows: list[Row], elapsed: float, json_path: str | None
) -> None:
    """Print the header and the table; with --json, also write every figure."""
    print(f"resgate benchmarks: {command}")
    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, {elapsed:.0f} s; medians of {cfg.repeat} interleaved runs"
    )
    print()
    print(table(rows))
    if json_path:
        results = {
            "command": command,
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "seconds": elapsed,
            "config": {k: str(v) for k, v in cfg.__dict__.items()},
            "figures": [r.__dict__ for r in rows],
        }
        Path(json_path).write_text(json.dumps(results, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    args, only = parse_args(argv)
    if args.keep:
        workdir = Path(args.keep).absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="resgate-bench-")
        workdir = Path(cleanup.name)
    cfg = make_config(args, workdir)
    started = time.perf_counter()
    try:
        log(f"building databases in {workdir}")
        dbs = Databases(cfg)
        rows: list[Row] = []
        for name, measure in FIGURES.items():
            if name in only:
                rows += measure(cfg, dbs)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    elapsed = time.perf_counter() - started
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report(command.strip(), cfg, rows, elapsed, args.json)
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
