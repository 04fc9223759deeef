"""README "Using it" and README "Exit codes": what `export --output PATH` may replace, and how.

An existing report keeps its mode and owner, a new one is no more readable than the
database, a symbolic link is written through, and anything that is not a regular
file (a device, a FIFO, a directory, a link to an open file such as /dev/stdout) is
refused with exit 1 before anything is written, leaving nothing behind.

Devices are made under tmp_path with os.mknod, never the system's own: the code
before these tests replaced /dev/stdout with a regular file. os.mknod and os.chown
need root: those tests are marked `root` (CI runs as root; elsewhere deselect them
with -m "not root") rather than skipped."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import resgate_command

from resgate.render import data

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def filled(cli) -> None:
    result = cli("pool", "create", "--name", "p", "--cpu", "4")
    assert result.code == 0, result


@pytest.fixture
def umask() -> Iterator[None]:
    """Run with umask 022, the usual one, whatever the test runner's is."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def export_to(cli, target: Path | str):
    return cli("export", "--output", str(target))


def exported(cli, target: Path | str) -> dict:
    result = export_to(cli, target)
    assert (result.code, result.stderr) == (0, ""), result
    return json.loads(Path(target).read_text())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def refused(cli, target: Path, reason: str = "not a regular file") -> None:
    """Exit 1, one line, nothing written beside the target or its directory."""
    before = sorted(os.listdir(target.parent))
    result = export_to(cli, target)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == f"Error: cannot write {target}: {reason}\n"
    assert sorted(os.listdir(target.parent)) == before


# ---------------------------------------------------------------- permissions


@pytest.mark.parametrize("existing", [0o600, 0o640, 0o444, 0o604], ids=oct)
def test_an_existing_report_keeps_its_mode(cli, filled, umask, tmp_path: Path, existing: int):
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(existing)
    assert exported(cli, target)["pools"][0]["name"] == "p"
    assert mode(target) == existing


@pytest.mark.root
def test_an_existing_report_keeps_its_owner_and_group(cli, filled, tmp_path: Path):
    target = tmp_path / "report.json"
    target.write_text("old")
    os.chown(target, 1234, 5678)
    exported(cli, target)
    assert (target.stat().st_uid, target.stat().st_gid) == (1234, 5678)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o600), (0o077, 0o600), (0o277, 0o400)])
def test_a_new_report_is_as_private_as_the_database(
    cli, filled, tmp_path: Path, db_path: Path, mask: int, expected: int
):
    before = os.umask(mask)
    try:
        target = tmp_path / "new.json"
        exported(cli, target)
    finally:
        os.umask(before)
    assert mode(target) == expected
    assert mode(target) & ~mode(db_path) == 0  # the database file is 0600


@pytest.mark.parametrize("existing", [0o600, 0o640, None])
def test_the_temporary_file_has_the_final_mode_before_anything_is_written(
    cli, filled, umask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: int | None
):
    target = tmp_path / "report.json"
    if existing is not None:
        target.write_text("old")
        target.chmod(existing)
    seen: list[int] = []
    real = data.write_json_report

    def spying(stream, *args, **kwargs):
        (temporary,) = (p for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
        assert temporary.name.startswith(".report.json.")
        seen.append(mode(temporary))
        return real(stream, *args, **kwargs)

    monkeypatch.setattr(data, "write_json_report", spying)
    exported(cli, target)
    assert seen == [mode(target)]
    assert mode(target) == (existing if existing is not None else 0o600)


# ---------------------------------------------------------------- symbolic links


def test_a_symbolic_link_is_written_through(cli, filled, umask, tmp_path: Path):
    reports = tmp_path / "reports"
    reports.mkdir()
    real = reports / "2026.json"
    real.write_text("old")
    real.chmod(0o640)
    (tmp_path / "links").mkdir()
    first = tmp_path / "current.json"
    first.symlink_to("reports/2026.json")
    second = tmp_path / "links" / "again.json"
    second.symlink_to("../current.json")  # a chain, relative to each link's directory
    for link in (first, second):
        assert exported(cli, link)["pools"][0]["name"] == "p"
        assert first.is_symlink() and os.readlink(first) == "reports/2026.json"
        assert second.is_symlink() and os.readlink(second) == "../current.json"
        assert json.loads(real.read_text())["pools"][0]["name"] == "p"
        assert mode(real) == 0o640
    # The temporary file was beside the real file, and is gone.
    assert sorted(os.listdir(reports)) == ["2026.json"]
    assert sorted(os.listdir(tmp_path / "links")) == ["again.json"]


def test_the_size_printed_is_the_real_files(cli, filled, tmp_path: Path):
    real = tmp_path / "real.json"
    real.write_text("")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    result = export_to(cli, link)
    assert result.stdout == f"Report exported to {link} ({real.stat().st_size} bytes)\n"


def test_a_dangling_symbolic_link_is_refused(cli, filled, tmp_path: Path):
    link = tmp_path / "report.json"
    link.symlink_to("missing.json")
    refused(cli, link, "dangling symbolic link")
    assert link.is_symlink() and not (tmp_path / "missing.json").exists()


def test_a_symbolic_link_loop_is_refused(cli, filled, tmp_path: Path):
    link = tmp_path / "loop.json"
    link.symlink_to("loop.json")
    refused(cli, link, "Too many levels of symbolic links")
    assert link.is_symlink()


# ---------------------------------------------------------------- not a regular file


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_device(path: Path) -> None:
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is


@pytest.mark.parametrize(
    ("make", "check"),
    [
        (make_fifo, stat.S_ISFIFO),
        pytest.param(make_device, stat.S_ISCHR, marks=pytest.mark.root),
    ],
    ids=["fifo", "device"],
)
@pytest.mark.parametrize("through_a_link", [False, True], ids=["direct", "symlink"])
def test_a_device_or_fifo_is_refused_and_left_as_it_is(
    cli, filled, tmp_path: Path, make, check, through_a_link: bool
):
    special = tmp_path / "special"
    make(special)
    target = special
    if through_a_link:
        target = tmp_path / "stdout"
        target.symlink_to(special)
    refused(cli, target)
    assert check(os.lstat(special).st_mode)
    if through_a_link:
        assert target.is_symlink() and os.readlink(target) == str(special)


def test_a_directory_is_refused(cli, filled, tmp_path: Path):
    target = tmp_path / "adir"
    target.mkdir()
    refused(cli, target, "is a directory")
    assert os.listdir(target) == []


def test_a_device_is_refused_before_the_database_is_read(
    cli, filled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def never(*args, **kwargs):
        raise AssertionError("the report was written")

    monkeypatch.setattr(data, "write_json_report", never)
    refused(cli, fifo)


def test_a_target_that_becomes_a_fifo_while_written_is_not_replaced(
    cli, filled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    target = tmp_path / "report.json"
    real = data.write_json_report

    def swapping(stream, *args, **kwargs):
        os.mkfifo(target)
        return real(stream, *args, **kwargs)

    monkeypatch.setattr(data, "write_json_report", swapping)
    result = export_to(cli, target)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == f"Error: cannot write {target}: not a regular file\n"
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- links to open files


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("stdout_is", ["file", "pipe"])
def test_a_link_to_standard_output_is_refused(
    tmp_path: Path, subprocess_env: dict[str, str], stdout_is: str
):
    """A copy of /dev/stdout (a symbolic link to /proc/self/fd/1) under tmp_path: the
    process's standard output is a file, or a pipe. Neither is replaced."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    captured = tmp_path / "captured.txt"
    captured.write_text("")
    inode = captured.stat().st_ino
    command = [*resgate_command(), "export", "--output", str(link)]
    with captured.open("w") as file:
        result = subprocess.run(
            command,
            env=subprocess_env,
            stdout=file if stdout_is == "file" else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    if stdout_is == "file":
        reason = (
            "a link to an open file, not a regular file "
            "(leave out --output to write to standard output)"
        )
    else:
        reason = "not a regular file"
    assert result.stderr == f"Error: cannot write {link}: {reason}\n"
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert captured.stat().st_ino == inode and captured.read_text() == ""
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- the directory


def test_a_missing_directory_is_still_exit_1_with_the_reason(cli, filled, tmp_path: Path):
    for target, reason in [
        (tmp_path / "missing" / "report.json", "No such file or directory"),
        (tmp_path / "resgate.db" / "report.json", "Not a directory"),
    ]:
        before = sorted(os.listdir(tmp_path))
        result = export_to(cli, target)
        assert (result.code, result.stdout) == (1, "")
        assert result.stderr == f"Error: cannot write {target}: {reason}\n"
        assert sorted(os.listdir(tmp_path)) == before
