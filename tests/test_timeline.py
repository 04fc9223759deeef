"""The calendar (README "Booking ahead"): `resgate timeline` drawn in Unicode and in
ASCII against golden files (tests/golden/; RESGATE_UPDATE_GOLDEN=1 rewrites them
for review), and its JSON and refusals through the command on both databases."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import Cli, js, ok, out

from resgate.clock import FixedClock
from resgate.engine.records import Amounts, Held, ReservationInfo, Timeline
from resgate.render.text import Style
from resgate.render.timeline import timeline_text

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 12, 3, 10, 20)
HOUR = timedelta(hours=1)


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def held(
    rid: str,
    tenant: str,
    start: float,
    end: float | None,
    *,
    cpu: int = 0,
    memory: int = 0,
    gpus: tuple[int, ...] = (),
    status: str = "active",
    preempt_at: float | None = None,
) -> Held:
    """A reservation holding [NOW + start h, NOW + end h)."""
    begins = NOW + start * HOUR
    ends = None if end is None else NOW + end * HOUR
    info = ReservationInfo(
        id=rid,
        tenant=tenant,
        pool="gpu-box",
        amounts=Amounts(cpu, memory, len(gpus)),
        ttl=None,
        status=status,
        created_at=begins,
        expires_at=ends,
        ended_at=None,
        preempted_by=None,
        gpu_ids=gpus,
        starts_at=begins,
        ends_at=ends,
        preempt_at=None if preempt_at is None else NOW + preempt_at * HOUR,
    )
    return Held(info, begins, ends if preempt_at is None else NOW + preempt_at * HOUR)


def drawings(style: Style) -> str:
    gpu_box = Timeline(
        "gpu-box",
        NOW,
        NOW + 24 * HOUR,
        NOW,
        Amounts(32, 131072, 4),
        (0, 1, 2, 3),
        (
            held("0a000000000000aa", "nlp", -3, 2, cpu=8, memory=32768, gpus=(0, 1)),
            held("0b000000000000bb", "cv", 1, None, cpu=4, gpus=(2,)),
            held("0c000000000000cc", "vision", 4, 12, cpu=16, gpus=(0, 1), preempt_at=9),
            held("0d000000000000dd", "prod", 9, 15, cpu=32, gpus=(0, 1, 3)),
            held("0e000000000000ee", "nlp", 18.5, 20, gpus=(3,), status="upcoming"),
        ),
    )
    batch = Timeline(
        "batch",
        NOW - 2 * HOUR,
        NOW + 10 * HOUR,
        NOW,
        Amounts(16, 0, 0),
        (),
        (
            held("1a000000000000aa", "ops", -4, -1, cpu=4, status="released"),
            held("1b000000000000bb", "nlp", -1, 5, cpu=8),
            held("1c000000000000cc", "cv", 3, 8, cpu=8, status="upcoming"),
        ),
    )
    return timeline_text(gpu_box, style) + "\n\n" + timeline_text(batch, style) + "\n"


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize(
    "name, style",
    [
        ("timeline_unicode.txt", Style(False, width=80)),
        ("timeline_ascii.txt", Style(False, "#", ".", "-", "...", "-", width=80)),
    ],
)
def test_the_drawing_matches_its_golden_file(name: str, style: Style) -> None:
    drawn = drawings(style)
    if os.environ.get("RESGATE_UPDATE_GOLDEN"):
        (GOLDEN / name).write_text(drawn, encoding="utf-8")
    assert drawn == (GOLDEN / name).read_text(encoding="utf-8")
    assert max(len(line) for line in drawn.splitlines()) <= 80
    if "ascii" in name:
        drawn.encode("ascii")


@pytest.mark.usefixtures("utc")
def test_cells_grow_to_fit_the_width() -> None:
    one = held("0a000000000000aa", "nlp", 0, 1, gpus=(0,))
    drawn = Timeline("p", NOW, NOW + 168 * HOUR, NOW, Amounts(1, 0, 1), (0,), (one,))
    for width, cell in ((80, "3h"), (200, "1h"), (40, "6h")):
        text = timeline_text(drawn, Style(False, width=width))
        assert f"one cell = {cell}" in text.splitlines()[0]
        assert max(len(line) for line in text.splitlines()) <= width


def test_beyond_36_tenants_every_other_one_is_a_star() -> None:
    many = tuple(held(f"{n:016x}", f"t{n:02d}", n / 10, n / 10 + 0.1, gpus=(n,)) for n in range(40))
    drawn = Timeline("p", NOW, NOW + 6 * HOUR, NOW, Amounts(1, 0, 40), tuple(range(40)), many)
    text = timeline_text(drawn, Style(False, width=120))
    rows = [line for line in text.splitlines() if line.startswith("GPU ")]
    marks = ["".join(set(row.split()[-1]) - {"░"}) for row in rows]
    assert marks[:3] == ["a", "b", "c"] and marks[26] == "0" and marks[36:] == ["*"] * 4


# ---------------------------------------------------------------- the command


@pytest.fixture
def lab(cli: Cli, frozen: FixedClock) -> Cli:
    ok(cli, "pool", "create", "--name", "gpu-box", "--cpu", "32", "--memory", "128G", "--gpu", "4")
    ok(cli, "pool", "update", "gpu-box", "--per-tenant", "unlimited")
    ok(cli, "tenant", "add", "--name", "nlp")
    ok(cli, "tenant", "add", "--name", "cv")
    return cli


@pytest.mark.usefixtures("backend")
def test_timeline_json(lab: Cli, frozen: FixedClock) -> None:
    now = js(lab, "reserve", "-t", "nlp", "--gpu", "2", "--cpu", "4", "--duration", "2h")
    later = js(lab, "reserve", "-t", "cv", "--gpu", "3", "--start", "+3h", "--duration", "1h")
    gone = js(lab, "reserve", "-t", "cv", "--gpu", "1", "--start", "+5h", "--duration", "1h")
    ok(lab, "unreserve", gone["id"])  # cancelled before its start: it held nothing
    drawn = js(lab, "timeline")
    assert (drawn["pool"], drawn["from"]) == ("gpu-box", now["created_at"])
    start = datetime.fromisoformat(drawn["from"].rstrip("Z"))
    assert datetime.fromisoformat(drawn["to"].rstrip("Z")) - start == 24 * HOUR
    assert [r["id"] for r in drawn["reservations"]] == [now["id"], later["id"]]
    spans = {d["id"]: [(s["reservation"], s["tenant"], s["status"]) for s in d["spans"]]
             for d in drawn["devices"]}  # fmt: skip
    assert spans == {
        0: [(now["id"], "nlp", "active"), (later["id"], "cv", "upcoming")],
        1: [(now["id"], "nlp", "active"), (later["id"], "cv", "upcoming")],
        2: [(later["id"], "cv", "upcoming")],
        3: [],
    }
    first = drawn["devices"][0]["spans"][0]
    assert (first["start"], first["end"]) == (now["starts_at"], now["ends_at"])
    # Past reservations show until they ended; a window after everything is empty.
    frozen.advance(1800)
    ok(lab, "unreserve", now["id"])
    frozen.advance(1800)
    past = js(lab, "timeline", "--from", "-2h", "--hours", "2")
    assert [(s["reservation"], s["status"]) for s in past["devices"][0]["spans"]] == [
        (now["id"], "released")
    ]
    assert past["devices"][0]["spans"][0]["end"] == js(lab, "list", "--all")[0]["ended_at"]
    assert js(lab, "timeline", "--from", "+10h", "--hours", "1")["reservations"] == []
    text = out(lab, "timeline")
    assert text.splitlines()[0].startswith("gpu-box · ") and "a cv" in text


@pytest.mark.usefixtures("backend")
def test_timeline_refusals(lab: Cli) -> None:
    for args, code, says in (
        (["timeline", "--hours", "0"], 2, "--hours"),
        (["timeline", "--hours", "9000"], 2, "--hours must be between 1 and 8784"),
        (["timeline", "-p", "gpubox"], 1, "did you mean 'gpu-box'?"),
        (["timeline", "--from", "whenever"], 2, "--from"),
    ):
        result = lab(*args)
        assert (result.code, result.stdout) == (code, ""), result
        assert says in result.stderr and len(result.stderr.splitlines()) == 1, result
    ok(lab, "pool", "create", "--name", "batch", "--cpu", "8")
    result = lab("timeline")
    assert result.code == 2 and "no pool given: use --pool" in result.stderr
