"""README "Seeing it at a glance": human tables fit the terminal (COLUMNS, else its
size, else 80) and are never cut on a pipe; `--wide` shows everything; numbers are
right-aligned; GPU devices read as ranges with their holders; memory as 8G, 1.5G,
512M; `free`; `watch`'s title line, its one screen, and `watch --json` as NDJSON.

The commands run as real processes with stdout on a pseudo-terminal (stdlib `pty`,
its window size set with TIOCSWINSZ) or a pipe, over one database of realistic
size made once for the module."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import env as subprocess_env_for
from harness import resgate_command
from helpers import js, out, reserve_id, run_cli

from resgate.clock import span
from resgate.render.fit import Column, table, text_width
from resgate.render.text import Style, memory, ranges

pytestmark = pytest.mark.sqlite_only

TIMEOUT = 60
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CLEAR = "\x1b[2J\x1b[H"
SHORT_ID = re.compile(r"\(?\b[0-9a-f]{8}…\)?")  # how `pool show` and `slots` name holders

BIG = "gpu-cluster-east"  # 16 characters, as every name here
BATCH = "cpu-batch-west01"
EDGE = "inference-edge-1"
SMALL_POOLS = [f"pool-{n:02d}-abcdefgh" for n in range(1, 29)]
TENANTS = [
    "nlp-research-lab",
    "vision-team-2026",
    "speech-synthesis",
    "robotics-control",
    "genomics-pipelne",
    "climate-modeling",
    "finance-risk-grp",
    "search-ranking-x",
    "recsys-training1",
    "ml-platform-ops1",
]
LONG_ACTOR = "ci-runner@build-host-0042.example.org"
WIDE_ACTOR = "日本語のユーザー"  # two columns a character


@dataclass(frozen=True)
class World:
    env: dict[str, str]
    db: Path
    ids: list[str]  # every reservation, in creation order


def _isolated(mp: pytest.MonkeyPatch, root: Path) -> None:
    """What conftest's isolated_env does for a test, for the module's database."""
    (root / "home").mkdir()
    mp.setenv("HOME", str(root / "home"))
    mp.setenv("XDG_DATA_HOME", str(root / "home" / "data"))
    mp.setenv("RESGATE_DB", str(root / "resgate.db"))
    for name in ("NO_COLOR", "FORCE_COLOR", "RESGATE_ACTOR", "RESGATE_CONFIG", "RESGATE_TENANT"):
        mp.delenv(name, raising=False)
    for name in ("RESGATE_POOL", "RESGATE_DEBUG", "XDG_CONFIG_HOME", "COLUMNS", "LINES"):
        mp.delenv(name, raising=False)
    mp.setattr("resgate.config.SYSTEM_FILE", root / "etc" / "config.toml")


def _pools_and_tenants() -> None:
    out(run_cli, "pool", "create", "--name", BIG, "--cpu", "256", "--memory", "1T", "--gpu", "64")
    out(run_cli, "pool", "update", BIG, "--per-tenant", "unlimited")
    out(run_cli, "pool", "create", "--name", BATCH, "--cpu", "512", "--memory", "2T")
    out(run_cli, "pool", "update", BATCH, "--per-tenant", "unlimited")
    out(run_cli, "pool", "create", "--name", EDGE, "--cpu", "64", "--memory", "1000", "--gpu", "8")
    for name in SMALL_POOLS:
        out(run_cli, "pool", "create", "--name", name, "--cpu", "16", "--memory", "1536")
    # Long, and with whoever runs the tests (only members may act for these).
    members = f"{getpass.getuser()},alice,bob,carol,dave,erin,frank,grace,heidi,ivan,judy"
    for n, name in enumerate(TENANTS):
        args = ["tenant", "add", "--name", name, "--priority", "9" if n == 0 else "5"]
        if n % 3 == 0:
            args += ["--members", members, "--max-gpu", "48", "--max-memory", "1.5T"]
        out(run_cli, *args)


def _reservations(mp: pytest.MonkeyPatch) -> list[str]:
    """50 reservations: 40 of one GPU each in BIG (holders alternate), one of the
    last 4 GPUs by id, CPU-only ones in BATCH; some released or preempted."""
    ids = []
    memories = ["8G", "1.5G", "512", "1000", "64G"]
    ttls = ["30m", "2h", "25h1m", "0", "3d"]  # none ends while the tests run
    for n in range(50):
        mp.setenv("RESGATE_ACTOR", (LONG_ACTOR, WIDE_ACTOR, "alice")[n % 3])
        tenant = TENANTS[n % len(TENANTS)]
        amounts: dict[str, object] = {"cpu": 1 + n % 4, "memory": memories[n % 5]}
        amounts["ttl"] = ttls[n % 5]
        if n < 40:
            ids.append(reserve_id(run_cli, tenant, BIG, gpu=1, **amounts))
        elif n == 40:
            ids.append(reserve_id(run_cli, tenant, BIG, **{"gpu-ids": "60,61,62,63"}, cpu=2))
        else:
            ids.append(reserve_id(run_cli, tenant, BATCH, **amounts))
    mp.delenv("RESGATE_ACTOR")
    out(run_cli, "unreserve", "--id", ids[1])
    out(run_cli, "unreserve", "--id", ids[2])
    out(run_cli, "preempt", "--tenant", TENANTS[0], "--target", TENANTS[3], "--pool", BATCH)
    out(run_cli, "reserve", "-t", TENANTS[5], "-p", EDGE, "--cpu", "1", "--ttl", "1")
    return ids


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("tables")
    with pytest.MonkeyPatch.context() as mp:
        _isolated(mp, root)
        _pools_and_tenants()
        ids = _reservations(mp)
        time.sleep(1.1)  # the last one (TTL 1s) is expired now, never swept
        env = subprocess_env_for(HOME=str(root / "home"), RESGATE_DB=str(root / "resgate.db"))
        for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "RESGATE_ACTOR"):
            env.pop(name, None)
        yield World(env, root / "resgate.db", ids)


# ---------------------------------------------------------------- running it


def display_width(line: str) -> int:
    """The columns a line takes on a terminal (counted here on its own, not with
    resgate's function)."""
    width = 0
    for char in ANSI.sub("", line):
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def on_terminal(world: World, *args: str, columns: int = 80, rows: int = 24, **extra: str) -> str:
    """Run with stdout on a pseudo-terminal of `columns` × `rows`; what it printed
    there (line ends as written)."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    attributes = termios.tcgetattr(child)
    attributes[1] &= ~termios.ONLCR  # "\n" stays "\n"
    termios.tcsetattr(child, termios.TCSANOW, attributes)
    process = subprocess.Popen(
        [*resgate_command(), *args],
        stdout=child,
        stderr=subprocess.PIPE,
        env={**world.env, **extra},
    )
    os.close(child)
    try:
        printed = _read_all(main)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        os.close(main)
    assert process.returncode == 0, err
    assert err == b""
    return printed


def _read_all(fd: int, until: str | None = None) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    while until is None or until not in b"".join(chunks).decode(errors="replace"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready or until is None, f"timed out waiting for {until!r}"
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def piped(world: World, *args: str, **extra: str) -> str:
    done = subprocess.run(
        [*resgate_command(), *args],
        capture_output=True,
        text=True,
        env={**world.env, **extra},
        timeout=TIMEOUT,
    )
    assert done.returncode == 0 and done.stderr == "", done
    return done.stdout


COMMANDS = {
    "list": ["list"],
    "list --all": ["list", "--all"],
    "pool list": ["pool", "list"],
    "pool show": ["pool", "show", "--name", BIG],
    "tenant list": ["tenant", "list"],
    "status": ["status"],
    "watch": ["watch", "--count", "1"],
    "audit log": ["audit", "log"],
    "free": ["free"],
    # 22 GPUs are free now: 24 fit once the first 30-minute reservations end.
    "slots": ["slots", "-t", TENANTS[1], "-p", BIG, "--gpu", "24", "--duration", "3h"],
    "timeline": ["timeline", "-p", BIG],
    "timeline of a pool without GPUs": ["timeline", "-p", BATCH, "--hours", "72"],
}
# Every column each command has, as its header reads on a pipe.
HEADERS = {
    "list": ["ID", "TENANT", "USER", "POOL", "CPU", "MEMORY", "GPU", "DEVICES", "STATUS"],
    "pool list": ["NAME", "CPU (USED/TOTAL)", "MEMORY (USED/TOTAL)", "GPU (USED/TOTAL)"],
    "tenant list": ["NAME", "PRIORITY", "ACTIVE", "CPU", "MEMORY", "GPU", "REGISTERED"],
    "audit log": ["SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DATA"],
    "free": ["POOL", "CPU", "MEMORY", "GPU", "DEVICES", "UNTIL"],
    "pool show": ["RESOURCE", "TOTAL", "RESERVED", "AVAILABLE"],
    "slots": ["START", "FREE UNTIL", "GPUS", "FREED BY"],
}
HEADERS["list"] += ["EXPIRES"]
HEADERS["list --all"] = HEADERS["list"]
HEADERS["pool list"] += ["STATUS", "CREATED"]
HEADERS["tenant list"] += ["MEMBERS"]


def headers(line: str) -> list[str]:
    return [cell.strip() for cell in ANSI.sub("", line).split("  ") if cell.strip()]


# ---------------------------------------------------------------- fitting the terminal


@pytest.mark.parametrize("how", ["window size", "COLUMNS"])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_no_line_is_wider_than_the_terminal(world: World, name: str, how: str) -> None:
    if how == "COLUMNS":  # COLUMNS wins over the window's size
        text = on_terminal(world, *COMMANDS[name], columns=132, COLUMNS="80")
    else:
        text = on_terminal(world, *COMMANDS[name], columns=80)
    text = text.replace(CLEAR, "")
    lines = text.splitlines()
    assert len(lines) >= 3, text
    too_wide = [line for line in lines if display_width(line) > 80]
    assert too_wide == [], too_wide
    first = headers(lines[0])
    if name in ("list", "list --all"):
        assert first[0] == "ID" and "TENANT" in first
        assert re.match(r"^[0-9a-f]{8}… ", lines[2])  # short ids
    elif name in ("pool list", "tenant list"):
        assert first[0] == "NAME" and len(first) < len(HEADERS[name])  # some dropped
    elif name == "audit log":
        assert first[:2] == ["SEQ", "AT"] and "…" in text  # long data shortened


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_narrow_terminal_still_fits(world: World, name: str) -> None:
    text = on_terminal(world, *COMMANDS[name], columns=40).replace(CLEAR, "")
    assert [line for line in text.splitlines() if display_width(line) > 40] == []


def test_without_a_size_a_terminal_is_80_wide(world: World) -> None:
    # A pty of 0 × 0 (as a bare openpty gives) and no COLUMNS: 80.
    text = on_terminal(world, "list", "--all", columns=0, rows=0)
    widths = [display_width(line) for line in text.splitlines()]
    assert max(widths) <= 80 and max(widths) >= 70


@pytest.mark.parametrize("name", [n for n in COMMANDS if n in HEADERS])
def test_a_pipe_is_never_cut(world: World, name: str) -> None:
    text = piped(world, *COMMANDS[name], COLUMNS="40")
    assert "…" not in SHORT_ID.sub("", text)  # `pool show` names holders by short id
    lines = text.splitlines()
    table = lines if name != "pool show" else lines[lines.index("") + 1 :]
    assert headers(table[0]) == HEADERS[name]
    if name.startswith("list"):
        listed = json.loads(piped(world, *COMMANDS[name], "--json"))
        assert [line.split()[0] for line in table[2:]] == [r["id"] for r in listed]
    if name == "audit log":
        events = json.loads(piped(world, "audit", "log", "--json"))
        for event, line in zip(events, table[2:], strict=True):
            assert line.endswith(json.dumps(event["data"], sort_keys=True, ensure_ascii=False))


def test_status_and_watch_on_a_pipe_are_whole(world: World) -> None:
    status = piped(world, "status", COLUMNS="40")
    bars = re.findall(r"^    (?:CPU|MEMORY|GPU) +([█░]+) ", status, re.M)
    assert len(bars) == 3 * (3 + len(SMALL_POOLS)) and {len(b) for b in bars} == {20}
    assert max(map(display_width, status.splitlines())) > 40
    watched = piped(world, "watch", "--count", "1", COLUMNS="40")
    assert watched.startswith("--- ") and watched.split("\n", 1)[1] == status


@pytest.mark.parametrize("name", [n for n in COMMANDS if n in HEADERS])
def test_wide_shows_every_column_on_a_terminal(world: World, name: str) -> None:
    args = COMMANDS[name]
    wide = on_terminal(world, *args, "--wide", NO_COLOR="1")
    assert "…" not in SHORT_ID.sub("", wide)  # `pool show` names holders by short id
    # As on a pipe: every column, whole (the time left may have ticked meanwhile).
    assert _ticked(wide) == _ticked(piped(world, *args))
    if name != "free":
        assert max(map(display_width, wide.splitlines())) > 80


def _ticked(text: str) -> str:
    return re.sub(r"\b\d+(m\d+s|h\d+m)\b", "T", text)


def test_the_ascii_fallback_shortens_with_three_dots(world: World) -> None:
    text = on_terminal(world, "list", "--all", PYTHONIOENCODING="ascii")
    text.encode("ascii")
    assert re.search(r"^[0-9a-f]{8}\.\.\. ", text.splitlines()[2])
    assert max(map(display_width, text.splitlines())) <= 80


# ---------------------------------------------------------------- alignment, ranges, memory


def _columns(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Each header's (start, end) display columns, read from the rule of dashes."""
    rule = lines[1]
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]
    header = _expand(lines[0])
    return {"".join(header[a:b]).strip(): (a, b) for a, b in spans}


def _expand(line: str) -> list[str]:
    """A line as display columns: a wide character, then an empty column."""
    cells: list[str] = []
    for char in ANSI.sub("", line):
        cells.append(char)
        if unicodedata.east_asian_width(char) in ("W", "F"):
            cells.append("")
    return cells


def _right_aligned(lines: list[str], names: list[str]) -> None:
    spans = _columns(lines)
    for name in names:
        start, end = spans[name]
        for line in [lines[0], *lines[2:]]:
            cells = _expand(line)
            cell = "".join(cells[start:end])
            assert cell.strip() and cells[end - 1] != " ", (name, line)
            assert len(cells) == end or cells[end] == " ", (name, line)


@pytest.mark.parametrize("terminal", [False, True])
def test_numbers_are_right_aligned(world: World, terminal: bool) -> None:
    run = (lambda *a: on_terminal(world, *a)) if terminal else (lambda *a: piped(world, *a))
    _right_aligned(run("list", "--all").splitlines(), ["CPU", "MEMORY", "GPU"])
    _right_aligned(run("tenant", "list").splitlines(), ["PRIORITY", "ACTIVE", "CPU", "MEMORY"])
    _right_aligned(run("free").splitlines(), ["CPU", "MEMORY", "GPU"])
    _right_aligned(run("audit", "log").splitlines(), ["SEQ"])
    shown = run("pool", "show", "--name", BIG).split("\n\n")[1].splitlines()
    _right_aligned(shown, ["TOTAL", "RESERVED", "AVAILABLE"])


def test_memory_reads_in_its_unit_when_exact() -> None:
    cases = {8192: "8G", 1536: "1.5G", 512: "512M", 1000: "1000M", 1126: "1126M", 0: "0"}
    cases |= {1048576: "1T", 1572864: "1.5T", 524288: "512G", 102912: "100.5G", 1: "1M"}
    assert {mb: memory(mb) for mb in cases} == cases


def test_memory_in_tables_and_json(world: World) -> None:
    listed = piped(world, "list", "--all").splitlines()
    memory_of = {line.split()[0]: line.split()[5] for line in listed[2:]}
    reservations = json.loads(piped(world, "list", "--all", "--json"))
    expected = {8192: "8G", 1536: "1.5G", 512: "512M", 1000: "1000M", 65536: "64G", 0: "0"}
    assert {memory_of[r["id"]] for r in reservations} <= set(expected.values())
    for r in reservations:
        assert memory_of[r["id"]] == expected[r["memory"]]  # JSON keeps MB
    pools = piped(world, "pool", "list")
    assert f"{BIG}  " in pools and " / 1T (" in pools and " / 1000M (" in pools
    shown = piped(world, "pool", "show", "--name", BIG)
    assert re.search(r"^MEMORY +1T +[\d.]+[GMT]? \(", shown, re.M)
    assert json.loads(piped(world, "pool", "show", "--name", BIG, "--json"))["total"] == {
        "cpu": 256,
        "memory": 1048576,
        "gpu": 64,
    }


def test_ranges() -> None:
    assert ranges([]) == ""
    assert ranges([3]) == "3"
    assert ranges([0, 1, 4, 5, 6, 7]) == "0-1,4-7"
    assert ranges([7, 0, 2, 1]) == "0-2,7"


def test_pool_show_names_each_range_and_its_tenant(world: World) -> None:
    shown = json.loads(piped(world, "pool", "show", "--name", BIG, "--json"))
    held = {r["id"]: r for r in json.loads(piped(world, "list", "--json"))}
    expected: list[str] = []
    devices = shown["devices"]
    n = 0
    while n < len(devices):
        rid, first = devices[n]["reservation"], devices[n]["id"]
        while n + 1 < len(devices) and devices[n + 1]["reservation"] == rid:
            n += 1
        last = devices[n]["id"]
        part = str(first) if first == last else f"{first}-{last}"
        who = "free" if rid is None else f"{held[rid]['tenant']} ({rid[:8]}…)"
        expected.append(f"{part} {who}")
        n += 1
    text = piped(world, "pool", "show", "--name", BIG)
    line = text.splitlines()[-1]
    assert line == "GPU devices: " + ", ".join(expected)
    assert expected[-1].startswith("60-63 ") and "40-59 free" in expected and "1-2 free" in expected
    assert expected[0] == f"0 {TENANTS[0]} ({world.ids[0][:8]}…)"
    # On a terminal: the same items, broken between them, no line too wide.
    screen = on_terminal(world, "pool", "show", "--name", BIG).split("\n\n")[-1]
    assert all(display_width(line) <= 80 for line in screen.splitlines())
    assert " ".join(part.strip() for part in screen.splitlines()) == line


# ---------------------------------------------------------------- colours and durations


def test_statuses_have_their_colours(world: World) -> None:
    text = piped(world, "--color", "always", "list", "--all")
    assert "\x1b[32mactive\x1b[0m" in text
    assert "\x1b[31mpreempted\x1b[0m" in text
    assert "\x1b[2mexpired\x1b[0m" in text
    released = [line for line in text.splitlines() if " released " in line]
    assert released and all("\x1b[" not in line for line in released)
    assert "\x1b[" not in piped(world, "list", "--all")


def test_one_duration_renderer() -> None:
    countdowns = {45: "45s", 299: "4m59s", 300: "5m0s", 90061: "25h1m", 86400: "24h0m"}
    assert {s: span(s, countdown=True) for s in countdowns} == countdowns
    lengths = {90: "1m30s", 7200: "2h", 5400: "1h30m", 86400: "1d", 172800: "2d"}
    lengths |= {604800: "1w", 93600: "26h", 0: "0s", 3661: "1h1m1s"}
    assert {s: span(s) for s in lengths} == lengths


def test_expires_column_on_a_terminal(world: World) -> None:
    text = on_terminal(world, "list", NO_COLOR="1")
    shown = {line.split()[-1] for line in text.splitlines()[2:]}
    assert "never" in shown
    assert all(re.fullmatch(r"never|\d+s|\d+m\d+s|\d+h\d+m", cell) for cell in shown), shown


# ---------------------------------------------------------------- free


def test_free_text(world: World) -> None:
    text = piped(world, "free")
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}
    assert len(rows) == 3 + len(SMALL_POOLS)
    held = [r for r in json.loads(piped(world, "list", "--json")) if r["pool"] == BIG]
    assert rows[BIG][0] == str(256 - sum(r["cpu"] for r in held))
    # 64 GPUs: 2 of the 40 held singly were released; 4 held by id.
    assert rows[BIG][2:] == ["22", "1-2,40-59", "open"]
    assert rows[EDGE] == ["64", "1000M", "8", "0-7", "open"]  # the 1 s one expired
    assert rows[SMALL_POOLS[0]] == ["16", "1.5G", "0", "-", "open"]
    only = piped(world, "free", "--pool", EDGE)
    assert only.splitlines()[2].split() == [EDGE, "64", "1000M", "8", "0-7", "open"]


def test_free_json(world: World) -> None:
    shapes = json.loads(piped(world, "free", "--json"))
    assert [s["pool"] for s in shapes] == sorted([BIG, BATCH, EDGE, *SMALL_POOLS])
    big = next(s for s in shapes if s["pool"] == BIG)
    assert set(big) == {"pool", "free", "gpu_ids", "until", "promised"}
    assert big["gpu_ids"] == [1, 2, *range(40, 60)]
    assert big["free"]["gpu"] == 22 and big["until"] is None
    assert big["promised"] == {"cpu": 0, "memory": 0, "gpu": 0}
    shown = json.loads(piped(world, "pool", "show", "--name", BIG, "--json"))
    assert big["free"] == shown["available"]
    edge = json.loads(piped(world, "free", "--pool", EDGE, "--json"))
    assert edge == [
        {
            "pool": EDGE,
            "free": {"cpu": 64, "memory": 1000, "gpu": 8},
            "gpu_ids": list(range(8)),
            "until": None,
            "promised": {"cpu": 0, "memory": 0, "gpu": 0},
        }
    ]
    missing = subprocess.run(
        [*resgate_command(), "free", "--pool", "ghost", "--json"],
        capture_output=True,
        text=True,
        env=world.env,
        timeout=TIMEOUT,
    )
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.startswith("Error: pool 'ghost' not found")


def test_free_in_process(cli, frozen) -> None:
    assert out(cli, "free") == "No pools.\n"
    assert out(cli, "free", "--json") == "[]\n"
    out(cli, "pool", "create", "--name", "p", "--cpu", "4", "--memory", "8G", "--gpu", "4")
    out(cli, "tenant", "add", "--name", "t")
    out(cli, "reserve", "-t", "t", "-p", "p", "--gpu-ids", "1,2", "--memory", "512")
    assert out(cli, "free").splitlines()[2].split() == ["p", "4", "7.5G", "2", "0,3", "open"]
    assert js(cli, "free")[0]["gpu_ids"] == [0, 3]


# ---------------------------------------------------------------- watch


TITLE = re.compile(r"^Every 2s · \d\d:\d\d:\d\d · (.+)$")


def test_watch_on_a_terminal_has_a_title_and_fits_one_screen(world: World) -> None:
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    watcher = subprocess.Popen(
        [*resgate_command(), "watch", "--interval", "2"],
        stdout=child,
        stderr=subprocess.PIPE,
        env={**world.env, "NO_COLOR": "1"},
    )
    os.close(child)
    try:
        seen = _read_all(main, until="more pools")
        watcher.send_signal(signal.SIGINT)
        seen += _read_all(main)
        _, err = watcher.communicate(timeout=TIMEOUT)
    finally:
        watcher.kill()
        watcher.wait()
        os.close(main)
    assert watcher.returncode == 0 and err == b""
    draw = seen.replace("\r\n", "\n").split(CLEAR)[1]
    lines = draw.removesuffix("Watch stopped.\n").splitlines()
    match = TITLE.match(lines[0])
    assert match and match.group(1) == str(world.db)
    assert lines[1].startswith("Reservations: ")
    assert 20 <= len(lines) <= 23  # the terminal's height, less the cursor's line
    assert all(display_width(line) <= 80 for line in lines)
    assert headers(lines[3])[:2] == ["POOL", "HEALTH"] and "HOLDERS" in headers(lines[3])
    pools = sorted([BIG, BATCH, EDGE, *SMALL_POOLS])
    rows = lines[5:-1]
    assert [row.split()[0] for row in rows] == pools[: len(rows)]  # a line per pool
    assert lines[-1] == f"… {len(pools) - len(rows)} more pools"
    big = next(row for row in rows if row.startswith(BIG))
    assert re.search(r"[a-z0-9-]+(, [a-z0-9-]+)* \+\d+$", big), big  # holders elided


def test_watch_fits_a_short_terminal(world: World) -> None:
    text = on_terminal(world, "watch", "--count", "1", rows=8, columns=60)
    lines = text.split(CLEAR)[1].splitlines()
    assert len(lines) <= 7 and all(display_width(line) <= 60 for line in lines)
    assert re.match(r"^Every 3s · \d\d:\d\d:\d\d · /", lines[0]) and "more pools" in lines[-1]


def test_watch_json_is_one_object_a_line(world: World) -> None:
    watcher = subprocess.Popen(
        [*resgate_command(), "watch", "--json", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=world.env,
        text=True,
    )
    assert watcher.stdout is not None
    try:
        first, second = watcher.stdout.readline(), watcher.stdout.readline()
        watcher.send_signal(signal.SIGINT)
        rest, err = watcher.communicate(timeout=TIMEOUT)
    finally:
        watcher.kill()
        watcher.wait()
    assert watcher.returncode == 0 and err == "Watch stopped.\n"
    for line in [first, second, *rest.splitlines(keepends=True)]:
        assert line.endswith("\n") and line.count("\n") == 1
        value = json.loads(line)
        assert set(value) >= {"pools", "tenants", "reservations", "window_hours"}
        assert line == json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n"
    active = len(json.loads(piped(world, "list", "--json")))
    assert json.loads(first)["reservations"]["active"] == active == 47


# ---------------------------------------------------------------- the fitting itself


def _cols() -> list[Column]:
    return [
        Column("ID", ["0123456789abcdef"], short=["01234567…"]),
        Column("NAME", ["a-rather-long-name"], least=8, drop=3),
        Column("N", ["12345"], right=True, drop=2),
        Column("NOTE", ["x" * 30], least=6, drop=1),
    ]


def test_fit_keeps_everything_without_a_width() -> None:
    lines = table(_cols()).splitlines()
    assert lines[0].split() == ["ID", "NAME", "N", "NOTE"]
    assert lines[2] == "0123456789abcdef  a-rather-long-name  12345  " + "x" * 30


def test_fit_compacts_then_shortens_then_drops_in_order() -> None:
    def row(width: int) -> str:
        text = table(_cols(), width)
        assert all(text_width(line) <= width for line in text.splitlines()), (width, text)
        return text.splitlines()[2]

    for width in range(80, 0, -1):
        row(width)
    note = "x" * 30
    assert row(75) == f"0123456789abcdef  a-rather-long-name  12345  {note}"  # fits whole
    assert row(74) == f"01234567…  a-rather-long-name  12345  {note}"  # compact first
    assert row(60) == f"01234567…  a-rather-long-name  12345  {note[:21]}…"  # then NOTE cut
    assert row(40) == "01234567…  a-rather-long…  12345  xxxxx…"  # then NAME, to their least
    assert row(33) == "01234567…  a-rather-long-…  12345"  # NOTE is the first to go
    assert row(25) == "01234567…  a-rather-long…"  # then N
    assert row(18) == "0123456789abcdef"  # never ID, whole again when alone
    assert row(8) == "0123456…"  # narrower than its least: cut all the same


def test_fit_counts_wide_characters_as_two_columns() -> None:
    columns = [Column("WHO", ["日本語のユーザー"], least=4), Column("X", ["1"])]
    line = table(columns, 12).splitlines()[2]
    assert text_width(line) <= 12 and line.endswith("…  1")


def test_style_shortens_ids_in_its_encoding() -> None:
    assert Style(False).short("ea38a8370123abcd") == "ea38a837…"
    assert Style(False, ellipsis="...").short("ea38a8370123abcd") == "ea38a837..."
