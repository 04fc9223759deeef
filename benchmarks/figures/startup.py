"""`resgate version` and `resgate list` against bare imports (benchmarks/README.md,
Figures)."""

from __future__ import annotations

import sys

from fixtures import Databases, copy_db
from harness import Config, Row, clean_env, interleave, log, med, ms, resgate_argv, timed


def measure(cfg: Config, dbs: Databases) -> list[Row]:
    log("startup: resgate version / list against bare imports")
    env = clean_env(cfg.pycache)
    py = sys.executable
    rg = resgate_argv()
    current = cfg.workdir / "startup.db"
    copy_db(dbs.base, current)
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
