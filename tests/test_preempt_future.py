"""Preempting the future (README "Booking ahead"): `reserve --preempt` over a window
that lies ahead truncates the lower-priority plans that start before it (with
notice: `preempt_at`, a `reservation.truncate` event, an end as `preempted` with no
command run) and cancels those starting inside it; a preemptor that ends before its
start gives its victims back what still fits (`reservation.pardon`). On both
databases, through the command line, with the clock moved by hand."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from helpers import js, ok, out, raw_sql

pytestmark = pytest.mark.usefixtures("backend")

HOUR = timedelta(hours=1)


def at(frozen: Any, hours: float) -> str:
    """An instant `hours` from the frozen now, as WHEN (UTC, RFC 3339)."""
    return (frozen.now() + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def book(cli: Any, frozen: Any, tenant: str, start: float, end: float, *amounts: str) -> str:
    return out(
        cli, "reserve", "-q", "-t", tenant, "-p", "box",
        "--start", at(frozen, start), "--end", at(frozen, end), *amounts,
    ).strip()  # fmt: skip


def shown(cli: Any, rid: str) -> dict[str, Any]:
    rows = {r["id"]: r for r in js(cli, "list", "--all")}
    return rows[rid]


def actions(cli: Any, rid: str) -> list[str]:
    events = json.loads(out(cli, "audit", "log", "--json"))
    return [e["action"] for e in events if e["subject"] == rid]


@pytest.fixture
def box(cli: Any) -> None:
    ok(cli, "pool", "create", "--name", "box", "--cpu", "16", "--memory", "64G", "--gpu", "4",
       "--per-tenant", "unlimited")  # fmt: skip
    ok(cli, "tenant", "add", "lab", "--priority", "3")
    ok(cli, "tenant", "add", "vision", "--priority", "5")
    ok(cli, "tenant", "add", "prod", "--priority", "8")


def test_a_booking_ahead_truncates_with_notice_and_cancels_inside(cli, frozen, box) -> None:
    morning = book(cli, frozen, "lab", 20, 23, "--gpu", "4")
    inside = book(cli, frozen, "lab", 21.5, 22.5, "--cpu", "2")
    untouched = book(cli, frozen, "lab", 23, 24, "--gpu", "4")
    result = js(cli, "reserve", "-t", "prod", "-p", "box", "--gpu", "2", "--cpu", "15",
                "--start", at(frozen, 21), "--duration", "1h", "--preempt")  # fmt: skip
    prod = result["reservation"]["id"]
    assert sorted(v["id"] for v in result["preempted"]) == sorted([morning, inside])
    truncated = shown(cli, morning)
    assert truncated["status"] == "upcoming"
    assert truncated["preempt_at"] == at(frozen, 21).replace("Z", ".000000Z")
    assert truncated["preempted_by"] == "prod" and truncated["preempted_for"] == prod
    assert shown(cli, inside)["status"] == "preempted"
    assert shown(cli, untouched)["status"] == "upcoming"
    assert actions(cli, morning) == ["reservation.create", "reservation.truncate"]
    assert actions(cli, inside) == ["reservation.create", "reservation.preempt"]
    assert out(cli, "db", "check").startswith("ok:")
    # The truncated booking runs from its start and ends at the preemptor's start,
    # as preempted, with no command run.
    frozen.advance(20.5 * 3600)
    assert shown(cli, morning)["status"] == "active"
    frozen.advance(0.5 * 3600)
    gone = shown(cli, morning)
    assert gone["status"] == "preempted" and gone["ended_at"] == truncated["preempt_at"]
    assert shown(cli, prod)["status"] == "active"
    assert out(cli, "db", "check").startswith("ok:")
    ok(cli, "sweep")  # the next write logs the end
    assert actions(cli, morning)[-1] == "reservation.preempt"


def test_the_text_says_until_when_a_truncated_booking_now_runs(cli, frozen, box) -> None:
    book(cli, frozen, "lab", 20, 23, "--gpu", "4")
    text = out(cli, "reserve", "-t", "prod", "-p", "box", "--gpu", "1",
               "--start", at(frozen, 21), "--duration", "1h", "--preempt")  # fmt: skip
    assert "Preempted 1 reservation(s)" in text and "now ends at" in text


def test_a_dry_run_shows_the_planned_truncations_and_changes_nothing(cli, frozen, box) -> None:
    morning = book(cli, frozen, "lab", 20, 23, "--gpu", "4")
    text = out(cli, "reserve", "-t", "prod", "-p", "box", "--gpu", "1", "--dry-run",
               "--start", at(frozen, 21), "--duration", "1h", "--preempt")  # fmt: skip
    assert morning in text and "now ends at" in text
    assert shown(cli, morning)["preempt_at"] is None
    assert actions(cli, morning) == ["reservation.create"]


def test_who_cannot_be_outranked_or_is_not_enough_is_refused(cli, frozen, box) -> None:
    book(cli, frozen, "prod", 20, 23, "--gpu", "4")
    refused = cli("reserve", "-t", "vision", "-p", "box", "--gpu", "1",
                  "--start", at(frozen, 21), "--duration", "1h", "--preempt")  # fmt: skip
    assert refused.code == 3 and "even after preempting" in refused.stderr
    # Without --preempt the future is never touched.
    book(cli, frozen, "lab", 30, 33, "--gpu", "4")
    plain = cli("reserve", "-t", "prod", "-p", "box", "--gpu", "1",
                "--start", at(frozen, 31), "--duration", "1h")  # fmt: skip
    assert plain.code == 3
    assert out(cli, "db", "check").startswith("ok:")


def test_the_fewest_and_lowest_go(cli, frozen, box) -> None:
    # vision (5) and lab (3) each hold 2 GPUs over the window: prod needs 2, and
    # takes them from the lowest priority.
    low = book(cli, frozen, "lab", 20, 23, "--gpu", "2")
    mid = book(cli, frozen, "vision", 20, 23, "--gpu", "2")
    result = js(cli, "reserve", "-t", "prod", "-p", "box", "--gpu", "2",
                "--start", at(frozen, 21), "--duration", "1h", "--preempt")  # fmt: skip
    assert [v["id"] for v in result["preempted"]] == [low]
    assert shown(cli, mid)["preempt_at"] is None
    assert result["reservation"]["gpu_ids"] == shown(cli, low)["gpu_ids"]


def test_cancelling_the_preemptor_gives_the_time_back(cli, frozen, box) -> None:
    morning = book(cli, frozen, "lab", 20, 23, "--gpu", "4")
    prod = js(cli, "reserve", "-t", "prod", "-p", "box", "--gpu", "4",
              "--start", at(frozen, 21), "--duration", "1h", "--preempt")  # fmt: skip
    released = js(cli, "unreserve", prod["reservation"]["id"])
    assert released["pardoned"] == [
        {"id": morning, "truncated_at": at(frozen, 21).replace("Z", ".000000Z"), "until":
         at(frozen, 23).replace("Z", ".000000Z"), "whole": True, "why": None}
    ]  # fmt: skip
    back = shown(cli, morning)
    assert back["preempt_at"] is None and back["preempted_by"] is None
    assert back["expires_at"] == at(frozen, 23).replace("Z", ".000000Z")
    assert actions(cli, morning)[-1] == "reservation.pardon"
    assert out(cli, "db", "check").startswith("ok:")


def test_time_booked_meanwhile_keeps_a_victim_truncated(cli, frozen, box) -> None:
    morning = book(cli, frozen, "lab", 20, 23, "--gpu", "4")
    prod = out(cli, "reserve", "-q", "-t", "prod", "-p", "box", "--gpu", "4",
               "--start", at(frozen, 21), "--duration", "1h", "--preempt").strip()  # fmt: skip
    # After the preemptor's hour, vision books a GPU into the rest of lab's morning.
    book(cli, frozen, "vision", 22.5, 24, "--gpu", "1")
    text = out(cli, "unreserve", prod)
    assert f"Reservation '{morning}' gets part of its time back" in text
    part = shown(cli, morning)
    assert part["preempt_at"] == at(frozen, 22.5).replace("Z", ".000000Z")
    # The preemptor takes only CPUs; vision books the GPUs lab gave up: nothing
    # comes back, and the message says why.
    other = book(cli, frozen, "lab", 30, 33, "--gpu", "4", "--cpu", "8")
    second = out(cli, "reserve", "-q", "-t", "prod", "-p", "box", "--cpu", "16",
                 "--start", at(frozen, 31), "--duration", "1h", "--preempt").strip()  # fmt: skip
    book(cli, frozen, "vision", 31, 33, "--gpu", "4")
    text = out(cli, "unreserve", second)
    assert f"Reservation '{other}' stays truncated at" in text and "gpu=0 are free" in text
    assert shown(cli, other)["preempt_at"] == at(frozen, 31).replace("Z", ".000000Z")
    assert out(cli, "db", "check").startswith("ok:")


def test_the_database_refuses_to_undo_a_truncation_behind_resgate(cli, frozen, box) -> None:
    morning = book(cli, frozen, "lab", 20, 23, "--gpu", "4", "--cpu", "8")
    ok(cli, "reserve", "-t", "prod", "-p", "box", "--cpu", "16",
       "--start", at(frozen, 21), "--duration", "1h", "--preempt")  # fmt: skip
    sql = f"UPDATE reservations SET preempt_at = NULL, expires_at = ends_at WHERE id = '{morning}'"
    with raw_sql() as execute, pytest.raises(Exception, match="capacity"):
        execute(sql)
    assert shown(cli, morning)["preempt_at"] is not None


def test_the_higher_priority_victim_is_pardoned_first(cli, frozen, box) -> None:
    ok(cli, "tenant", "add", "ops", "--priority", "1")
    lab = book(cli, frozen, "lab", 20, 23, "--gpu", "2", "--cpu", "8")
    vision = book(cli, frozen, "vision", 20, 23, "--gpu", "2", "--cpu", "8")
    prod = out(cli, "reserve", "-q", "-t", "prod", "-p", "box", "--gpu", "4",
               "--start", at(frozen, 21), "--duration", "1h", "--preempt").strip()  # fmt: skip
    # Room for only one of them again: half the CPUs are booked meanwhile.
    book(cli, frozen, "ops", 21, 23, "--cpu", "8")
    pardoned = {p["id"]: p for p in js(cli, "unreserve", prod)["pardoned"]}
    assert pardoned[vision]["whole"] is True
    assert (
        pardoned[lab]["whole"] is False and pardoned[lab]["until"] == pardoned[lab]["truncated_at"]
    )
    assert shown(cli, vision)["preempt_at"] is None
    assert shown(cli, lab)["preempt_at"] == at(frozen, 21).replace("Z", ".000000Z")


def test_the_victims_see_the_coming_end(cli, frozen, box) -> None:
    morning = book(cli, frozen, "lab", 1, 5, "--gpu", "4")
    ok(cli, "reserve", "-t", "prod", "-p", "box", "--gpu", "1",
       "--start", at(frozen, 3), "--duration", "1h", "--preempt")  # fmt: skip
    shown_pool = js(cli, "pool", "show", "box")
    assert shown_pool["preempted_ahead"] == [
        {"reservation": morning, "tenant": "lab", "by": "prod",
         "preempt_at": at(frozen, 3).replace("Z", ".000000Z")}
    ]  # fmt: skip
    assert f"Preempted ahead: {morning[:8]}… (lab) at " in out(cli, "pool", "show", "box")
    frozen.advance(2 * 3600)  # running now, one hour left
    (line,) = [ln for ln in out(cli, "list").splitlines() if ln.startswith(morning)]
    assert line.rstrip().endswith("1h0m (preempted)")
