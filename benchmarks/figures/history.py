"""`status`, `list`, `pool list` and reserve+unreserve on a large history against
the same commands on no history (benchmarks/README.md, Figures)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from fixtures import Databases, copy_db
from harness import Config, Row, clean_env, interleave, log, med, ms, resgate_argv, timed

COMMANDS = {
    "status": ("status",),
    "list": ("list",),
    "pool list": ("pool", "list"),
}


def _command(db: Path, env: dict[str, str], *args: str) -> Callable[[], float]:
    argv = [*resgate_argv(), "--db", str(db), *args]
    return lambda: timed(argv, env)


def _reserve_unreserve(db: Path, env: dict[str, str]) -> Callable[[], float]:
    """One reserve + unreserve through the CLI (two processes), timed together."""
    rg = resgate_argv()
    reserve = [*rg, "--db", str(db), "reserve", "--tenant", "team23", "--pool", "pool0"]

    def run() -> float:
        start = time.perf_counter()
        out = subprocess.run(
            [*reserve, "--cpu", "1", "--json"], env=env, capture_output=True, check=True
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


def measure(cfg: Config, dbs: Databases) -> list[Row]:
    big = dbs.big
    log(f"history: commands on {cfg.history_rows:,} ended reservations vs none")
    env = clean_env(cfg.pycache)
    rows: list[Row] = []
    empty = cfg.workdir / "history-empty.db"
    copy_db(dbs.base, empty)
    for label, args in COMMANDS.items():
        s = interleave(
            {"none": _command(empty, env, *args), "big": _command(big, env, *args)}, cfg.repeat
        )
        rows.append(_ratio_row(f"{label} @ {cfg.history_rows:,} ended", s, 1.15))
    s = interleave(
        {"none": _reserve_unreserve(empty, env), "big": _reserve_unreserve(big, env)}, cfg.repeat
    )
    rows.append(_ratio_row(f"reserve+unreserve @ {cfg.history_rows:,} ended", s, 1.15))
    return rows
