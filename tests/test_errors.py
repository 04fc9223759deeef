"""README "Exit codes": every bad input gets one `Error: …` line on stderr, nothing on stdout,
its documented exit code, no traceback, and the database exactly as it was.
Also the exit 1/3/4 checks of README "Using it", with their messages."""

from __future__ import annotations

import functools
import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers import ok, run_cli

pytestmark = pytest.mark.sqlite_only

MAX = 2_147_483_647
AMOUNT_HINT = f"(a whole number from 0 to {MAX})"
MEMORY_HINT = f"(MB, or a size like 512M, 8G, 1.5T; at most {MAX} MB)"
NAME_HINT = "1-64 characters, letters, digits, '.', '_' or '-', starting with a letter or digit"
TTL_HINT = f"(seconds, or like 90s, 5m, 1h30min, 2days, 1w; at most {MAX}s)"

BAD_AMOUNTS = [
    "-1",
    "-0",
    "1.5",
    "1.0",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "0x10",
    "1e3",
    "1_000",
    "+1",
    " 1",
    "",
    "five",
    "١",  # a non-ASCII digit
    str(MAX + 1),
    "99999999999999999999999999999",
]
BAD_PRIORITIES = ["0", "11", "-1", "5.5", "1e1", "ten", "", "100"]
BAD_NAMES = [
    "",
    "a b",
    " a",
    "a\x01b",
    "a\tb",
    "a\nb",
    "a\x7fb",
    "x" * 65,
    "-abc",
    "=abc",
    "a=b",
    ".hidden",
    "_x",
    "é",
    "a/b",
    "a'b",
]
BAD_TTLS = [
    "-5",
    "5x",
    "soon",
    "",
    "1.5",
    "1h1d",
    "5 m",
    " 5",
    "1H",
    "0x10",
    "-1m",
    str(MAX + 1),
    "24856d",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A database built once: pool p (10 cpu, 1000 MB, 4 gpu), pool q (2 cpu),
    tenants high (9), mid (5), low (2), idle (1); low holds 8 cpu of p;
    one released reservation."""
    path = tmp_path_factory.mktemp("errors") / "template.db"
    cli = functools.partial(run_cli, "--db", str(path))
    ok(cli, "pool", "create", "--name", "p", "--cpu", "10", "--memory", "1000", "--gpu", "4")
    ok(cli, "pool", "create", "--name", "q", "--cpu", "2")
    for name, priority in (("high", "9"), ("mid", "5"), ("low", "2"), ("idle", "1")):
        ok(cli, "tenant", "add", "--name", name, "--priority", priority)
    held = ok(cli, "reserve", "--tenant", "low", "--pool", "p", "--cpu", "8").stdout.split()[2]
    released = ok(cli, "reserve", "--tenant", "mid", "--pool", "q", "--cpu", "1").stdout.split()[2]
    ok(cli, "unreserve", "--id", released)
    return path, {"held": held, "released": released}


@pytest.fixture
def db(template, isolated_env: Path) -> Path:
    source, _ = template
    path = isolated_env / "resgate.db"  # RESGATE_DB
    shutil.copyfile(source, path)
    return path


@pytest.fixture
def ids(template) -> dict[str, str]:
    return template[1]


def dump(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def fails(cli, db: Path, args: list[str], code: int, message: str | None = None) -> str:
    """Run a command that must fail; return its message."""
    before = dump(db)
    result = cli(*args)
    assert result.code == code, (args, result)
    assert result.stdout == "", (args, result)
    assert result.stderr.startswith("Error: "), (args, result)
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, (args, result)
    assert "Traceback" not in result.stderr
    assert dump(db) == before, args
    text = result.stderr[len("Error: ") : -1]
    if message is not None:
        assert text == message, args
    return text


# ---------------------------------------------------------------- amounts


@pytest.mark.parametrize("value", BAD_AMOUNTS)
@pytest.mark.parametrize(
    "command",
    [
        ["pool", "create", "--name", "new"],
        ["pool", "resize", "--name", "p"],
        ["reserve", "--tenant", "high", "--pool", "p"],
    ],
    ids=["pool-create", "pool-resize", "reserve"],
)
def test_bad_amounts(cli, db, command: list[str], value: str):
    for option in ("--cpu", "--memory", "--gpu"):
        fails(
            cli,
            db,
            [*command, option, value],
            2,
            f"invalid value for {option}: {value!r} "
            + (MEMORY_HINT if option == "--memory" else AMOUNT_HINT),
        )


def test_bad_amount_with_equals_form(cli, db):
    fails(
        cli,
        db,
        ["pool", "create", "--name", "n", "--cpu=-5"],
        2,
        f"invalid value for --cpu: '-5' {AMOUNT_HINT}",
    )


def test_largest_amount_is_accepted(cli, db):
    result = cli("pool", "create", "--name", "big", "--cpu", str(MAX), "--memory", "0")
    assert result.code == 0, result


@pytest.mark.parametrize(
    "args",
    [
        ["pool", "create", "--name", "z"],
        ["pool", "create", "--name", "z", "--cpu", "0"],
        ["pool", "create", "--name", "z", "--cpu", "0", "--memory", "00", "--gpu", "0"],
    ],
)
def test_zero_only_pool(cli, db, args):
    fails(cli, db, args, 2, "a pool needs at least one of --cpu, --memory, --gpu above 0")


@pytest.mark.parametrize(
    "args",
    [
        ["reserve", "--tenant", "high", "--pool", "p"],
        ["reserve", "--tenant", "high", "--pool", "p", "--cpu", "0", "--memory", "0"],
        # checked before the database: even for a tenant and pool that do not exist
        ["reserve", "--tenant", "ghost", "--pool", "ghost", "--gpu", "0"],
    ],
)
def test_zero_only_reservation(cli, db, args):
    fails(cli, db, args, 2, "a reservation needs at least one of --cpu, --memory, --gpu above 0")


def test_zero_only_resize(cli, db):
    fails(
        cli,
        db,
        ["pool", "resize", "--name", "q", "--cpu", "0", "--memory", "0", "--gpu", "0"],
        2,
        "a pool cannot have all of cpu, memory and gpu at 0",
    )
    fails(
        cli,
        db,
        ["pool", "resize", "--name", "q"],
        2,
        "give at least one of --cpu, --memory, --gpu, --gpu-ids",
    )
    # Not given together, but all would be 0: refused by the database's state (4).
    fails(
        cli,
        db,
        ["pool", "resize", "--name", "q", "--cpu", "0"],
        4,
        "cannot resize pool 'q': cpu, memory and gpu would all be 0",
    )


# ---------------------------------------------------------------- priorities


@pytest.mark.parametrize("value", BAD_PRIORITIES)
def test_bad_priorities(cli, db, value: str):
    message = f"invalid value for --priority: {value!r} (a whole number from 1 to 10)"
    fails(cli, db, ["tenant", "add", "--name", "new", "--priority", value], 2, message)
    fails(cli, db, ["tenant", "update", "--name", "mid", "--priority", value], 2, message)


def test_tenant_update_needs_an_option(cli, db):
    text = fails(cli, db, ["tenant", "update", "--name", "mid"], 2)
    assert "give at least one" in text


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("value", BAD_NAMES, ids=repr)
def test_bad_names(cli, db, value: str):
    pool_msg = f"invalid pool name {value!r}: {NAME_HINT}"
    tenant_msg = f"invalid tenant name {value!r}: {NAME_HINT}"
    fails(cli, db, ["pool", "create", "--name", value, "--cpu", "1"], 2, pool_msg)
    fails(cli, db, ["pool", "show", "--name", value], 2, pool_msg)
    fails(cli, db, ["pool", "resize", "--name", value, "--cpu", "1"], 2, pool_msg)
    fails(cli, db, ["pool", "delete", "--name", value], 2, pool_msg)
    fails(cli, db, ["tenant", "add", "--name", value], 2, tenant_msg)
    fails(cli, db, ["tenant", "update", "--name", value, "--priority", "3"], 2, tenant_msg)
    fails(cli, db, ["tenant", "remove", "--name", value], 2, tenant_msg)
    fails(cli, db, ["reserve", "--tenant", value, "--pool", "p", "--cpu", "1"], 2, tenant_msg)
    fails(cli, db, ["reserve", "--tenant", "high", "--pool", value, "--cpu", "1"], 2, pool_msg)
    fails(cli, db, ["preempt", "--tenant", value, "--target", "low"], 2, tenant_msg)
    fails(cli, db, ["preempt", "--tenant", "high", "--target", value], 2, tenant_msg)
    fails(cli, db, ["preempt", "--tenant", "high", "--target", "low", "--pool", value], 2, pool_msg)
    fails(cli, db, ["list", "--tenant", value], 2, tenant_msg)
    fails(cli, db, ["list", "--all", "--pool", value], 2, pool_msg)


def test_longest_name_is_accepted(cli, db):
    name = "A" + "b" * 62 + "9"
    assert cli("tenant", "add", "--name", name).code == 0
    assert cli("pool", "create", "--name", "0._-", "--cpu", "1").code == 0


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize("value", BAD_TTLS)
def test_bad_ttls(cli, db, ids, value: str):
    message = f"invalid duration for --ttl: {value!r} {TTL_HINT}"
    fails(
        cli,
        db,
        ["reserve", "--tenant", "high", "--pool", "p", "--cpu", "1", "--ttl", value],
        2,
        message,
    )
    fails(cli, db, ["extend", "--id", ids["held"], "--ttl", value], 2, message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["watch", "--interval", "0"], "invalid value for --interval: '0' (seconds, above 0)"),
        (["watch", "--interval", "-1"], "invalid value for --interval: '-1' (seconds, above 0)"),
        (["watch", "--interval", "nan"], "invalid value for --interval: 'nan' (seconds, above 0)"),
        (["watch", "--interval", "inf"], "invalid value for --interval: 'inf' (seconds, above 0)"),
        (
            ["watch", "--interval", "soon"],
            "invalid value for --interval: 'soon' (seconds, above 0)",
        ),
        (["watch", "--count", "0"], "invalid value for --count: '0' (a whole number, at least 1)"),
        (
            ["watch", "--count", "1.5"],
            "invalid value for --count: '1.5' (a whole number, at least 1)",
        ),
        (["export", "--format", "xml"], "unsupported export format: 'xml' (choose json or csv)"),
        (
            ["list", "--status", "bogus"],
            "invalid value for --status: 'bogus' (upcoming, active, released, expired, preempted)",
        ),
        (
            ["--color", "sometimes", "list"],
            "invalid value for --color: 'sometimes' (auto, always or never)",
        ),
        (
            ["reserve", "--tenant", "high", "--pool", "p", "--cpu", "1", "--request-id", ""],
            "invalid --request-id: 1-128 printable ASCII characters",
        ),
        (["--db", "", "list"], "--db must not be empty"),
        (["--db", ":memory:", "list"], "an in-memory database keeps nothing: give a file"),
    ],
)
def test_other_bad_values(cli, db, args, message):
    fails(cli, db, args, 2, message)


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-13-01", "24x", "--5m", "25:00", "", "+", "tomorrow 9:00", "1:5"]
)
def test_bad_since(cli, db, value):
    text = fails(cli, db, ["export", "--since", value], 2)
    assert text.startswith(f"invalid value for --since: {value!r}")


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize(
    "value",
    [
        "nothex",
        "abc",
        "0123456789abcdef0",
        "",
        "0123456789abcdeg",
        " 0123456789abcde",
        "12_4",
    ],
)
def test_malformed_ids(cli, db, value):
    message = (
        f"invalid reservation id {value!r}: expected 4 to 16 hex digits (an id, or the start "
        "of one)"
    )
    fails(cli, db, ["unreserve", "--id", value], 2, message)
    fails(cli, db, ["extend", "--id", value, "--ttl", "5m"], 2, message)


def test_unknown_ids(cli, db):
    unknown = "0123456789abcdef"
    fails(cli, db, ["unreserve", "--id", unknown], 1, f"reservation '{unknown}' not found")
    fails(
        cli, db, ["extend", "--id", unknown, "--ttl", "5m"], 1, f"reservation '{unknown}' not found"
    )


def test_not_active(cli, db, ids):
    rid = ids["released"]
    message = f"reservation '{rid}' is not active (status: released)"
    fails(cli, db, ["unreserve", "--id", rid], 4, message)
    fails(cli, db, ["extend", "--id", rid, "--ttl", "5m"], 4, message)


# ---------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "No such command 'frobnicate'."),
        (["pool", "frobnicate"], "No such command 'frobnicate'."),
        (["list", "--frob"], "No such option: --frob"),
        (["--frob", "list"], "No such option: --frob"),
        (["pool", "create", "--cpu", "1"], "Missing option '--name'."),
        (["reserve", "--tenant", "high", "--cpu", "1"], "no pool given: use --pool (pools: p, q)"),
        (["extend", "--id", "0123456789abcdef"], "give exactly one of --ttl, --by, --until"),
        (["pool", "create", "--name"], "Option '--name' requires an argument."),
        (["list", "extra"], "Got unexpected extra argument(s) (extra)"),
    ],
)
def test_usage_errors(cli, db, args, message):
    text = fails(cli, db, args, 2)
    assert text.startswith(message), text


@pytest.mark.parametrize("args", [["pool"], ["tenant"], ["db"]])
def test_missing_command_shows_help_not_an_error_line(cli, db, args):
    result = cli(*args)
    assert result.code == 2
    assert result.stdout == ""
    assert "Usage: resgate" in result.stderr
    assert "Error:" not in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- checks, README "Using it"


def test_reserve_checks_in_order(cli, db, ids):
    fails(
        cli,
        db,
        ["reserve", "--tenant", "ghost", "--pool", "nowhere", "--cpu", "1"],
        1,
        "tenant 'ghost' not found (see: resgate tenant list)",
    )
    fails(
        cli,
        db,
        ["reserve", "--tenant", "high", "--pool", "nowhere", "--cpu", "1"],
        1,
        "pool 'nowhere' not found (see: resgate pool list)",
    )
    # conflict (4) comes before capacity (3)
    fails(
        cli,
        db,
        ["reserve", "--tenant", "low", "--pool", "p", "--cpu", "100"],
        4,
        f"tenant 'low' already has active reservation '{ids['held']}' in pool 'p'",
    )
    fails(
        cli,
        db,
        ["reserve", "--tenant", "mid", "--pool", "p", "--cpu", "3", "--gpu", "5"],
        3,
        "insufficient resources in 'p': need cpu=3 mem=0 gpu=5, available cpu=2 mem=1000 gpu=4"
        # low (priority 2) holds 8 of the cpu that is short: mid (5) could evict it.
        "; 'mid' outranks holders of it: add --preempt to evict them",
    )


def test_duplicates(cli, db):
    fails(
        cli,
        db,
        ["pool", "create", "--name", "p", "--cpu", "1"],
        4,
        "pool 'p' already exists (to change it: resgate pool update p …)",
    )
    fails(
        cli,
        db,
        ["tenant", "add", "--name", "mid"],
        4,
        "tenant 'mid' already exists (to change it: resgate tenant update mid …)",
    )


def test_preempt_checks(cli, db):
    fails(
        cli,
        db,
        ["preempt", "--tenant", "ghost", "--target", "ghost2", "--pool", "ghost3"],
        1,
        "tenant 'ghost' not found (see: resgate tenant list)",
    )  # the preemptor is reported first
    fails(
        cli,
        db,
        ["preempt", "--tenant", "high", "--target", "ghost2"],
        1,
        "tenant 'ghost2' not found (see: resgate tenant list)",
    )
    fails(
        cli,
        db,
        ["preempt", "--tenant", "high", "--target", "low", "--pool", "ghost3"],
        1,
        "pool 'ghost3' not found (see: resgate pool list)",
    )
    fails(
        cli,
        db,
        ["preempt", "--tenant", "mid", "--target", "high"],
        4,
        "cannot preempt: 'mid' (priority 5) must outrank 'high' (priority 9)",
    )
    fails(
        cli,
        db,
        ["preempt", "--tenant", "mid", "--target", "mid"],
        4,
        "cannot preempt: 'mid' (priority 5) must outrank 'mid' (priority 5)",
    )
    fails(
        cli,
        db,
        ["preempt", "--tenant", "high", "--target", "idle"],
        1,
        "tenant 'idle' has no active reservations to preempt",
    )
    text = fails(cli, db, ["preempt", "--tenant", "high", "--target", "low", "--pool", "q"], 1)
    assert text.startswith("tenant 'low' has no active reservations to preempt")


def test_not_found(cli, db):
    fails(
        cli,
        db,
        ["pool", "show", "--name", "ghost"],
        1,
        "pool 'ghost' not found (see: resgate pool list)",
    )
    fails(
        cli,
        db,
        ["pool", "resize", "--name", "ghost", "--cpu", "1"],
        1,
        "pool 'ghost' not found (see: resgate pool list)",
    )
    fails(
        cli,
        db,
        ["pool", "delete", "--name", "ghost"],
        1,
        "pool 'ghost' not found (see: resgate pool list)",
    )
    fails(
        cli,
        db,
        ["tenant", "update", "--name", "ghost", "--priority", "1"],
        1,
        "tenant 'ghost' not found (see: resgate tenant list)",
    )
    fails(
        cli,
        db,
        ["tenant", "remove", "--name", "ghost"],
        1,
        "tenant 'ghost' not found (see: resgate tenant list)",
    )
    fails(
        cli,
        db,
        ["list", "--tenant", "ghost"],
        1,
        "tenant 'ghost' not found (see: resgate tenant list)",
    )
    fails(
        cli,
        db,
        ["list", "--all", "--pool", "ghost"],
        1,
        "pool 'ghost' not found (see: resgate pool list)",
    )


def test_refusals(cli, db):
    fails(
        cli,
        db,
        ["pool", "resize", "--name", "p", "--cpu", "7"],
        4,
        "cannot resize pool 'p': cpu 7 is below the 8 reserved now",
    )
    fails(
        cli,
        db,
        ["pool", "delete", "--name", "p"],
        4,
        "pool 'p' has 1 active reservation(s); release them first or use --force",
    )
    fails(
        cli,
        db,
        ["tenant", "remove", "--name", "low"],
        4,
        "tenant 'low' has 1 active reservation(s); release them first or use --force",
    )


def test_json_failures_print_nothing_on_stdout(cli, db):
    fails(
        cli,
        db,
        ["pool", "show", "--name", "ghost", "--json"],
        1,
        "pool 'ghost' not found (see: resgate pool list)",
    )
    fails(cli, db, ["reserve", "--tenant", "mid", "--pool", "p", "--cpu", "9", "--json"], 3)
    fails(cli, db, ["preempt", "--tenant", "mid", "--target", "high", "--json"], 4)


def test_failure_on_a_new_database_creates_nothing(cli, isolated_env: Path):
    path = isolated_env / "resgate.db"
    result = cli("reserve", "--tenant", "ghost", "--pool", "p", "--cpu", "1")
    assert result.code == 1
    assert result.stderr == "Error: tenant 'ghost' not found (see: resgate tenant list)\n"
    result = cli("pool", "create", "--name", "bad name", "--cpu", "1")
    assert result.code == 2
    assert not (isolated_env / "resgate.db-wal").exists()
    # the failed writer may have created the file but left no pool in it
    assert dump(path) is None or not any('INSERT INTO "pools"' in line for line in dump(path))
