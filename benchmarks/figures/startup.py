"""`resgate version`, `resgate list` (with and without a configuration file) and
the completion of pool names against bare imports (benchmarks/README.md, Figures)."""

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
    # A user file that names the database and sets every other key it may.
    config = cfg.workdir / "config.toml"
    config.write_text(
        f'db = "{current}"\ntenant = "t0"\npool = "p0"\nbusy_timeout = 5\ncolor = "never"\n'
    )
    configured = {**env, "RESGATE_CONFIG": str(config)}
    # bash asking for the pool names after `resgate reserve --pool `.
    completing = {
        **env,
        "RESGATE_DB": str(current),
        "_RESGATE_COMPLETE": "complete_bash",
        "COMP_WORDS": "resgate reserve --pool ",
        "COMP_CWORD": "3",
    }
    samples = interleave(
        {
            "typer": lambda: timed([py, "-c", "import typer"], env),
            "version": lambda: timed([*rg, "version"], env),
            "imports": lambda: timed(
                [py, "-c", "import typer, sqlalchemy.orm, tabulate, colorama"], env
            ),
            "list": lambda: timed([*rg, "--db", str(current), "list"], env),
            "configured": lambda: timed([*rg, "list"], configured),
            "completion": lambda: timed(rg, completing),
        },
        cfg.repeat,
    )
    m = {k: med(v) for k, v in samples.items()}
    r1 = m["version"] / m["typer"]
    r2 = m["list"] / m["imports"]
    r3 = m["configured"] / m["imports"]
    r4 = m["completion"] / m["typer"]
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
        Row(
            "resgate list (db from a config file)",
            ms(m["configured"]),
            f"import typer, sqlalchemy.orm, tabulate, colorama: {ms(m['imports'])}",
            f"{r3:.2f}x",
            "<= 1.25x",
            r3 <= 1.25,
            {"subject_s": m["configured"], "baseline_s": m["imports"], "ratio": r3},
        ),
        Row(
            "completion of --pool names",
            ms(m["completion"]),
            f"import typer: {ms(m['typer'])}",
            f"{r4:.2f}x",
            "<= 1.30x",
            r4 <= 1.30,
            {"subject_s": m["completion"], "baseline_s": m["typer"], "ratio": r4},
        ),
    ]
