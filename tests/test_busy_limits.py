"""RESGATE_BUSY_TIMEOUT means the same on both databases: zero or less than a
millisecond fails at once (exit 5), never "wait for ever"; a value past what
the databases can hold is a malformed setting (exit 2)."""

from __future__ import annotations

import time

import pytest
from helpers import run_cli, write_lock_held

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def ready() -> None:
    assert run_cli("pool", "create", "--name", "p", "--cpu", "8").code == 0
    assert run_cli("tenant", "add", "--name", "t").code == 0


@pytest.mark.parametrize("timeout", ["0", "0.0001", "0.0009"])
def test_zero_and_tiny_timeouts_fail_at_once(
    ready: None, timeout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESGATE_BUSY_TIMEOUT", timeout)
    with write_lock_held():
        started = time.monotonic()
        result = run_cli("reserve", "--tenant", "t", "--pool", "p", "--cpu", "1")
        elapsed = time.monotonic() - started
    assert result.code == 5, result
    assert result.stderr.startswith("Error: database is busy: ")
    assert result.stderr.count("\n") == 1
    assert elapsed < 3
    assert "No reservations." in run_cli("list").stdout


@pytest.mark.parametrize("timeout", ["2147483.648", "1e10", "1e308"])
def test_timeouts_past_the_ceiling_are_malformed(
    ready: None, timeout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESGATE_BUSY_TIMEOUT", timeout)
    result = run_cli("reserve", "--tenant", "t", "--pool", "p", "--cpu", "1")
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr == (
        f"Error: RESGATE_BUSY_TIMEOUT must be at most 2147483.647 seconds, got '{timeout}'\n"
    )


def test_the_ceiling_itself_works(ready: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESGATE_BUSY_TIMEOUT", "2147483.647")
    result = run_cli("reserve", "--tenant", "t", "--pool", "p", "--cpu", "1")
    assert result.code == 0, result
