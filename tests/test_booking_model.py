"""Booking ahead against brute force (README "Booking ahead"): a Hypothesis state
machine drives random bookings (now or ahead, bounded or open-ended, with CPUs and
GPUs), preemptive bookings, cancellations, extensions, resizes and clock advances
through the engine API with an injected clock, and checks each step's outcome (the
GPU ids chosen, or the exit code of the refusal) against
tests/workers/booking_model.py, a minute-by-minute model that imports nothing from
resgate. A preemptive booking is checked by its consequences: its victims are of
lower priority and in the way, the request then fits by the model's rules, none of
a future window's victims could be spared, a refusal means even evicting all of
them would not do, and the pardons that follow a cancelled preemptor give back
what the model gives back. After every step the statuses and planned truncations
must agree and `db check` (which recomputes pool_free) must be clean."""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import booking_model
from booking_model import BookingModel, Refused
from helpers import STANDARD_LIBRARY, imported_packages
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from resgate.clock import FixedClock
from resgate.engine import check, extension, listing, pools, release, reservations, tenants
from resgate.engine.policies import Policy
from resgate.engine.records import Amounts
from resgate.engine.reservations import ReserveRequest
from resgate.errors import ResgateError
from resgate.store.database import open_database, resolve_target

START = datetime(2026, 12, 1, 8, 0, 0)
TENANTS = ("nlp", "cv", "ops")
PRIORITY = {"nlp": 3, "cv": 5, "ops": 7}
CPU, GPUS, PER_TENANT = 8, 4, 2
MINUTE = 60


class BookingMatchesModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="resgate-booking-"))
        os.environ["RESGATE_SYNCHRONOUS"] = "NORMAL"  # a throwaway file
        self.database = open_database(
            resolve_target(str(self.directory / "booking.db")), write=True
        )
        self.clock = FixedClock(START)
        self.model = BookingModel(CPU, GPUS, PER_TENANT)
        self.ids: list[str] = []
        self.database.run(
            lambda tx: pools.create_pool(
                tx, "box", Amounts(CPU, 0, GPUS), policy=Policy(per_tenant=PER_TENANT)
            ),
            write=True,
            clock=self.clock,
        )
        for name in TENANTS:
            self.database.run(
                lambda tx, name=name: tenants.add_tenant(tx, name, PRIORITY[name]),
                write=True,
                clock=self.clock,
            )

    def teardown(self) -> None:
        self.database.dispose()
        shutil.rmtree(self.directory, ignore_errors=True)
        os.environ.pop("RESGATE_SYNCHRONOUS", None)

    def both(self, engine_call: Any, model_call: Any) -> Any:
        try:
            got: Any = ("ok", self.database.run(engine_call, write=True, clock=self.clock))
        except ResgateError as exc:
            got = ("exit", exc.exit_code, exc.message)
        try:
            expected: Any = ("ok", model_call())
        except Refused as refused:
            expected = ("exit", refused.code)
        event(
            f"{sys._getframe(1).f_code.co_name}: " + ("ok" if got[0] == "ok" else f"exit {got[1]}")
        )
        if got[0] == "exit":
            assert got[:2] == expected, f"engine {got!r}, model {expected!r}"
        else:
            assert got[0] == expected[0], f"engine {got!r}, model {expected!r}"
        return got[1] if got[0] == "ok" else None

    @rule(
        tenant=st.sampled_from(TENANTS),
        start=st.sampled_from([0, 0, 10, 30, 60, 90, 120]),
        length=st.sampled_from([None, 15, 30, 60, 120]),
        cpu=st.integers(0, 5),
        gpu=st.integers(0, 3),
    )
    def book(self, tenant: str, start: int, length: int | None, cpu: int, gpu: int) -> None:
        if cpu == 0 and gpu == 0:
            cpu = 1
        request = ReserveRequest(
            tenant,
            "box",
            Amounts(cpu, 0, gpu),
            start=None if start == 0 else self.clock.now() + timedelta(minutes=start),
            duration=None if length is None else length * MINUTE,
        )
        made = self.both(
            lambda tx: reservations.reserve(tx, request),
            lambda: self.model.book(
                tenant, self.model.now + start, length, cpu, gpu, PRIORITY[tenant]
            ),
        )
        if made is not None:
            assert made.gpu_ids == self.model.bookings[-1].devices
            self.ids.append(made.id)

    @rule(index=st.integers(0, 100))
    def cancel(self, index: int) -> None:
        if self.ids:
            i = index % len(self.ids)
            self.both(
                lambda tx: release.unreserve_many(tx, [self.ids[i]]), lambda: self.model.cancel(i)
            )

    @rule(
        tenant=st.sampled_from(TENANTS[1:]),
        start=st.sampled_from([0, 10, 30, 60, 90]),
        length=st.sampled_from([None, 15, 30, 60]),
        cpu=st.integers(0, 6),
        gpu=st.integers(0, 4),
    )
    def preempt(self, tenant: str, start: int, length: int | None, cpu: int, gpu: int) -> None:
        if cpu == 0 and gpu == 0:
            gpu = 1
        request = ReserveRequest(
            tenant,
            "box",
            Amounts(cpu, 0, gpu),
            preempt=True,
            start=None if start == 0 else self.clock.now() + timedelta(minutes=start),
            duration=None if length is None else length * MINUTE,
        )
        at = self.model.now + start
        before = copy.deepcopy(self.model)
        in_the_way = self.model.in_the_way(PRIORITY[tenant], at, length)
        try:
            result = self.database.run(
                lambda tx: reservations.reserve_and_report(tx, request),
                write=True,
                clock=self.clock,
            )
        except ResgateError as exc:
            # Even evicting everything in the way would not do (or a rule before
            # capacity refuses, as the model's own book says).
            every = copy.deepcopy(before)
            every.evict(in_the_way, at, len(every.bookings))
            try:
                every.book(tenant, at, length, cpu, gpu, PRIORITY[tenant])
            except Refused as refused:
                assert refused.code == exc.exit_code, exc.message
                event(f"preempt: exit {exc.exit_code}")
                return
            raise AssertionError(
                f"engine refused ({exc.message}); evicting all would fit"
            ) from None
        victims = [self.ids.index(v.reservation.id) for v in result.preempted]
        event(f"preempt: {len(victims)} victim(s)")
        assert set(victims) <= set(in_the_way)
        self.model.evict(victims, at, len(self.model.bookings))
        devices = self.model.book(tenant, at, length, cpu, gpu, PRIORITY[tenant])
        assert result.reservation.gpu_ids == devices
        self.ids.append(result.reservation.id)
        self.model.pardon([i for i in victims if self.model.bookings[i].preempted])
        if start > 0:  # over a window ahead the victims are a smallest set
            for spared in victims:
                fewer = copy.deepcopy(before)
                fewer.evict([i for i in victims if i != spared], at, len(fewer.bookings))
                try:
                    fewer.book(tenant, at, length, cpu, gpu, PRIORITY[tenant])
                except Refused:
                    continue
                raise AssertionError(f"victim {spared} could have been spared")

    @rule(index=st.integers(0, 100), by=st.sampled_from([15, 30, 60]))
    def extend(self, index: int, by: int) -> None:
        if self.ids:
            i = index % len(self.ids)
            change = extension.Extension(by=by * MINUTE)
            self.both(
                lambda tx: extension.extend_and_report(tx, self.ids[i], change),
                lambda: self.model.extend(i, by),
            )

    @rule(cpu=st.integers(2, 10))
    def resize(self, cpu: int) -> None:
        self.both(lambda tx: pools.resize_pool(tx, "box", cpu=cpu), lambda: self.model.resize(cpu))

    @rule(minutes=st.sampled_from([5, 15, 30, 60]))
    def advance(self, minutes: int) -> None:
        self.clock.advance(minutes * MINUTE)
        self.model.advance(minutes)

    @invariant()
    def agrees(self) -> None:
        rows = self.database.run(
            lambda tx: listing.list_reservations(tx, include_ended=True),
            write=False,
            clock=self.clock,
        )
        status = {r.id: r.status for r in rows}
        assert [status[i] for i in self.ids] == self.model.shown()
        truncated = {r.id: r.preempt_at for r in rows}
        assert [
            None if truncated[i] is None else (truncated[i] - START) // timedelta(minutes=1)
            for i in self.ids
        ] == [b.preempt_at for b in self.model.bookings]
        report = self.database.run(check.check, write=False, clock=self.clock)
        assert report.problems == []


BookingMatchesModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_booking_matches_the_model = BookingMatchesModel.TestCase


def test_the_booking_model_imports_nothing_from_resgate() -> None:
    assert imported_packages(booking_model) <= STANDARD_LIBRARY
