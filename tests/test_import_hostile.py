"""README "Exit codes" and "Coming from the Go version": `import-state PATH` given
something that is not a sane state file.

Each case ends quickly, with bounded memory, in one line `Error: ...` and exit 1
(StateFileError's code, as for every other bad file), and creates no database. The
cases that hung or ate memory before (a FIFO, /dev/zero) run in a subprocess with a
timeout and a memory limit, so a regression fails instead of stalling the suite."""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
from pathlib import Path

import pytest
from harness import resgate_command

from resgate.engine import importer

pytestmark = pytest.mark.sqlite_only

TIMEOUT = 30  # seconds: generous for a slow CI machine; a hang would be endless
MEMORY = 1 << 30  # address space of the subprocess; reading /dev/zero would exceed it


def database_exists() -> bool:
    return Path(os.environ["RESGATE_DB"]).exists()


def in_subprocess(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    return subprocess.run(
        [*resgate_command(), "import-state", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=limit,
    )


def expect_error(cli, path: Path | str, message: str) -> None:
    result = cli("import-state", str(path))
    assert (result.code, result.stdout) == (1, ""), result
    assert result.stderr == f"Error: {message}\n"
    assert not database_exists()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "state.json"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- not a regular file


def test_a_fifo_is_refused_without_waiting_for_a_writer(
    tmp_path: Path, subprocess_env: dict[str, str]
):
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    result = in_subprocess(subprocess_env, str(fifo))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error: cannot read {fifo}: not a regular file\n"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not database_exists()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_dev_zero_is_refused_without_reading_it(subprocess_env: dict[str, str]):
    result = in_subprocess(subprocess_env, "/dev/zero")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "Error: cannot read /dev/zero: not a regular file\n"
    assert not database_exists()


def test_a_link_to_a_fifo_is_refused(tmp_path: Path, subprocess_env: dict[str, str]):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "state.json"
    link.symlink_to(fifo)
    result = in_subprocess(subprocess_env, str(link))
    assert (result.returncode, result.stderr) == (
        1,
        f"Error: cannot read {link}: not a regular file\n",
    )


def test_a_directory_is_refused(cli, tmp_path: Path):
    expect_error(cli, tmp_path, f"cannot read {tmp_path}: Is a directory")


def test_a_dangling_link_is_refused(cli, tmp_path: Path):
    link = tmp_path / "state.json"
    link.symlink_to("gone.json")
    expect_error(cli, link, f"cannot read {link}: dangling symbolic link")


def test_a_path_in_a_missing_directory_is_refused(cli, tmp_path: Path):
    path = tmp_path / "missing" / "state.json"
    expect_error(cli, path, f"cannot read {path}: No such file or directory")


# ---------------------------------------------------------------- too large


def test_a_file_over_the_limit_is_refused_before_reading(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(importer, "MAX_STATE_BYTES", 1 << 20)
    path = write(tmp_path, "{}" + " " * (1 << 20))
    expect_error(cli, path, f"cannot read {path}: larger than 1 MiB")


def test_a_file_of_exactly_the_limit_is_read(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(importer, "MAX_STATE_BYTES", 64)
    path = write(tmp_path, "{}".ljust(64))
    result = cli("import-state", str(path), "--json")
    assert result.code == 0, result
    assert json.loads(result.stdout)["created"]["pools"] == 0


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
def test_a_file_longer_than_its_size_says_is_cut_at_the_limit(cli, monkeypatch: pytest.MonkeyPatch):
    """/proc files say they are empty: what is read is bounded, not what stat says
    (as for a file that grows while it is read)."""
    assert os.stat("/proc/self/status").st_size == 0
    monkeypatch.setattr(importer, "MAX_STATE_BYTES", 64)
    expect_error(cli, "/proc/self/status", "cannot read /proc/self/status: larger than 64 bytes")


def test_the_limit_is_generous():
    assert importer.MAX_STATE_BYTES >= 256 * 2**20


# ---------------------------------------------------------------- hostile JSON


@pytest.mark.parametrize("opening", ["[", '{"a": ', '{"pools": {"p": {"total": {"cpu": ['])
def test_deep_nesting_is_a_clear_error(cli, tmp_path: Path, opening: str):
    path = write(tmp_path, opening * 100_000)
    expect_error(cli, path, f"{path}: invalid JSON: arrays or objects nested too deeply")


def test_nesting_that_parses_is_refused_by_its_shape(cli, tmp_path: Path):
    value = "[" * 500 + "]" * 500
    path = write(tmp_path, f'{{"pools": {{"p": {{"total": {{"cpu": {value}}}}}}}}}')
    expect_error(cli, path, "pools.p.total.cpu: expected a whole number, got an array")


def test_a_huge_value_is_not_copied_into_the_message(cli, tmp_path: Path):
    document = {"pools": {"p": {"total": {"cpu": list(range(100_000))}}}}
    path = write(tmp_path, json.dumps(document))
    expect_error(cli, path, "pools.p.total.cpu: expected a whole number, got an array")
    path = write(tmp_path, json.dumps({"pools": {"p": {"total": {"gpu": 1.5e300}}}}))
    expect_error(cli, path, "pools.p.total.gpu: expected a whole number, got a number (1.5e+300)")


@pytest.mark.parametrize("sign", ["", "-"])
def test_a_number_of_5000_digits_is_refused_with_its_path(cli, tmp_path: Path, sign: str):
    number = sign + "7" * 5000
    path = write(tmp_path, f'{{"pools": {{"p": {{"total": {{"cpu": {number}}}}}}}}}')
    expect_error(cli, path, "pools.p.total.cpu: number of 5000 digits is out of range")
    history = [
        {
            "id": "0123456789abcdef",
            "tenant_name": "t",
            "pool_name": "p",
            "created_at": "2026-01-05T10:00:03Z",
            "ttl": 0,
        }
    ]
    text = json.dumps({"history": history}).replace('"ttl": 0', '"ttl": ' + "9" * 5000)
    expect_error(
        cli, write(tmp_path, text), "history[0].ttl: number of 5000 digits is out of range"
    )


def test_a_number_of_5000_digits_where_nothing_reads_it_is_ignored(cli, tmp_path: Path):
    """Unknown keys inside an entry are ignored (README, "Coming from the Go
    version"), however long their values."""
    number = "1" * 5000
    path = write(tmp_path, f'{{"pools": {{"p": {{"version": {number}, "total": {{"cpu": 4}}}}}}}}')
    result = cli("import-state", str(path), "--json")
    assert result.code == 0, result
    assert json.loads(result.stdout)["created"]["pools"] == 1


def test_a_long_number_within_the_digit_bound_is_out_of_range(cli, tmp_path: Path):
    number = "9" * 60
    path = write(tmp_path, f'{{"pools": {{"p": {{"total": {{"cpu": {number}}}}}}}}}')
    result = cli("import-state", str(path))
    assert result.code == 1 and result.stderr.startswith("Error: pools.p.total.cpu: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("active", "the active map is 'reservations'"),
        ("pool", "did you mean 'pools'?"),
        ("Tenants", "did you mean 'tenants'?"),
        ("version", "known: pools, tenants, reservations, history"),
    ],
)
def test_an_unknown_top_level_key_is_refused(cli, tmp_path: Path, key: str, hint: str):
    path = write(tmp_path, json.dumps({"pools": {}, key: {}}))
    result = cli("import-state", str(path))
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == f"Error: {path}: unknown key '{key}' ({hint})\n"
    assert cli("pool", "list", "--json").stdout == "[]\n"
