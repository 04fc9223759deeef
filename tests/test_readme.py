"""The README's examples work as written: the state file of "Coming from the Go
version" imports, and every `resgate` line of "Pool policies" runs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from helpers import Cli, ok

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    following = re.search(r"\n#{2,3} ", README[start + len(title) + 2 :])
    end = start + len(title) + 2 + following.start() if following else len(README)
    return README[start:end]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def run_blocks(cli: Cli, *titles: str) -> None:
    """Every line of each section's `sh` block, in order, as `resgate` runs it."""
    for title in titles:
        (commands,) = blocks(section(title), "sh")
        for line in commands.splitlines():
            words = shlex.split(line, comments=True)
            assert words[0] == "resgate", line
            ok(cli, *words[1:])


def test_the_state_file_example_imports(cli: Cli, tmp_path: Path):
    (example,) = [b for b in blocks(section("## Coming from the Go version"), "json")
                  if '"history"' in b]  # fmt: skip
    path = tmp_path / "state.json"
    path.write_text(example)
    summary = json.loads(ok(cli, "import-state", str(path), "--json").stdout)
    assert summary["created"] == {"pools": 1, "tenants": 1, "reservations": 2}
    assert summary["statuses"] == {"active": 1, "expired": 0, "released": 1}


def test_the_pool_policies_commands_run(cli: Cli):
    run_blocks(cli, "### Pool policies")


def test_the_booking_ahead_commands_run(cli: Cli):
    run_blocks(cli, "## Booking ahead")
    upcoming = ok(cli, "list", "--status", "upcoming", "--json").stdout
    assert [r["status"] for r in json.loads(upcoming)] == ["upcoming"] * 3
    refused = cli(*shlex.split(
        "reserve --tenant nlp --pool gpu-box --gpu 4 --start 'tomorrow 10:00' --duration 1h"
    ))  # fmt: skip
    assert refused.code == 3 and "insufficient resources in 'gpu-box' from " in refused.stderr


def test_the_finding_a_slot_commands_run(cli: Cli):
    run_blocks(cli, "## Booking ahead", "### Finding a slot")
    # As the README shows: cv's 4 GPUs fit from 12:00, when nlp's and cv's
    # morning bookings end, on 4-7 (cv's 12:00 booking holds 0-3).
    booked = json.loads(ok(cli, "list", "-t", "cv", "--status", "upcoming", "--json").stdout)
    latest = max(booked, key=lambda r: r["created_at"])
    noon = [r for r in booked if r is not latest and r["starts_at"] == latest["starts_at"]]
    assert noon and latest["gpu_ids"] == [4, 5, 6, 7]
    assert latest["ends_at"] is not None


def test_the_preempting_the_future_commands_run(cli: Cli):
    run_blocks(cli, "## Booking ahead", "### Preempting the future")
    # As the README says: both morning bookings end at prod's start, the noon one stays.
    booked = json.loads(ok(cli, "list", "--status", "upcoming", "--json").stdout)
    prod = [r for r in booked if r["tenant"] == "prod"]
    truncated = [r for r in booked if r["preempt_at"] is not None]
    assert len(prod) == 1 and len(truncated) == 2
    assert {r["tenant"] for r in truncated} == {"nlp", "cv"}
    assert all(r["preempt_at"] == prod[0]["starts_at"] for r in truncated)
    assert "Preempted ahead: " in ok(cli, "pool", "show", "gpu-box").stdout
