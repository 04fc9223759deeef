"""`reserve --wait` with real processes on both databases (README "Waiting in line"):
a waiter gets in when a release makes room (and how soon is measured), prints where
it stands, leaves the line on SIGINT (exit 130) or at its timeout (exit 3), and a
waiter killed outright has its ticket abandoned by the next write. Nothing is
reserved for a ticket that did not get in."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from harness import resgate_command
from helpers import js, ok, out

pytestmark = pytest.mark.usefixtures("backend")

TIMEOUT = 60


@pytest.fixture
def full(cli: Any) -> str:
    """Pool box with 4 GPUs, all held by nlp; the id of that reservation."""
    ok(cli, "pool", "create", "--name", "box", "--cpu", "8", "--gpu", "4",
       "--per-tenant", "unlimited")  # fmt: skip
    ok(cli, "tenant", "add", "nlp")
    ok(cli, "tenant", "add", "cv")
    return out(cli, "reserve", "-q", "-t", "nlp", "-p", "box", "--gpu", "4").strip()


def waiter(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*resgate_command(), "reserve", "-t", "cv", "-p", "box", "--gpu", "2",
         "--duration", "1h", "--wait", "--json", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def in_line(cli: Any, done: subprocess.Popen[str]) -> dict[str, Any]:
    """The waiter's ticket, once it has one."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        tickets = js(cli, "queue")
        if tickets:
            return dict(tickets[0])
        assert done.poll() is None and time.monotonic() < deadline, done.communicate()
        time.sleep(0.05)


def test_a_release_lets_the_waiter_in(cli: Any, full: str, subprocess_env, backend) -> None:
    done = waiter(subprocess_env)
    ticket = in_line(cli, done)
    assert (ticket["tenant"], ticket["position"], ticket["reason"]) == ("cv", 1, "capacity")
    assert ticket["eta"] is None  # an open-ended holder is in the way
    out(cli, "unreserve", full)
    released = time.monotonic()
    stdout, stderr = done.communicate(timeout=TIMEOUT)
    took = time.monotonic() - released
    assert done.returncode == 0, stderr
    got = json.loads(stdout)
    assert (got["tenant"], got["gpu"], got["status"]) == ("cv", 2, "active")
    assert stderr.startswith(
        f"resgate: waiting for gpu=2 in 'box': position 1 of 1, ETA unknown "
        f"(held by nlp {full[:8]}… open-ended; ticket {ticket['ticket'][:8]}…)"
    )
    # Admitted by the release's own transaction; the waiter sees it on its next look.
    assert took < 1.0, took
    print(f"{backend}: the waiter came back {took * 1000:.0f} ms after the release")
    assert js(cli, "queue") == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_leaves_the_line_with_nothing_reserved(
    cli: Any, full: str, subprocess_env, signum: int, code: int
) -> None:
    done = waiter(subprocess_env)
    ticket = in_line(cli, done)
    done.send_signal(signum)
    _, stderr = done.communicate(timeout=TIMEOUT)
    assert done.returncode == code, stderr
    assert stderr.rstrip().endswith("; nothing was changed")
    assert js(cli, "queue") == []
    out(cli, "unreserve", full)
    assert [r["tenant"] for r in js(cli, "list")] == []  # nothing was reserved for cv
    events = [e for e in json.loads(out(cli, "audit", "log", "--json"))
              if e["subject"] == ticket["ticket"]]  # fmt: skip
    assert [e["action"] for e in events] == ["request.enqueue", "request.cancel"]


def test_the_timeout_ends_the_ticket_with_exit_3(cli: Any, full: str, subprocess_env) -> None:
    done = waiter(subprocess_env, "--timeout", "2s")
    _, stderr = done.communicate(timeout=TIMEOUT)
    assert done.returncode == 3, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error: insufficient resources in 'box'")
    assert "; waited 2s, position 1, ETA unknown" in last, last
    assert js(cli, "queue") == []


@pytest.mark.sqlite_only  # one host: the waiter's pid tells (PostgreSQL: its heartbeat)
def test_a_killed_waiter_is_abandoned_by_the_next_write(
    cli: Any, full: str, subprocess_env
) -> None:
    done = waiter(subprocess_env)
    ticket = in_line(cli, done)
    done.kill()
    done.communicate(timeout=TIMEOUT)
    ok(cli, "sweep")
    assert js(cli, "queue") == []
    events = [e for e in json.loads(out(cli, "audit", "log", "--json"))
              if e["subject"] == ticket["ticket"]]  # fmt: skip
    assert events[-1]["action"] == "request.abandon"


def test_what_never_fits_and_wrong_options_are_refused_at_once(cli: Any, full: str) -> None:
    huge = cli("reserve", "-t", "cv", "-p", "box", "--gpu", "5", "--wait")
    assert huge.code == 3 and "can never be admitted" in huge.stderr
    assert cli("reserve", "-t", "cv", "-p", "box", "--gpu", "1", "--timeout", "1m").code == 2
    early = cli("reserve", "-t", "cv", "-p", "box", "--gpu", "1", "--wait", "--start", "+1h")
    assert early.code == 2 and "--wait" in early.stderr
    assert js(cli, "queue") == []


def test_queue_cancel_withdraws_a_ticket(cli: Any, full: str, subprocess_env) -> None:
    done = waiter(subprocess_env)
    ticket = in_line(cli, done)
    shown = out(cli, "queue")
    assert ticket["ticket"][:8] in shown and "capacity" in shown
    assert out(cli, "queue", "cancel", ticket["ticket"][:6]) == (
        f"Ticket '{ticket['ticket']}' cancelled\n"
    )
    _, stderr = done.communicate(timeout=TIMEOUT)
    assert done.returncode == 4, stderr
    assert "was cancelled: withdrawn" in stderr


def test_twins_under_one_request_id_share_a_ticket(cli: Any, full: str, subprocess_env) -> None:
    first = waiter(subprocess_env, "--request-id", "job-7")
    in_line(cli, first)
    twins = [first, waiter(subprocess_env, "--request-id", "job-7")]
    time.sleep(2)  # the second has joined by now: the first's ticket
    assert len(js(cli, "queue")) == 1
    out(cli, "unreserve", full)
    got = [json.loads(done.communicate(timeout=TIMEOUT)[0])["id"] for done in twins]
    assert got[0] == got[1]
    assert all(done.returncode == 0 for done in twins)


def test_a_dry_run_says_where_it_would_wait(cli: Any, full: str) -> None:
    said = out(cli, "reserve", "-t", "cv", "-p", "box", "--gpu", "2", "--wait", "--dry-run")
    assert said.splitlines()[1].startswith(
        "Would wait in line for gpu=2 in 'box': position 1 of 1, ETA unknown"
    )
    assert js(cli, "queue") == []


@pytest.mark.sqlite_only  # the file's data_version counts every commit
def test_idle_waiters_write_nothing(cli: Any, full: str, subprocess_env) -> None:
    """Twenty waiters behind an open-ended holder (no ETA): in three seconds none of
    them commits anything; they only read."""
    import os
    import sqlite3

    waiters = [waiter(subprocess_env) for _ in range(20)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(js(cli, "queue")) < len(waiters):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1)  # every one has said where it stands
        watcher = sqlite3.connect(os.environ["RESGATE_DB"])
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
        time.sleep(3)
        after = watcher.execute("PRAGMA data_version").fetchone()[0]
        watcher.close()
        assert after == before, "an idle waiter wrote"
    finally:
        for done in waiters:
            done.send_signal(signal.SIGINT)
        for done in waiters:
            done.communicate(timeout=TIMEOUT)
    assert js(cli, "queue") == []


def test_the_clock_alone_lets_a_waiter_in(cli: Any, subprocess_env) -> None:
    """A holder that ends by its TTL, and nobody else writing: the waiter takes its
    turn at the holder's end, by itself."""
    ok(cli, "pool", "create", "--name", "box", "--cpu", "8", "--gpu", "4")
    ok(cli, "tenant", "add", "nlp")
    ok(cli, "tenant", "add", "cv")
    held = js(cli, "reserve", "-t", "nlp", "-p", "box", "--gpu", "4", "--ttl", "3s")
    done = waiter(subprocess_env)
    stdout, stderr = done.communicate(timeout=TIMEOUT)
    came = time.time()
    assert done.returncode == 0, stderr
    ends = datetime.fromisoformat(held["expires_at"].rstrip("Z")).replace(tzinfo=UTC).timestamp()
    assert ends <= came < ends + 1.5, (ends, came)
    assert "ETA " in stderr and "ETA unknown" not in stderr
    assert json.loads(stdout)["status"] == "active"


def test_run_waits_in_line_then_runs_on_a_lease(cli: Any, full: str, subprocess_env) -> None:
    """`run --wait`: the job starts once a release lets the run in, on a lease that
    run renews, with its runner recorded; the reservation is given back at the end."""
    job = "import os, time; print(os.environ['RESGATE_RESERVATION_ID'], flush=True); time.sleep(1)"
    done = subprocess.Popen(
        [*resgate_command(), "run", "-t", "cv", "-p", "box", "--gpu", "2", "--ttl", "6s",
         "--wait", "--", sys.executable, "-c", job],
        env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ticket = in_line(cli, done)
    assert ticket["request"]["duration"] is None  # a lease: open in the plan, as run's are
    out(cli, "unreserve", full)
    assert done.stdout is not None
    rid = done.stdout.readline().strip()
    (running,) = [r for r in js(cli, "list") if r["id"] == rid]
    assert (running["tenant"], running["lease"], running["gpu"]) == ("cv", True, 2)
    _, stderr = done.communicate(timeout=TIMEOUT)
    assert done.returncode == 0, stderr
    assert "resgate: waiting for gpu=2 in 'box'" in stderr
    (ended,) = [r for r in js(cli, "list", "--all") if r["id"] == rid]
    assert ended["status"] == "released"
