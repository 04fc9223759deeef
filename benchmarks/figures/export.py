"""`resgate export` of the large history, CSV and JSON: rows per second and peak
RSS against the export of a tenth of it (benchmarks/README.md, Figures and Notes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fixtures import Databases, count_rows
from harness import Config, Row, clean_env, log, med, resgate_argv

_RUSAGE_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
elapsed = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": code, "seconds": elapsed, "maxrss_kb": rss}))
"""

Sample = tuple[float, float]  # seconds, peak RSS in MB


def _export(db: Path, fmt: str, out: Path, env: dict[str, str]) -> Sample:
    """Seconds and peak RSS (MB) of one `resgate export` process, measured by a
    wrapper process (RUSAGE_CHILDREN), so the harness's own memory is not counted."""
    export = ["--db", str(db), "export", "--format", fmt, "--output", str(out)]
    result = subprocess.run(
        [sys.executable, "-c", _RUSAGE_WRAPPER, *resgate_argv(), *export],
        env=env,
        capture_output=True,
        check=True,
        text=True,
    )
    data = json.loads(result.stdout)
    if data["code"] != 0:
        raise RuntimeError(f"export failed with exit {data['code']}")
    return data["seconds"], data["maxrss_kb"] / 1024


def _sample(cfg: Config, fmt: str, big: Path, small: Path) -> dict[str, list[Sample]]:
    """Exports of both databases after one warm-up, alternating which goes first."""
    env = clean_env(cfg.pycache)
    out = cfg.workdir / f"export.{fmt}"
    s: dict[str, list[Sample]] = {"big": [], "small": []}
    _export(small, fmt, out, env)  # warm up
    for i in range(cfg.export_repeat):
        order = (("big", big), ("small", small))
        for name, db in order if i % 2 == 0 else order[::-1]:
            s[name].append(_export(db, fmt, out, env))
    return s


def _row(fmt: str, n_big: int, n_small: int, s: dict[str, list[Sample]]) -> Row:
    big_s = med([t for t, _ in s["big"]])
    small_s = med([t for t, _ in s["small"]])
    big_rss = med([r for _, r in s["big"]])
    small_rss = med([r for _, r in s["small"]])
    rate = n_big / big_s
    growth = big_rss / small_rss
    return Row(
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


def measure(cfg: Config, dbs: Databases) -> list[Row]:
    big, small = dbs.big, dbs.small
    n_big, n_small = count_rows(big), count_rows(small)
    log(f"export: {n_big:,} vs {n_small:,} rows, CSV and JSON")
    return [_row(fmt, n_big, n_small, _sample(cfg, fmt, big, small)) for fmt in ("csv", "json")]
