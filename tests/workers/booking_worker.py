"""A worker booking random windows through the engine API, for tests/test_booking_load.py.

    python booking_worker.py DB NAME SEED SECONDS BARRIER

Books random windows (now or up to two hours ahead, bounded or open-ended, CPUs
and GPUs) on the pool `box` for random tenants, and cancels some of its own, for
SECONDS. Refusals for capacity, devices or the per-tenant limit (exit 3 and 4) are
expected and counted; a busy database (exit 5) is counted too; anything else ends
the worker with a traceback. The counts go to stdout as JSON."""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from datetime import timedelta

from ledger import barrier

from resgate.engine import release, reservations
from resgate.engine.records import Amounts
from resgate.engine.reservations import ReserveRequest
from resgate.errors import Busy, InsufficientResources, Refused
from resgate.store.database import open_database, resolve_target

TENANTS = ("t0", "t1", "t2", "t3", "t4", "t5")


def main() -> None:
    db, name, seed, seconds, directory = sys.argv[1:]
    rng = random.Random(int(seed))
    database = open_database(resolve_target(db), write=True)
    counts: Counter[str] = Counter()
    mine: list[str] = []
    barrier(directory, name)
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            if mine and rng.random() < 0.15:
                rid = mine.pop(rng.randrange(len(mine)))
                database.run(lambda tx, rid=rid: release.unreserve(tx, rid), write=True)
                counts["cancel"] += 1
                continue
            start = rng.choice([None, 5, 30, 60, 90, 120])
            length = rng.choice([None, 15, 30, 60, 120])

            def work(tx, start=start, length=length):  # type: ignore[no-untyped-def]
                request = ReserveRequest(
                    rng.choice(TENANTS),
                    "box",
                    Amounts(rng.randint(0, 4), 0, rng.randint(1, 3)),
                    start=None if start is None else tx.now + timedelta(minutes=start),
                    duration=None if length is None else length * 60,
                )
                return reservations.reserve(tx, request)

            mine.append(database.run(work, write=True).id)
            counts["booked"] += 1
        except InsufficientResources:
            counts["refused 3"] += 1
        except Refused:
            counts["refused 4"] += 1
        except Busy:
            counts["busy"] += 1
    database.dispose()
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
