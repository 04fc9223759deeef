"""Hostile input: what a user, a script or someone with `sqlite3` can hand resgate
that must still end in one `Error:` line with the documented exit code (README "Exit codes"),
or, for `audit log`, in a display nobody can forge (README "The audit log").

- RESGATE_ACTOR with control characters, longer than its column (both databases),
  or not UTF-8 is refused with exit 2, and nothing is written;
- `audit log` escapes control characters in every shown field, whatever wrote
  them, survives an `at` or `data` edited into nonsense, and a stdout that cannot
  encode what is stored;
- --since outside the representable times, --interval beyond one day (or not a
  decimal), non-ASCII digits, numbers of thousands of digits, --gpu-ids naming
  more devices than a pool can hold: all exit 2, quickly, in bounded memory;
- FORCE_COLOR=0 does not force colour.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import resource
import sqlite3
import subprocess
import time
from datetime import datetime
from typing import Any

import pytest
from harness import REPO, resgate_command
from helpers import Cli, ok

from resgate.cli import params
from resgate.engine import validation
from resgate.errors import InvalidInput
from resgate.render.text import colour_wanted
from resgate.store.models import Event

pytestmark = pytest.mark.usefixtures("backend")


# ---------------------------------------------------------------- helpers


def snapshot(cli: Cli) -> tuple[str, str, str]:
    """What the database holds, as resgate shows it (both backends)."""
    return (
        ok(cli, "audit", "log", "--json").stdout,
        ok(cli, "tenant", "list", "--json").stdout,
        ok(cli, "pool", "list", "--json").stdout,
    )


def refused(cli: Cli, args: list[str], code: int = 2) -> str:
    """A command that must fail with one `Error:` line and change nothing."""
    before = snapshot(cli)
    result = cli(*args)
    assert result.code == code, (args, result)
    assert result.stdout == "", (args, result)
    assert result.stderr.startswith("Error: "), (args, result)
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), (args, result)
    assert "Traceback" not in result.stderr
    assert snapshot(cli) == before, args
    return result.stderr[len("Error: ") : -1]


def events(cli: Cli, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(ok(cli, "audit", "log", "--json", *args).stdout))


def db_file() -> str:
    return os.environ["RESGATE_DB"]


def tamper(*statements: str, parameters: tuple[Any, ...] = ()) -> None:
    connection = sqlite3.connect(db_file(), isolation_level=None)
    try:
        for statement in statements:
            connection.execute(statement, parameters if "?" in statement else ())
    finally:
        connection.close()


def recompute(event: dict[str, Any]) -> str:
    """README "The audit log", written out here rather than calling resgate."""
    body = {k: event[k] for k in ("seq", "at", "actor", "action", "subject", "data", "prev_hash")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unsafe(text: str) -> list[str]:
    """Characters a terminal would act on, or that would start a line: all a
    shown table may hold is printable text and its own newlines."""
    return [c for c in text if not c.isprintable() and c != "\n"]


def run_process(
    env: dict[str, str] | dict[bytes, bytes], *args: str, **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*resgate_command(), *args], env=env, capture_output=True, timeout=60, **kwargs
    )


@pytest.fixture
def pool(cli: Cli) -> None:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "8", "--gpu", "4")
    ok(cli, "tenant", "add", "--name", "t")


# ---------------------------------------------------------------- 1. the actor


CONTROL_ACTORS = [
    "evil\n2      2026-01-01 00:00:00  root  pool.delete  p  {}",
    "\x1b[2J\x1b[Hroot",
    "a\tb",
    "a\rb",
    "a\x7fb",  # DEL
    "a\x85b",  # C1: next line
    "\x9b2J",  # C1: the 8-bit CSI
    "\x01",
]


@pytest.mark.parametrize("who", CONTROL_ACTORS)
def test_actor_with_control_characters_is_refused(
    cli: Cli, pool: None, monkeypatch: pytest.MonkeyPatch, who: str
) -> None:
    monkeypatch.setenv("RESGATE_ACTOR", who)
    for args in (
        ["tenant", "add", "--name", "u"],
        ["reserve", "--tenant", "t", "--pool", "p", "--cpu", "1"],
        ["pool", "create", "--name", "q", "--cpu", "1"],
    ):
        text = refused(cli, args)
        assert text == (
            f"invalid RESGATE_ACTOR {who!r}: control characters (newline, tab, escape, ...) "
            "are not allowed"
        )
        assert not unsafe(text)


def test_actor_longer_than_its_column_is_refused_on_both_databases(
    cli: Cli, pool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL used to fail with a multi-line DataError; SQLite stored it.
    for length in (129, 200, 5000):
        monkeypatch.setenv("RESGATE_ACTOR", "é" * length)
        text = refused(cli, ["tenant", "add", "--name", "u"])
        assert text == f"RESGATE_ACTOR is too long: {length} characters, at most 128"
    longest = "日" * 128  # characters, not bytes: VARCHAR(128) on PostgreSQL
    monkeypatch.setenv("RESGATE_ACTOR", longest)
    ok(cli, "tenant", "add", "--name", "u")
    assert events(cli)[-1]["actor"] == longest


def test_actor_limit_is_the_column_width_and_documented() -> None:
    column = Event.__table__.c.actor.type
    assert getattr(column, "length", None) == validation.MAX_ACTOR == 128
    migration = (REPO / "migrations" / "versions" / "0003_audit_log.py").read_text()
    assert 'sa.Column("actor", sa.String(128)' in migration
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## The audit log") :]
    section = section[: section.index("\n## ", 1)]
    assert "RESGATE_ACTOR" in section and "128 characters" in section


def test_ordinary_actors_are_kept(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    for who in ("cron@host1", "José", "日本", "a b", "DOMAIN\\user"):
        monkeypatch.setenv("RESGATE_ACTOR", who)
        ok(cli, "tenant", "add", "--name", f"t{len(events(cli))}")
        assert events(cli)[-1]["actor"] == who


def test_a_bad_actor_does_not_stop_reading(
    cli: Cli, pool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only what would be recorded is refused: the log itself stays readable.
    monkeypatch.setenv("RESGATE_ACTOR", "a\nb")
    ok(cli, "audit", "log")
    ok(cli, "audit", "verify")
    ok(cli, "list")


def test_os_user_name_from_logname_gets_the_same_checks(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pwd

    from resgate.engine import audit

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    # LOGNAME counts only for a uid without a passwd entry (README "Who is acting").
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setenv("LOGNAME", "x\x1b[2J")
    audit._os_actor.cache_clear()
    try:
        result = cli("pool", "create", "--name", "p", "--cpu", "1")
        assert result.code == 2, result
        assert result.stderr == (
            "Error: invalid OS user name (LOGNAME, USER) 'x\\x1b[2J': control characters "
            "(newline, tab, escape, ...) are not allowed\n"
        )
    finally:
        audit._os_actor.cache_clear()


# ---------------------------------------------------------------- 2. not UTF-8, encodings


def test_actor_that_is_not_utf8_is_refused(
    cli: Cli, pool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In-process: os.environ holds the byte 0xff as the surrogate escape \udcff.
    monkeypatch.setenv("RESGATE_ACTOR", "caf\udcff")
    assert refused(cli, ["tenant", "add", "--name", "u"]) == (
        "RESGATE_ACTOR is not valid UTF-8: b'caf\\xff'"
    )


@pytest.mark.sqlite_only
def test_actor_that_is_not_utf8_is_refused_in_a_process(
    cli: Cli, pool: None, subprocess_env: dict[str, str]
) -> None:
    env = {key.encode(): value.encode() for key, value in subprocess_env.items()}
    env[b"RESGATE_ACTOR"] = b"caf\xff"
    before = snapshot(cli)
    done = run_process(env, "tenant", "add", "--name", "u")
    assert done.returncode == 2, done
    assert done.stdout == b""
    assert done.stderr == b"Error: RESGATE_ACTOR is not valid UTF-8: b'caf\\xff'\n"
    assert snapshot(cli) == before


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("encoding", "shown"),
    [
        ("ascii", ["Jos\\xe9", "\\u65e5\\u672c"]),
        ("latin-1", ["José", "\\u65e5\\u672c"]),
    ],
)
def test_audit_log_on_a_stdout_that_cannot_encode_the_actor(
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    subprocess_env: dict[str, str],
    encoding: str,
    shown: list[str],
) -> None:
    for who in ("José", "日本"):
        monkeypatch.setenv("RESGATE_ACTOR", who)
        ok(cli, "tenant", "add", "--name", f"t{len(who)}")
    env = {**subprocess_env, "PYTHONIOENCODING": encoding}
    table = run_process(env, "audit", "log")
    assert table.returncode == 0, table
    assert table.stderr == b""
    text = table.stdout.decode(encoding)
    for cell in shown:
        assert cell in text
    assert len(text.splitlines()) == 2 + 2
    machine = run_process(env, "audit", "log", "--json")
    assert machine.returncode == 0, machine
    assert [e["actor"] for e in json.loads(machine.stdout.decode(encoding))] == ["José", "日本"]


# ---------------------------------------------------------------- 1. the display


@pytest.mark.sqlite_only
def test_audit_log_escapes_an_event_inserted_with_sqlite3(cli: Cli, pool: None) -> None:
    # Triggers refuse UPDATE and DELETE only: a well-formed event appended at the
    # head, with its own correct hash, passes `audit verify` (without --expect).
    last = events(cli)[-1]
    forged = {
        "seq": last["seq"] + 1,
        "at": "2026-01-01T00:00:00.000000Z",
        "actor": "mallory\n3      2026-01-01 00:00:00  root  pool.delete  p  {}",
        "action": "pool.delete",
        "subject": "\x1b[2J\x1b[Hp",
        "data": {"note": "\x9b31m\u202eevil\x7f\u2028x"},
        "prev_hash": last["hash"],
    }
    forged["hash"] = recompute(forged)
    tamper(
        "INSERT INTO events (seq, at, actor, action, subject, data, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        parameters=(
            forged["seq"],
            "2026-01-01 00:00:00.000000",
            forged["actor"],
            forged["action"],
            forged["subject"],
            json.dumps(forged["data"], sort_keys=True, separators=(",", ":"), ensure_ascii=False),
            forged["prev_hash"],
            forged["hash"],
        ),
    )
    assert ok(cli, "audit", "verify").stdout.startswith(f"ok: {forged['seq']} events")
    table = ok(cli, "audit", "log").stdout
    assert unsafe(table) == []
    lines = table.splitlines()
    assert len(lines) == 2 + forged["seq"]  # header, rule, one line per event
    assert lines[-1].lstrip().startswith(f"{forged['seq']} ")  # SEQ is right-aligned
    assert "mallory\\n3      2026-01-01" in lines[-1]
    assert "\\x1b[2J\\x1b[Hp" in lines[-1]
    assert "\\x9b31m\\u202eevil\\x7f\\u2028x" in lines[-1]
    # The JSON keeps the values exactly, with every such character escaped.
    machine = ok(cli, "audit", "log", "--json").stdout
    assert unsafe(machine) == []
    shown = json.loads(machine)[-1]
    assert {k: shown[k] for k in forged} == forged


@pytest.mark.sqlite_only
def test_audit_log_escapes_an_actor_edited_with_sqlite3(cli: Cli, pool: None) -> None:
    tamper(
        "DROP TRIGGER events_no_update",
        "UPDATE events SET actor = ? WHERE seq = 1",
        parameters=("root\n2      2026-01-01 00:00:00  root  pool.delete  p\x1b[8m",),
    )
    result = cli("audit", "verify")
    assert (result.code, result.stderr) == (1, "Error: seq 1: altered\n")
    table = ok(cli, "audit", "log").stdout
    assert unsafe(table) == []
    assert len(table.splitlines()) == 2 + 2
    assert "root\\n2      2026-01-01 00:00:00  root  pool.delete  p\\x1b[8m" in table


# ---------------------------------------------------------------- 3. tampered at / data


# statement (on seq 2), the column, what `audit log --json` shows, what its table shows
TAMPERED: dict[str, tuple[str, str, Any, str]] = {
    "at not a time": ("UPDATE events SET at = 'garbage' WHERE seq = 2", "at", "garbage", "garbage"),
    "at a number": ("UPDATE events SET at = 12 WHERE seq = 2", "at", "12", "12"),
    "at year 1": (
        "UPDATE events SET at = '0001-01-01 00:00:00' WHERE seq = 2",
        "at",
        "0001-01-01T00:00:00.000000Z",
        "0001-01-01 00:00:00",
    ),
    "at with an offset": (
        "UPDATE events SET at = '2026-01-01T09:00:00+09:00' WHERE seq = 2",
        "at",
        "2026-01-01T00:00:00.000000Z",
        "tenant.add",
    ),
    "data not JSON": ("UPDATE events SET data = '{oops' WHERE seq = 2", "data", "{oops", "{oops"),
    "data a number": ("UPDATE events SET data = 12 WHERE seq = 2", "data", 12, " 12"),
    "data nested deep": (
        "UPDATE events SET data = '" + "[" * 100_000 + "' WHERE seq = 2",
        "data",
        "[" * 100_000,
        "[" * 100_000,
    ),
    "actor not UTF-8": (
        "UPDATE events SET actor = CAST(x'ff41' AS TEXT) WHERE seq = 2",
        "actor",
        "\\xffA",
        "\\xffA",
    ),
    "actor a blob": (
        "UPDATE events SET actor = x'0a1b41' WHERE seq = 2",
        "actor",
        "\n\x1bA",
        "\\n\\x1bA",
    ),
    "subject not UTF-8": (
        "UPDATE events SET subject = CAST(x'c328' AS TEXT) WHERE seq = 2",
        "subject",
        "\\xc3(",
        "\\xc3(",
    ),
}


@pytest.mark.sqlite_only
@pytest.mark.parametrize("case", list(TAMPERED))
def test_audit_log_shows_a_tampered_event_as_stored(cli: Cli, pool: None, case: str) -> None:
    statement, column, stored, cell = TAMPERED[case]
    ok(cli, "tenant", "add", "--name", "u")
    tamper("DROP TRIGGER events_no_update", statement)
    result = cli("audit", "verify")
    assert (result.code, result.stderr) == (1, "Error: seq 2: altered\n"), result
    shown = events(cli)
    assert [e["seq"] for e in shown] == [1, 2, 3]
    assert shown[1][column] == stored
    table = ok(cli, "audit", "log").stdout
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert unsafe(table) == []
    assert lines[3].lstrip().startswith("2 ") and cell in lines[3]  # SEQ is right-aligned
    ok(cli, "audit", "log", "--since", "24h")
    ok(cli, "audit", "log", "--action", "tenant.add", "--json")


# ---------------------------------------------------------------- 4. --since


OUT_OF_RANGE = [
    "0001-01-01T00:00:00+09:00",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+14:00",
]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize("command", [["export"], ["export", "--format", "csv"], ["audit", "log"]])
def test_since_outside_the_representable_times(
    cli: Cli, pool: None, command: list[str], value: str
) -> None:
    text = refused(cli, [*command, "--since", value])
    assert text == (
        f"invalid value for --since: {value!r} (outside the times resgate can represent, "
        "0001-01-01 to 9999-12-31 UTC)"
    )


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00-09:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T10:00:00+09:00",
    ],
)
def test_since_at_the_edges_of_the_representable_times(cli: Cli, pool: None, value: str) -> None:
    ok(cli, "reserve", "--tenant", "t", "--pool", "p", "--cpu", "1")
    early = value.startswith("0001")
    assert len(events(cli, "--since", value)) == (3 if early else 0)
    report = json.loads(ok(cli, "export", "--since", value).stdout)
    assert len(report["history"]) == (1 if early else 0)
    rows = ok(cli, "export", "--format", "csv", "--since", value).stdout.splitlines()
    assert len(rows) == (2 if early else 1)


@pytest.mark.sqlite_only
def test_since_a_duration_reaching_before_year_1() -> None:
    # Refused by the duration's own limit (68 years) on any real clock ...
    with pytest.raises(InvalidInput, match=r"invalid duration for --since: '999999999d'"):
        params.since("999999999d")
    # ... and by the range on a clock near year 1.
    since = params.since("2d")
    assert since is not None
    with pytest.raises(InvalidInput, match=r"outside the times resgate can represent"):
        since.at(datetime(1, 1, 1, 12))
    one_day = params.since("1d")
    assert one_day is not None and one_day.at(datetime(1, 1, 2, 12)) == datetime(1, 1, 1, 12)


@pytest.mark.sqlite_only
def test_since_duration_too_far_back_from_the_command_line(cli: Cli, pool: None) -> None:
    assert refused(cli, ["export", "--since", "999999999d"]).startswith(
        "invalid duration for --since: '999999999d'"
    )


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("zone", "value", "code"),
    [
        ("UTC", "0001-01-01", 0),  # local midnight is UTC midnight: representable
        ("Asia/Tokyo", "0001-01-01", 2),  # that is year 0 in UTC
        ("America/New_York", "0001-01-01", 0),
        ("America/New_York", "9999-12-31T23:00", 2),  # year 10000 in UTC
        ("Asia/Tokyo", "9999-12-31T23:00", 0),
    ],
)
def test_since_local_times_at_the_edges(
    cli: Cli, pool: None, subprocess_env: dict[str, str], zone: str, value: str, code: int
) -> None:
    done = run_process({**subprocess_env, "TZ": zone}, "audit", "log", "--since", value)
    assert done.returncode == code, done
    if code:
        assert done.stdout == b""
        assert (
            done.stderr
            == (
                f"Error: invalid value for --since: {value!r} (outside the times resgate can "
                "represent, 0001-01-01 to 9999-12-31 UTC)\n"
            ).encode()
        )


# ---------------------------------------------------------------- 5. --interval


@pytest.mark.sqlite_only
@pytest.mark.parametrize("value", ["1e308", "1e999", "86400.5", "86401", "100000", "9" * 400])
def test_watch_interval_above_one_day(cli: Cli, pool: None, value: str) -> None:
    text = refused(cli, ["watch", "--interval", value, "--count", "1"])
    assert text.startswith("invalid value for --interval: ")
    assert text.endswith("(seconds, above 0 and at most 86400, one day)")


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "value",
    [
        "inf",
        "-inf",
        "nan",
        "0",
        "0.0",
        "-1",
        "1e-400",
        "٣",
        "３",
        "1_0",
        " 3",
        "3 ",
        "0x10",
        "",
        "infinity",
    ],
)
def test_watch_interval_not_a_positive_decimal(cli: Cli, pool: None, value: str) -> None:
    text = refused(cli, ["watch", "--interval", value, "--count", "1"])
    assert text == f"invalid value for --interval: {value!r} (seconds, above 0)"


@pytest.mark.sqlite_only
def test_watch_interval_accepted() -> None:
    assert params.interval("86400") == 86400
    assert params.interval("0.5") == 0.5
    assert params.interval(".25") == 0.25
    assert params.interval("2.") == 2.0
    assert params.interval("1e1") == 10.0


@pytest.mark.sqlite_only
def test_watch_with_a_day_long_interval_draws_once(cli: Cli, pool: None) -> None:
    assert "Pools:" in ok(cli, "watch", "--interval", "86400", "--count", "1").stdout


# ---------------------------------------------------------------- 6. digits


NON_ASCII_DIGITS = ["٣", "３", "٣m", "1h٣m", "３s", "٣d", "𝟑"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("value", NON_ASCII_DIGITS)
def test_non_ascii_digits_are_refused(cli: Cli, pool: None, value: str) -> None:
    reserve = ["reserve", "--tenant", "t", "--pool", "p"]
    assert refused(cli, [*reserve, "--cpu", "1", "--ttl", value]).startswith(
        f"invalid duration for --ttl: {value!r}"
    )
    assert refused(cli, [*reserve, "--cpu", value]).startswith(
        f"invalid value for --cpu: {value!r}"
    )
    assert refused(cli, [*reserve, "--gpu-ids", value]).startswith(
        f"invalid value for --gpu-ids: {value!r}"
    )
    assert refused(cli, ["export", "--since", value]).startswith("invalid ")
    assert refused(cli, ["audit", "log", "--since-seq", value]).startswith(
        f"invalid value for --since-seq: {value!r}"
    )
    assert refused(cli, ["watch", "--count", value]).startswith(
        f"invalid value for --count: {value!r}"
    )
    assert refused(cli, ["tenant", "add", "--name", "u", "--priority", value]).startswith(
        f"invalid value for --priority: {value!r}"
    )


@pytest.mark.sqlite_only
def test_non_ascii_digits_in_a_timestamp_are_refused(cli: Cli, pool: None) -> None:
    value = "٢٠٢٦-01-01"
    assert refused(cli, ["export", "--since", value]).startswith(
        f"invalid value for --since: {value!r}"
    )


HUGE = "9" * 5000  # int() refuses more than 4,300 digits with a ValueError


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["reserve", "--tenant", "t", "--pool", "p", "--cpu", HUGE], "invalid value for --cpu"),
        (
            ["reserve", "--tenant", "t", "--pool", "p", "--cpu", "1", "--ttl", HUGE],
            "invalid duration for --ttl",
        ),
        (
            ["reserve", "--tenant", "t", "--pool", "p", "--cpu", "1", "--ttl", HUGE + "s"],
            "invalid duration for --ttl",
        ),
        (
            ["reserve", "--tenant", "t", "--pool", "p", "--gpu-ids", HUGE],
            "invalid value for --gpu-ids",
        ),
        (
            ["reserve", "--tenant", "t", "--pool", "p", "--gpu-ids", f"0-{HUGE}"],
            "invalid value for --gpu-ids",
        ),
        (["tenant", "add", "--name", "u", "--priority", HUGE], "invalid value for --priority"),
        (["watch", "--count", HUGE], "invalid value for --count"),
        (["audit", "log", "--since-seq", HUGE], "invalid value for --since-seq"),
        (["audit", "verify", "--expect", f"{HUGE}:{'a' * 64}"], "invalid value for --expect"),
        (["export", "--since", HUGE + "h"], "invalid duration for --since"),
    ],
)
def test_numbers_of_thousands_of_digits_are_refused(
    cli: Cli, pool: None, args: list[str], start: str
) -> None:
    text = refused(cli, args)
    assert text.startswith(start)
    assert len(text) < 300  # the value is cut short in the message


@pytest.mark.sqlite_only
def test_leading_zeros_still_read() -> None:
    assert params.amount("--cpu", "0" * 50 + "7") == 7
    assert params.seconds("--ttl", "00001m") == 60
    assert params.amount("--cpu", "0") == 0


# ---------------------------------------------------------------- 7. --gpu-ids


MANY_RANGES = ",".join(f"{i * 10}-{i * 10 + 5_000_000}" for i in range(1000))
# 1,000 ranges of 65,536 ids each: 65 million ids, gigabytes once expanded.
WIDE_RANGES = ",".join(f"{i * 100_000}-{i * 100_000 + 65_535}" for i in range(1000))


@pytest.mark.sqlite_only
def test_gpu_ids_are_counted_before_they_are_expanded() -> None:
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=r"\(at most 65536 GPUs in all\)$"):
        params.gpu_ids(MANY_RANGES)
    with pytest.raises(InvalidInput, match=r"\(at most 65536 GPUs in all\)$"):
        params.gpu_ids("0-65535,70000")
    with pytest.raises(InvalidInput, match=r"\(at most 65536 GPUs in all\)$"):
        params.gpu_ids("0-65536")
    assert time.monotonic() - started < 2
    assert params.gpu_ids("0-65535") == list(range(65_536))
    assert params.gpu_ids("0,1,4-7") == [0, 1, 4, 5, 6, 7]
    with pytest.raises(InvalidInput, match=r"an id is repeated"):
        params.gpu_ids("0-4,2")


def _limit_memory() -> None:
    one_gib = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (one_gib, one_gib))


@pytest.mark.sqlite_only
@pytest.mark.parametrize("value", [MANY_RANGES, WIDE_RANGES], ids=["huge", "wide"])
@pytest.mark.parametrize(
    "command", [["reserve", "--tenant", "t", "--pool", "p"], ["pool", "create", "--name", "q"]]
)
def test_gpu_ids_of_1000_ranges_fail_fast_in_bounded_memory(
    cli: Cli, pool: None, subprocess_env: dict[str, str], command: list[str], value: str
) -> None:
    # A subprocess under a 1 GiB address-space limit: expanding first needs several.
    before = snapshot(cli)
    started = time.monotonic()
    done = run_process(subprocess_env, *command, "--gpu-ids", value, preexec_fn=_limit_memory)
    assert time.monotonic() - started < 20
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stdout == b""
    message = done.stderr.decode()
    assert re.fullmatch(
        rf"Error: invalid value for --gpu-ids: '{value[:20]}[^\n]*\.\.\.' "
        rf"\({len(value)} characters\) \(at most 65536 GPUs in all\)\n",
        message,
    ), message
    assert snapshot(cli) == before


# ---------------------------------------------------------------- 8. FORCE_COLOR


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("value", "forced"),
    [
        ("0", False),
        ("false", False),
        ("FALSE", False),
        ("", False),
        (" 0 ", False),
        ("1", True),
        ("true", True),
        ("3", True),
        ("yes", True),
    ],
)
def test_force_color_values(monkeypatch: pytest.MonkeyPatch, value: str, forced: bool) -> None:
    monkeypatch.setenv("FORCE_COLOR", value)
    assert colour_wanted("auto", io.StringIO()) is forced
    assert colour_wanted("never", io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour_wanted("auto", io.StringIO()) is forced  # FORCE_COLOR wins when it forces


@pytest.mark.sqlite_only
def test_force_color_zero_does_not_colour_status(
    cli: Cli, pool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "0")
    assert "\x1b[" not in ok(cli, "status").stdout
    assert "\x1b[" not in ok(cli, "pool", "list").stdout
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[32mhealthy" in ok(cli, "status").stdout


def test_error_lines_never_echo_control_characters(cli: Cli, pool: None) -> None:
    for args in (
        ["export", "--since", "\x1b[2J"],
        ["watch", "--interval", "\x1b[2J"],
        ["reserve", "--tenant", "t", "--pool", "p", "--cpu", "1", "--ttl", "1\n2"],
        ["reserve", "--tenant", "t", "--pool", "p", "--gpu-ids", "0,\x9b1"],
    ):
        assert unsafe(refused(cli, args)) == [], args
