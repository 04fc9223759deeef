"""What every figure shares (benchmarks/README.md, Method): the row of the table, the
configuration of a run, the clean environment of measured processes, interleaved
timing, and the table printer."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


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

    @property
    def pycache(self) -> Path:
        """The private bytecode cache of the measured processes."""
        return self.workdir / "pycache"


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def resgate_argv() -> list[str]:
    """The installed `resgate` script beside this interpreter, else `python -m resgate`."""
    script = Path(sys.executable).with_name("resgate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "resgate"]


def clean_env(pycache: Path, **extra: str) -> dict[str, str]:
    """The environment of measured processes: no RESGATE_* settings, and bytecode
    caches on (in the private directory `pycache`), as an installed wheel has them;
    with PYTHONDONTWRITEBYTECODE every run would compile resgate from source."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RESGATE_")
        and k not in ("NO_COLOR", "FORCE_COLOR", "PYTHONDONTWRITEBYTECODE")
    }
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
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
