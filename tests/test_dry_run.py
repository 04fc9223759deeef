"""README "Preemption": `--dry-run` on every command that has it.

For each command — succeeding and failing — the dry run leaves the database
identical (a full SQL dump compared) and writes no audit event, and its exit code
and output equal those of the real command run right after it, once the first
line `Dry run: nothing was changed` (text) or the `"dry_run": true` key (JSON) is
removed and new ids and new timestamps are masked. SQLite only: this is about the
command line; the engine runs the same code on both backends.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import Result, ok, run_cli

from resgate.clock import FixedClock, SystemClock

DRY_LINE = "Dry run: nothing was changed"
HEX_ID = re.compile(r"\b[0-9a-f]{16}\b")
STORED_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
ANY_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{6}Z)?")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Built once: pools p (cpu 8, mem 4096, gpu 4), q (cpu 4), r (empty);
    tenants lo (2), mid (5), hi (8), idle (1); lo holds 4 cpu + 2 GPUs in p (1h TTL)
    and 1 cpu in q, mid 2 cpu in p, hi a released reservation in q."""
    path = tmp_path_factory.mktemp("dry") / "template.db"
    cli = functools.partial(run_cli, "--db", str(path))
    ok(cli, "pool", "create", "--name", "p", "--cpu", "8", "--memory", "4096", "--gpu", "4")
    ok(cli, "pool", "create", "--name", "q", "--cpu", "4")
    ok(cli, "pool", "create", "--name", "r", "--cpu", "2")
    for name, priority in (("lo", 2), ("mid", 5), ("hi", 8), ("idle", 1)):
        ok(cli, "tenant", "add", "--name", name, "--priority", str(priority))

    def reserve(*args: str) -> str:
        return str(json.loads(ok(cli, "reserve", *args, "--json").stdout)["id"])

    ids = {
        "lo_p": reserve("--tenant", "lo", "--pool", "p", "--cpu", "4", "--gpu", "2", "--ttl", "1h"),
        "lo_q": reserve("--tenant", "lo", "--pool", "q", "--cpu", "1"),
        "mid_p": reserve("--tenant", "mid", "--pool", "p", "--cpu", "2", "--memory", "512"),
        "ended": reserve("--tenant", "hi", "--pool", "q", "--cpu", "1"),
    }
    ok(cli, "unreserve", "--id", ids["ended"])
    return path, ids


CASES: dict[str, tuple[list[str], int]] = {
    # reserve
    "reserve": (["reserve", "--tenant", "hi", "--pool", "p", "--cpu", "2", "--ttl", "30m"], 0),
    "reserve gpu": (
        ["reserve", "--tenant", "hi", "--pool", "p", "--gpu", "2", "--memory", "100"],
        0,
    ),
    "reserve request-id": (
        ["reserve", "--tenant", "hi", "--pool", "q", "--cpu", "1", "--request-id", "job-1"],
        0,
    ),
    "reserve insufficient": (["reserve", "--tenant", "hi", "--pool", "p", "--cpu", "3"], 3),
    # A booking ahead, and one that does not fit beside lo's GPUs for their hour.
    "reserve booking": (
        [
            "reserve",
            "--tenant",
            "idle",
            "--pool",
            "p",
            "--gpu",
            "2",
            "--start",
            "+2h",
            "--duration",
            "1h",
        ],
        0,
    ),
    "reserve booking clash": (
        [
            "reserve",
            "--tenant",
            "idle",
            "--pool",
            "p",
            "--gpu",
            "4",
            "--start",
            "+30m",
            "--duration",
            "1h",
        ],
        3,
    ),
    # The earliest window: 4 GPUs once lo's 1 h ends, open-ended 3 likewise.
    "reserve earliest": (
        ["reserve", "--tenant", "idle", "--pool", "p", "--gpu", "4", "--ttl", "30m", "--earliest"],
        0,
    ),
    "reserve earliest open": (
        ["reserve", "--tenant", "idle", "--pool", "p", "--gpu", "3", "--earliest"],
        0,
    ),
    "reserve earliest nowhere": (
        ["reserve", "--tenant", "idle", "--pool", "p", "--cpu", "9", "--earliest"],
        3,
    ),
    "reserve conflict": (["reserve", "--tenant", "lo", "--pool", "p", "--cpu", "1"], 4),
    "reserve unknown tenant": (["reserve", "--tenant", "nobody", "--pool", "p", "--cpu", "1"], 1),
    "reserve bad amount": (["reserve", "--tenant", "hi", "--pool", "p", "--cpu", "-1"], 2),
    # reserve --preempt
    "reserve preempt": (
        ["reserve", "--tenant", "hi", "--pool", "p", "--cpu", "5", "--gpu", "3", "--preempt"],
        0,
    ),
    "reserve preempt no victim needed": (
        ["reserve", "--tenant", "hi", "--pool", "p", "--cpu", "1", "--preempt"],
        0,
    ),
    "reserve preempt shortfall": (
        ["reserve", "--tenant", "hi", "--pool", "p", "--cpu", "9", "--preempt"],
        3,
    ),
    "reserve preempt outranked": (
        ["reserve", "--tenant", "idle", "--pool", "p", "--cpu", "4", "--preempt"],
        3,
    ),
    # unreserve
    "unreserve": (["unreserve", "--id", "{lo_p}"], 0),
    "unreserve ended": (["unreserve", "--id", "{ended}"], 4),
    "unreserve unknown": (["unreserve", "--id", "0123456789abcdef"], 1),
    "unreserve bad id": (["unreserve", "--id", "nope"], 2),
    # extend
    "extend": (["extend", "--id", "{lo_p}", "--ttl", "2h"], 0),
    "extend forever": (["extend", "--id", "{mid_p}", "--ttl", "0"], 0),
    "extend ended": (["extend", "--id", "{ended}", "--ttl", "5m"], 4),
    # preempt
    "preempt": (["preempt", "--tenant", "hi", "--target", "lo"], 0),
    "preempt in pool": (["preempt", "--tenant", "hi", "--target", "lo", "--pool", "q"], 0),
    "preempt upcoming": (["preempt", "--tenant", "hi", "--target", "lo", "--upcoming"], 0),
    "preempt outranked": (["preempt", "--tenant", "lo", "--target", "hi"], 4),
    "preempt nothing": (["preempt", "--tenant", "hi", "--target", "idle"], 1),
    "preempt unknown pool": (["preempt", "--tenant", "hi", "--target", "lo", "--pool", "zz"], 1),
    # pool resize
    "pool resize": (["pool", "resize", "--name", "p", "--cpu", "16", "--memory", "8192"], 0),
    "pool resize gpu": (["pool", "resize", "--name", "p", "--gpu", "2"], 0),
    "pool resize below reserved": (["pool", "resize", "--name", "p", "--cpu", "5"], 4),
    "pool resize all zero": (
        ["pool", "resize", "--name", "q", "--cpu", "0", "--memory", "0", "--gpu", "0"],
        2,
    ),
    # pool delete
    "pool delete refused": (["pool", "delete", "--name", "p"], 4),
    "pool delete force": (["pool", "delete", "--name", "p", "--force"], 0),
    "pool delete empty": (["pool", "delete", "--name", "r"], 0),
    "pool delete unknown": (["pool", "delete", "--name", "zz", "--force"], 1),
    # tenant remove
    "tenant remove refused": (["tenant", "remove", "--name", "lo"], 4),
    "tenant remove force": (["tenant", "remove", "--name", "lo", "--force"], 0),
    "tenant remove idle": (["tenant", "remove", "--name", "idle"], 0),
    "tenant remove unknown": (["tenant", "remove", "--name", "zz"], 1),
}


def dump(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def count_events(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        connection.close()


class Masker:
    """Replaces ids and times that did not exist before the command: each new id
    by <ID1>, <ID2>… in order of appearance; each new time (and every time shown
    to the second, as text output does) by <TIME>."""

    def __init__(self, before: list[str]) -> None:
        text = "\n".join(before)
        self.known_ids = set(HEX_ID.findall(text))
        self.known_times: set[str] = set()
        # Only the JSON form (microseconds): a time shown to the second in text
        # could be a new one that falls in the same second as an old one.
        for stored in STORED_TIME.findall(text):
            moment = datetime.fromisoformat(stored)
            self.known_times.add(moment.isoformat(timespec="microseconds") + "Z")

    def __call__(self, text: str) -> str:
        new: dict[str, str] = {}

        def name(match: re.Match[str]) -> str:
            found = match.group(0)
            if found in self.known_ids:
                return found
            return new.setdefault(found, f"<ID{len(new) + 1}>")

        text = HEX_ID.sub(name, text)
        return ANY_TIME.sub(
            lambda m: m.group(0) if m.group(0) in self.known_times else "<TIME>", text
        )


def strip_dry(result: Result, as_json: bool, code: int) -> str:
    """The dry run's stdout without what marks it as one."""
    if code != 0:
        assert result.stdout == ""
        return result.stdout
    if as_json:
        payload: dict[str, Any] = json.loads(result.stdout)
        assert payload.pop("dry_run") is True
        return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    first, _, rest = result.stdout.partition("\n")
    assert first == DRY_LINE
    return rest


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("case", list(CASES))
def test_dry_run_changes_nothing_and_predicts_the_real_command(
    template: tuple[Path, dict[str, str]], case: str, as_json: bool
) -> None:
    source, ids = template
    path = Path(os.environ["RESGATE_DB"])
    shutil.copy(source, path)
    args, code = CASES[case]
    args = [a.format(**ids) for a in args]
    if as_json:
        args.append("--json")
    before = dump(path)
    events = count_events(path)

    # One instant for both runs: a delta such as "1h4s later than before" would
    # otherwise change when they straddle a second.
    clock = FixedClock(SystemClock().now())
    dry = run_cli(*args, "--dry-run", clock=clock)
    assert dry.code == code, dry
    assert dump(path) == before, "the dry run changed the database"
    assert count_events(path) == events

    real = run_cli(*args, clock=clock)
    assert real.code == code, real
    mask = Masker(before)
    assert mask(strip_dry(dry, as_json, code)) == mask(real.stdout)
    assert mask(dry.stderr) == mask(real.stderr)
    if code == 0:
        assert DRY_LINE not in real.stdout and '"dry_run"' not in real.stdout
        assert dump(path) != before, "the real command changed nothing"
        assert count_events(path) > events
    else:
        assert real.stdout == "" and real.stderr.startswith("Error: ")
        assert dump(path) == before


def test_dry_run_of_a_preemption_names_the_victims_it_would_take(
    template: tuple[Path, dict[str, str]],
) -> None:
    """Beyond masking: the ids a dry run names as victims are exactly those the
    real command takes, and they are still active after the dry run."""
    source, ids = template
    path = Path(os.environ["RESGATE_DB"])
    shutil.copy(source, path)
    command = [
        "--db",
        str(path),
        "reserve",
        "--tenant",
        "hi",
        "--pool",
        "p",
        "--cpu",
        "5",
        "--gpu",
        "3",
        "--preempt",
        "--json",
    ]
    dry = json.loads(ok(run_cli, *command, "--dry-run").stdout)
    victims = [v["id"] for v in dry["preempted"]]
    assert victims and set(victims) <= {ids["lo_p"], ids["mid_p"]}
    listed = json.loads(ok(run_cli, "--db", str(path), "list", "--json").stdout)
    assert {r["id"] for r in listed} >= set(victims)
    real = json.loads(ok(run_cli, *command).stdout)
    assert [v["id"] for v in real["preempted"]] == victims
    assert all(v["preempted_for"] == real["reservation"]["id"] for v in real["preempted"])


def test_dry_run_creates_no_database(tmp_path: Path, cli: Callable[..., Result]) -> None:
    missing = tmp_path / "nothing-here.db"
    result = cli(
        "--db", str(missing), "reserve", "--tenant", "t", "--pool", "p", "--cpu", "1", "--dry-run"
    )
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == "Error: tenant 't' not found (see: resgate tenant list)\n"
    assert not missing.exists()
    assert list(tmp_path.glob("nothing-here.db*")) == []
    real = cli("--db", str(missing), "reserve", "--tenant", "t", "--pool", "p", "--cpu", "1")
    assert (real.code, real.stdout, real.stderr) == (result.code, result.stdout, result.stderr)
