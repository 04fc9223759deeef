"""README "Sizes, durations and times": memory as a size with a binary unit, and the
duration words, on every option that takes them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from helpers import Cli, js, ok
from hypothesis import given
from hypothesis import strategies as st

from resgate.cli import params
from resgate.errors import InvalidInput
from resgate.limits import MAX_AMOUNT

MEMORY_HINT = f"(MB, or a size like 512M, 8G, 1.5T; at most {MAX_AMOUNT} MB)"


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("512", 512),
        ("512M", 512),
        ("512mb", 512),
        ("512MiB", 512),
        ("8G", 8192),
        ("8gb", 8192),
        ("8GiB", 8192),
        ("1.5G", 1536),
        ("0.5G", 512),
        ("2T", 2 * 1024 * 1024),
        ("1.25t", 1310720),
        ("0", 0),
        ("0G", 0),
    ],
)
def test_memory_sizes(text: str, mb: int):
    assert params.amount("--memory", text) == mb
    assert params.amount("--max-memory", text) == mb


@pytest.mark.parametrize(
    "text",
    ["8X", "8 G", "G", "1.5", "0.5M", "1.0001G", "-1G", "1e3G", ".5G", "1,5G", "2048T", "8Gb!"],
)
def test_bad_memory_sizes_name_the_unit(text: str):
    with pytest.raises(InvalidInput) as refused:
        params.amount("--memory", text)
    assert str(refused.value) == f"invalid value for --memory: {text!r} {MEMORY_HINT}"


def test_cpu_takes_no_unit():
    with pytest.raises(InvalidInput, match="invalid value for --cpu: '8G'"):
        params.amount("--cpu", "8G")


WORDS = {
    604800: ["w", "week", "weeks"],
    86400: ["d", "day", "days"],
    3600: ["h", "hour", "hours"],
    60: ["m", "min"],
    1: ["s", "sec"],
}


@given(
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 2)), min_size=5, max_size=5).filter(
        lambda parts: any(count for count, _ in parts)
    ),
    st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_durations_against_their_sum(parts: list[tuple[int, int]], present: list[bool]):
    """Any spelling of the units, in descending order, each at most once."""
    text, total = "", 0
    for (count, spelling), (unit, words), shown in zip(parts, WORDS.items(), present, strict=True):
        if shown:
            text += f"{count}{words[spelling % len(words)]}"
            total += count * unit
    if text:
        assert params.seconds("--ttl", text) == total


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h30min", 5400), ("2days", 172800), ("1w", 604800), ("90sec", 90), ("1w2d3h4m5s", 788645)],
)
def test_duration_examples(text: str, seconds: int):
    assert params.seconds("--ttl", text) == seconds


@pytest.mark.parametrize("text", ["30m1h", "1 h", "1H", "1hour30", "1month", "1d1d", "min", ""])
def test_bad_durations(text: str):
    with pytest.raises(InvalidInput, match="invalid duration for --ttl"):
        params.seconds("--ttl", text)


def test_sizes_and_durations_on_the_command_line(cli: Cli):
    ok(cli, "pool", "create", "--name", "p", "--cpu", "8", "--memory", "64G")
    ok(cli, "tenant", "add", "--name", "t", "--max-memory", "16G")
    made = js(cli, "reserve", "-t", "t", "-p", "p", "--memory", "1.5G", "--ttl", "1h30min",
              "--json")  # fmt: skip
    assert (made["memory"], made["ttl"]) == (1536, 5400)
    assert js(cli, "tenant", "list", "--json")[0]["max"]["memory"] == 16384


# ---------------------------------------------------------------- WHEN


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch):
    """Local time is Europe/Berlin (CET/CEST) for the test."""
    import time

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


NOW = datetime(2026, 11, 24, 12, 0, 0)  # UTC; 13:00 in Berlin


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("+2h", NOW + timedelta(hours=2)),
        ("2h", NOW - timedelta(hours=2)),
        ("-1h30min", NOW - timedelta(minutes=90)),
        ("24h", NOW - timedelta(days=1)),
        ("16:00", datetime(2026, 11, 24, 15, 0)),  # today, local
        ("tomorrow 09:30", datetime(2026, 11, 25, 8, 30)),
        ("2026-11-30T08:00:00Z", datetime(2026, 11, 30, 8, 0)),
        ("2026-11-30T08:00:00+05:00", datetime(2026, 11, 30, 3, 0)),
        ("2026-11-30T08:00", datetime(2026, 11, 30, 7, 0)),  # local
        ("2026-11-30", datetime(2026, 11, 29, 23, 0)),  # local midnight
        ("2026-10-25T02:30", datetime(2026, 10, 25, 0, 30)),  # twice that night: the first
    ],
)
def test_when_grammar(berlin, text: str, expected: datetime):
    when = params.when("--until", text)
    assert when is not None and when.at(NOW) == expected


def test_a_local_time_the_clocks_skip_is_refused(berlin):
    with pytest.raises(InvalidInput, match="that local time does not exist"):
        params.when("--until", "2026-03-29T02:30")
    when = params.when("--until", "02:30")  # fine on most days ...
    assert when is not None
    with pytest.raises(InvalidInput, match="that local time does not exist"):
        when.at(datetime(2026, 3, 29, 0, 0))  # ... not on the night the clocks go forward


@pytest.mark.parametrize("text", ["tomorrow", "24:00", "9:00", "noon", "+", "++2h", "1 h ago"])
def test_bad_when(text: str):
    with pytest.raises(InvalidInput, match=r"invalid (value|duration) for --until"):
        params.when("--until", text)
