"""The audit log's cost: the engine reserve+unreserve loop of this tree against
the same loop on the tree of the commit before the audit log, in the same run
(benchmarks/README.md, Figures and Notes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from fixtures import Databases, remove_db
from harness import REPO, Config, Row, clean_env, log, med

# The parent of the commit that added the audit log (82f5bbf332b0).
BEFORE_LOG = "42cef20b51cc8250829d927cfc99f1b6bf9a02cc"
LABEL = "audit log cost: reserve+unreserve, 1 proc, FULL"
TARGET = "<= 1.15x time"

# The engine reserve + unreserve loop of one source tree, run in a subprocess with
# PYTHONPATH set to that tree, on a database the tree creates itself (its own
# schema revision): argv = database, seconds; prints {"cycles", "seconds", "module"}.
_TREE_CYCLES = """
import json, os, sys, time
from pathlib import Path
import resgate
from resgate.engine.pools import create_pool
from resgate.engine.records import Amounts
from resgate.engine.release import unreserve
from resgate.engine.reservations import ReserveRequest, reserve
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


def _tree_before_log(dest: Path) -> str | None:
    """Extract the tree of BEFORE_LOG into `dest`; None when it is had, else why not."""
    try:
        subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "rev-parse",
                "--verify",
                "--quiet",
                f"{BEFORE_LOG}^{{commit}}",
            ],
            capture_output=True,
            check=True,
        )
    except OSError as exc:
        return f"git rev-parse failed ({exc})"
    except subprocess.CalledProcessError:
        return f"commit {BEFORE_LOG[:10]} is not available (shallow clone?)"
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(
        ["git", "-C", str(REPO), "archive", BEFORE_LOG], stdout=subprocess.PIPE
    )
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=False)
    if archive.wait() != 0 or untar.returncode != 0:
        return f"git archive {BEFORE_LOG[:10]} failed"
    return None


def _tree_cycles(cfg: Config, tree: Path, db: Path, seconds: float) -> float:
    env = clean_env(cfg.pycache, PYTHONPATH=str(tree), RESGATE_SYNCHRONOUS="FULL")
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


def _sample(cfg: Config, trees: dict[str, Path]) -> dict[str, list[float]]:
    """Cycles/s of each tree, alternating which goes first, on a database each
    tree creates itself in an untimed first run."""
    dbs = {name: cfg.workdir / f"audit-{name}.db" for name in trees}
    for db in dbs.values():
        remove_db(db)
    s: dict[str, list[float]] = {name: [] for name in trees}
    for name in s:
        _tree_cycles(cfg, trees[name], dbs[name], 0.2)
    for i in range(max(3, cfg.cycle_repeat * 2 + 1)):
        order = ("now", "before") if i % 2 == 0 else ("before", "now")
        for name in order:
            s[name].append(_tree_cycles(cfg, trees[name], dbs[name], cfg.cycle_seconds))
    return s


def measure(cfg: Config, dbs: Databases) -> list[Row]:
    """The audit log adds at most 15 % to a reserve + unreserve cycle."""
    log("audit: engine reserve+unreserve now vs at the commit before the audit log")
    before_tree = cfg.workdir / "tree-before-log"
    shutil.rmtree(before_tree, ignore_errors=True)
    why_not = _tree_before_log(before_tree)
    if why_not is not None:
        log(f"audit: skipped: {why_not}")
        return [Row(LABEL, "skipped", why_not, "-", TARGET, None, {"skipped": why_not})]
    s = _sample(cfg, {"now": REPO, "before": before_tree})
    now, before = med(s["now"]), med(s["before"])
    ratio = before / now  # time per cycle, now over before
    return [
        Row(
            LABEL,
            f"{now:,.0f}/s",
            f"before the log ({BEFORE_LOG[:10]}): {before:,.0f}/s",
            f"{ratio:.2f}x time",
            TARGET,
            ratio <= 1.15,
            {
                "now_per_s": now,
                "before_per_s": before,
                "ratio": ratio,
                "commit": BEFORE_LOG,
                "samples": s,
            },
        )
    ]
