"""The line against brute force (README "Waiting in line"): a Hypothesis state machine
drives random arrivals in line, plain reserves, releases, clock advances and writes
that change nothing through the engine API with an injected clock, and checks each
step against tests/workers/queue_model.py, a minute-by-minute model that imports
nothing from resgate: which tickets are admitted, which plain reserves are refused
(exit 3), and the head's ETA. So: nobody is admitted ahead of a higher-ranked ticket
that could come in; a lower-ranked admission never moves the head's promise later;
a small request that is done before the head's turn goes ahead; and a plain reserve
never takes what the head was promised."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import queue_model
from helpers import STANDARD_LIBRARY, imported_packages
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from queue_model import LineModel, Refused

from resgate.clock import FixedClock
from resgate.engine import pools, queue, release, reservations, tenants
from resgate.engine.policies import Policy
from resgate.engine.records import Amounts
from resgate.engine.reservations import ReserveRequest
from resgate.engine.sweep import sweep
from resgate.errors import ResgateError
from resgate.store.database import open_database, resolve_target

START = datetime(2026, 12, 1, 8, 0, 0)
PRIORITIES = {"nlp": 3, "cv": 5, "ops": 7}
CPU = 8
MINUTE = 60
LENGTHS = st.sampled_from([None, 15, 30, 60, 120])


class LineMatchesModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="resgate-line-"))
        os.environ["RESGATE_SYNCHRONOUS"] = "NORMAL"  # a throwaway file
        self.database = open_database(resolve_target(str(self.directory / "line.db")), write=True)
        self.clock = FixedClock(START)
        self.model = LineModel(CPU, PRIORITIES)
        self.tickets: dict[str, str] = {}  # model key -> ticket id
        self.held: dict[str, str] = {}  # model key -> reservation id
        self.write(
            lambda tx: pools.create_pool(
                tx, "box", Amounts(CPU, 0, 0), policy=Policy(per_tenant=None)
            )
        )
        for name, priority in PRIORITIES.items():
            self.write(lambda tx, n=name, p=priority: tenants.add_tenant(tx, n, p))

    def teardown(self) -> None:
        self.database.dispose()
        shutil.rmtree(self.directory, ignore_errors=True)
        os.environ.pop("RESGATE_SYNCHRONOUS", None)

    def write(self, work: Any) -> Any:
        return self.database.run(work, write=True, clock=self.clock)

    def both(self, engine_call: Any, model_call: Any) -> Any:
        try:
            got: Any = ("ok", self.write(engine_call))
        except ResgateError as exc:
            got = ("exit", exc.exit_code, exc.message)
        try:
            model_call()
            expected: Any = ("ok",)
        except Refused as refused:
            expected = ("exit", refused.code)
        event(f"{sys._getframe(1).f_code.co_name}: {got[0]} {got[1] if got[0] == 'exit' else ''}")
        assert got[: len(expected)] == expected, f"engine {got!r}, model {expected!r}"
        return got[1] if got[0] == "ok" else None

    def key(self) -> str:
        return f"k{len(self.tickets) + len(self.held)}"

    @rule(tenant=st.sampled_from(list(PRIORITIES)), cpu=st.integers(1, 9), length=LENGTHS)
    def join(self, tenant: str, cpu: int, length: int | None) -> None:
        request = ReserveRequest(
            tenant, "box", Amounts(cpu, 0, 0), duration=None if length is None else length * MINUTE
        )
        try:
            made = self.write(lambda tx: queue.join(tx, request))
        except ResgateError as exc:
            # Only what can never be admitted is refused.
            assert (exc.exit_code, cpu > CPU) == (3, True), exc.message
            event("join: exit 3")
            return
        # The model orders tickets of one instant by id, as the engine does.
        self.model.join(made.id, tenant, cpu, length)
        self.tickets[made.id] = made.id
        event("join: ok")

    @rule(tenant=st.sampled_from(list(PRIORITIES)), cpu=st.integers(1, 4), length=LENGTHS)
    def reserve(self, tenant: str, cpu: int, length: int | None) -> None:
        key = self.key()
        request = ReserveRequest(
            tenant, "box", Amounts(cpu, 0, 0), ttl=None if length is None else length * MINUTE
        )
        made = self.both(
            lambda tx: reservations.reserve(tx, request),
            lambda: self.model.reserve(key, tenant, cpu, length),
        )
        if made is not None:
            self.held[key] = made.id

    @rule(index=st.integers(0, 100))
    def release(self, index: int) -> None:
        live = [h.key for h in self.model.live()]
        if live:
            key = live[index % len(live)]
            rid = self.held[key]
            self.both(lambda tx: release.unreserve_many(tx, [rid]), lambda: self.model.release(key))

    @rule(minutes=st.sampled_from([5, 15, 30, 60]))
    def advance(self, minutes: int) -> None:
        self.clock.advance(minutes * MINUTE)
        self.model.advance(minutes)

    @rule()
    def reach_the_eta(self) -> None:
        """The head's ETA is a promise: with nobody releasing early and nobody of
        higher rank arriving, at that instant (to the second) it gets in."""
        rows = self.database.run(lambda tx: queue.line(tx), write=False, clock=self.clock)
        if not rows or rows[0].eta is None:
            return
        head, eta = rows[0], rows[0].eta
        self.clock.advance((eta - self.clock.now()).total_seconds())
        self.model.advance((eta - START) // timedelta(minutes=1) - self.model.now)
        self.both(sweep, self.model.poke)
        shown = self.database.run(
            lambda tx: queue.standing(tx, head.id), write=False, clock=self.clock
        )
        assert shown.status == "admitted", (shown, eta)
        event("reached an ETA")

    @rule()
    def poke(self) -> None:
        """A write that gives nothing back: the pass runs with the clock alone."""
        self.both(sweep, self.model.poke)

    @invariant()
    def agrees(self) -> None:
        rows = self.database.run(lambda tx: queue.line(tx), write=False, clock=self.clock)
        waiting = {t.id for t in rows}
        for ticket in self.model.tickets:
            tid = self.tickets[ticket.key]
            assert (tid in waiting) == (ticket.status == "waiting"), ticket
            if ticket.status == "admitted" and ticket.key not in self.held:
                shown = self.database.run(
                    lambda tx, t=tid: queue.standing(tx, t), write=False, clock=self.clock
                )
                self.held[ticket.key] = shown.reservation_id
        admitted = sum(t.status == "admitted" for t in self.model.tickets)
        event(f"admitted so far: {min(admitted, 3)}{'+' if admitted >= 3 else ''}")
        if rows:
            head = next(t for t in self.model.tickets if self.tickets[t.key] == rows[0].id)
            eta = self.model.earliest(head.cpu, head.length, self.model.live())
            shown_eta = (
                None if rows[0].eta is None else (rows[0].eta - START) // timedelta(minutes=1)
            )
            assert shown_eta == eta, (rows[0], eta)


LineMatchesModel.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_line_matches_the_model = LineMatchesModel.TestCase


def test_the_line_model_imports_nothing_from_resgate() -> None:
    assert imported_packages(queue_model) <= STANDARD_LIBRARY
