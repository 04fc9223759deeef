"""`resgate run --reservation ID` with real processes (README "Booking ahead"): it
waits for the booking's start, runs COMMAND on it, stops it at the booking's end
(exit 124), gives the booking back when COMMAND ends early, and ends with exit 75
when the booking goes while it waits; one run per booking."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import resgate_command
from helpers import Cli, js, ok

pytestmark = pytest.mark.sqlite_only

TIMEOUT = 60
# The job: its environment and start time to a file, then sleep (or exit CODE).
JOB = "import json, os, sys, time; " + (
    "json.dump({'gpus': os.environ['CUDA_VISIBLE_DEVICES'], "
    "'id': os.environ['RESGATE_RESERVATION_ID'], 'at': time.time()}, open(sys.argv[1], 'w')); "
    "time.sleep(30) if sys.argv[2] == 'sleep' else sys.exit(int(sys.argv[2]))"
)


@pytest.fixture
def box(cli: Cli) -> Cli:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "4", "--gpu", "2")
    ok(cli, "tenant", "add", "--name", "t")
    return cli


def book(cli: Cli, start: str, length: str) -> str:
    made = js(cli, "reserve", "-t", "t", "--gpu-ids", "1", "--start", start, "--duration", length)
    return str(made["id"])


def start(env: dict[str, str], rid: str, *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*resgate_command(), "run", "--reservation", rid, "--grace", "1s", "--", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def job(tmp_path: Path, then: str) -> list[str]:
    return [sys.executable, "-c", JOB, str(tmp_path / "job.json"), then]


def reservation(cli: Cli, rid: str) -> dict:
    (row,) = [r for r in js(cli, "list", "--all") if r["id"] == rid]
    return row


def test_it_waits_runs_and_stops_at_the_end(box: Cli, subprocess_env, tmp_path: Path) -> None:
    rid = book(box, "+3s", "6s")
    begun = time.time()
    done = start(subprocess_env, rid, *job(tmp_path, "sleep"))
    _, err = done.communicate(timeout=TIMEOUT)
    took = time.time() - begun
    assert done.returncode == 124, err
    ran = json.loads((tmp_path / "job.json").read_text())
    assert (ran["gpus"], ran["id"]) == ("1", rid)
    booked = reservation(box, rid)
    starts = booked["starts_at"]
    assert ran["at"] >= _epoch(starts) - 0.05  # not before the start
    lines = err.splitlines()
    assert lines[0].startswith(f"resgate: reservation {rid} starts at ")
    assert lines[0].endswith("; waiting…")
    assert lines[1].startswith(f"resgate: reservation {rid} ends at ")
    assert lines[1].endswith(" (the booking ends); stopping the job")
    assert 8 <= took < 20, took
    assert booked["status"] in ("released", "expired") and booked["ended_at"]


def test_an_early_end_gives_the_booking_back(box: Cli, subprocess_env, tmp_path: Path) -> None:
    rid = book(box, "+1s", "1h")
    done = start(subprocess_env, rid, *job(tmp_path, "3"))
    _, err = done.communicate(timeout=TIMEOUT)
    assert done.returncode == 3, err
    assert reservation(box, rid)["status"] == "released"


def test_a_booking_cancelled_while_waiting_is_exit_75(
    box: Cli, subprocess_env, tmp_path: Path
) -> None:
    rid = book(box, "+1h", "1h")
    done = start(subprocess_env, rid, *job(tmp_path, "0"))
    _wait_for_runner(box, rid)
    ok(box, "unreserve", rid)
    _, err = done.communicate(timeout=TIMEOUT)
    assert done.returncode == 75, err
    assert err.splitlines()[-1] == (
        f"Error: reservation {rid} was released by someone else before it started"
    )
    assert not (tmp_path / "job.json").exists()


def test_one_run_per_booking_and_a_dead_one_is_replaced(
    box: Cli, subprocess_env, tmp_path: Path
) -> None:
    rid = book(box, "+1h", "1h")
    first = start(subprocess_env, rid, *job(tmp_path, "0"))
    _wait_for_runner(box, rid)
    second = start(subprocess_env, rid, "true")
    _, err = second.communicate(timeout=TIMEOUT)
    assert second.returncode == 4
    host = socket.gethostname()
    assert err == f"Error: reservation {rid} is already running (pid {first.pid} on {host})\n"
    # SIGINT while waiting: exit 130, the booking stays, nobody runs it any more.
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 130, err
    assert reservation(box, rid)["status"] == "upcoming"
    assert _runner(box, rid) is None
    # A run killed outright leaves its runner behind; the next run on this host
    # sees that it is gone and takes the booking.
    third = start(subprocess_env, rid, "true")
    _wait_for_runner(box, rid)
    third.kill()
    third.communicate(timeout=TIMEOUT)
    assert _runner(box, rid) is not None
    fourth = start(subprocess_env, rid, "true")
    _wait_for_runner(box, rid, pid=fourth.pid)
    fourth.send_signal(signal.SIGINT)
    fourth.communicate(timeout=TIMEOUT)
    assert fourth.returncode == 130


@pytest.mark.parametrize(
    "extra", [["--gpu", "1"], ["-t", "t"], ["--ttl", "5m"], ["--preempt"], ["--time-limit", "1h"]]
)
def test_options_of_a_new_reservation_are_refused(box: Cli, extra: list[str]) -> None:
    rid = book(box, "+1h", "1h")
    done = box("run", "--reservation", rid, *extra, "--", "true")
    assert done.code == 2 and done.stderr.startswith("Error: --reservation runs on the booking")
    assert _runner(box, rid) is None


def _epoch(iso: str) -> float:
    from datetime import UTC, datetime

    return datetime.fromisoformat(iso.rstrip("Z")).replace(tzinfo=UTC).timestamp()


def _runner(cli: Cli, rid: str) -> str | None:
    import sqlite3

    with sqlite3.connect(os.environ["RESGATE_DB"]) as db:
        row = db.execute("SELECT runner FROM reservations WHERE id = ?", (rid,)).fetchone()
    return None if row is None else row[0]


def _wait_for_runner(cli: Cli, rid: str, pid: int | None = None) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        runner = _runner(cli, rid)
        if runner is not None and (pid is None or runner.startswith(f"{pid}@")):
            return
        assert time.monotonic() < deadline, "the run never claimed the booking"
        time.sleep(0.05)


def test_a_run_truncated_by_a_booking_ahead_is_warned_and_stopped_then(
    box: Cli, subprocess_env, tmp_path: Path
) -> None:
    """README "Booking ahead": a higher-priority booking that truncates the running
    reservation; `run` learns of it at its next renewal or look, says so at once,
    and stops the job at that instant by the planned-stop rule (exit 75)."""
    ok(box, "tenant", "add", "--name", "prod", "--priority", "9")
    done = subprocess.Popen(
        [*resgate_command(), "run", "-t", "t", "--gpu", "2", "--ttl", "6s", "--grace", "1s",
         "--", *job(tmp_path, "sleep")],
        env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while not (tmp_path / "job.json").exists():
        assert time.monotonic() < deadline and done.poll() is None, done.communicate()
        time.sleep(0.05)
    rid = json.loads((tmp_path / "job.json").read_text())["id"]
    booked = js(box, "reserve", "-t", "prod", "--gpu", "2", "--start", "+6s", "--duration",
                "1m", "--preempt")  # fmt: skip
    preempt_at = _epoch(reservation(box, rid)["preempt_at"])
    _, err = done.communicate(timeout=TIMEOUT)
    ended = time.time()
    assert done.returncode == 75, err
    line = f"resgate: reservation {rid} ends at "
    assert any(
        ln.startswith(line) and ln.endswith(" (preempted by 'prod'); stopping the job")
        for ln in err.splitlines()
    ), err
    # Stopped by the instant (SIGTERM a grace before it), not long after.
    assert preempt_at - 2.5 <= ended <= preempt_at + 2.5, (ended, preempt_at)
    # Not given back early: it ends at the instant, as preempted.
    assert reservation(box, rid)["status"] == (
        "active" if time.time() < preempt_at else "preempted"
    )
    time.sleep(max(0.0, preempt_at - time.time()) + 0.1)
    assert reservation(box, rid)["status"] == "preempted"
    assert booked["preempted"][0]["id"] == rid


def test_a_pardoned_run_goes_on(box: Cli, subprocess_env, tmp_path: Path) -> None:
    """The truncation is withdrawn (its booking cancelled before its start): the run
    says so and its job goes on past the instant it would have stopped at."""
    ok(box, "tenant", "add", "--name", "prod", "--priority", "9")
    errors = (tmp_path / "stderr").open("w")
    done = subprocess.Popen(
        [*resgate_command(), "run", "-t", "t", "--gpu", "2", "--ttl", "6s", "--grace", "1s",
         "--", *job(tmp_path, "sleep")],
        env=subprocess_env, stdout=subprocess.PIPE, stderr=errors, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (tmp_path / "job.json").exists():
            assert time.monotonic() < deadline and done.poll() is None
            time.sleep(0.05)
        rid = json.loads((tmp_path / "job.json").read_text())["id"]
        prod = js(box, "reserve", "-t", "prod", "--gpu", "2", "--start", "+8s", "--duration",
                  "1m", "--preempt")["reservation"]["id"]  # fmt: skip
        stop_at = _epoch(reservation(box, rid)["preempt_at"])
        while "(preempted by 'prod'); stopping the job" not in (tmp_path / "stderr").read_text():
            assert time.monotonic() < deadline and done.poll() is None
            time.sleep(0.05)
        ok(box, "unreserve", prod)
        assert reservation(box, rid)["preempt_at"] is None
        time.sleep(max(0.0, stop_at - time.time()) + 2)
        assert done.poll() is None, (tmp_path / "stderr").read_text()
        assert reservation(box, rid)["status"] == "active"
        assert "is no longer preempted" in (tmp_path / "stderr").read_text()
    finally:
        done.send_signal(signal.SIGTERM)
        done.communicate(timeout=TIMEOUT)
        errors.close()
    assert done.returncode == 143
