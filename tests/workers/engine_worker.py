"""A worker driving random operations through the engine API on one SQLite file.

    python engine_worker.py DB NAME SEED OPS LEDGER [--barrier DIR] [--marker FILE]

OPS < 0 loops until killed (the crash test). Every acknowledged operation (the
engine's transaction committed and `Database.run` returned) is appended to LEDGER
as one JSON line, fsynced, before the next operation starts.

--marker FILE (crash test): the worker writes `R` once it is running, `C <seq> <op>
<target>` just before COMMIT of every write transaction (SQLAlchemy's session
`before_commit`) and `D <seq>` right after COMMIT returned (`after_commit`). A
SIGKILL that leaves `C` as the last line landed inside a write transaction. To
widen that window the worker then sleeps a few milliseconds, still holding the
write lock, before it commits.

Expected refusals (exit codes 1, 3, 4) are counted; Busy (exit 5) is counted too
and the test decides whether it may happen; anything else is a bug and ends the
worker with a traceback. At the end (OPS >= 0) the counts go to stdout as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from typing import Any

from ledger import Ledger, barrier
from sqlalchemy import event

from resgate.config import os_user
from resgate.engine import evictions, extension, listing, pools, release, reservations, tenants
from resgate.engine.records import Amounts, Caller
from resgate.engine.reservations import ReserveRequest
from resgate.engine.sweep import sweep
from resgate.errors import (
    Busy,
    InsufficientResources,
    NotFound,
    Refused,
)
from resgate.store.database import Tx, open_database, resolve_target

EXPECTED = {
    NotFound: "not_found",
    InsufficientResources: "insufficient",
    Refused: "refused",
    Busy: "busy",
}


def iso(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.name = args.name
        self.rng = random.Random(args.seed)
        self.database = open_database(resolve_target(args.db), write=True)
        self.ledger = Ledger(args.ledger)
        self.marker_fd = (
            os.open(args.marker, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            if args.marker
            else None
        )
        self.seq = 0
        self.counts: Counter[str] = Counter()
        self.pools = [p.name for p in self.read(pools.list_pools)]
        self.tenants = [t.name for t in self.read(tenants.list_tenants)]
        self.mine: list[str] = []  # ids this worker created
        # The OS user, as the CLI passes it: tenants with members refuse the others.
        self.caller = Caller(os_user())

    # ---------------------------------------------------------------- plumbing

    def read(self, work: Any, *args: Any, **kwargs: Any) -> Any:
        return self.database.run(lambda tx: work(tx, *args, **kwargs), write=False)

    def mark(self, text: str) -> None:
        if self.marker_fd is not None:
            os.write(self.marker_fd, (text + "\n").encode())

    def write(self, op: str, target: str, work: Any) -> tuple[Any, Any] | None:
        """Run `work(tx)` in one write transaction; (tx.now, result), or None
        when the engine refused with one of the expected errors."""
        self.seq += 1
        seq = self.seq

        def wrapped(tx: Tx) -> tuple[Any, Any]:
            if self.marker_fd is not None:

                def before(session: Any) -> None:
                    self.mark(f"C {seq} {op} {target}")
                    time.sleep(self.rng.uniform(0.0, 0.015))

                def after(session: Any) -> None:
                    self.mark(f"D {seq}")

                event.listen(tx.session, "before_commit", before)
                event.listen(tx.session, "after_commit", after)
            return tx.now, work(tx)

        try:
            result = self.database.run(wrapped, write=True)
        except tuple(EXPECTED) as exc:
            self.counts[f"{op}:{EXPECTED[type(exc)]}"] += 1
            return None
        self.counts[f"{op}:ok"] += 1
        return result

    def ack(self, entry: dict[str, Any]) -> None:
        entry.update(worker=self.name, seq=self.seq)
        self.ledger.append(entry)

    def some_id(self) -> str | None:
        """Mostly an active reservation anyone holds (other workers race us for
        it); sometimes one of ours, whatever became of it."""
        if self.mine and self.rng.random() < 0.25:
            return self.rng.choice(self.mine)
        active = self.read(listing.list_reservations)
        if not active:
            return None
        return str(self.rng.choice(active).id)

    # ---------------------------------------------------------------- operations

    def op_reserve(self) -> None:
        tenant = self.rng.choice(self.tenants)
        pool = self.rng.choice(self.pools)
        amounts = Amounts(
            self.rng.randint(1, 3), self.rng.choice([0, 256, 512, 1024]), self.rng.randint(0, 1)
        )
        ttl = self.rng.choice([None, None, 1, 2, 3])
        request = ReserveRequest(tenant, pool, amounts, ttl, caller=self.caller)
        done = self.write(
            "reserve", f"{tenant}/{pool}", lambda tx: reservations.reserve(tx, request)
        )
        if done is None:
            return
        now, info = done
        self.mine.append(info.id)
        self.ack(
            {
                "op": "reserve",
                "now": iso(now),
                "id": info.id,
                "tenant": tenant,
                "pool": pool,
                "amounts": list(amounts),
                "ttl": ttl,
                "expires_at": iso(info.expires_at),
            }
        )

    def op_unreserve(self) -> None:
        rid = self.some_id()
        if rid is None:
            self.counts["unreserve:nothing"] += 1
            return
        done = self.write("unreserve", rid, lambda tx: release.unreserve(tx, rid, self.caller))
        if done is not None:
            self.ack({"op": "unreserve", "now": iso(done[0]), "id": rid})

    def op_extend(self) -> None:
        rid = self.some_id()
        if rid is None:
            self.counts["extend:nothing"] += 1
            return
        ttl = self.rng.choice([0, 1, 2, 4])
        done = self.write("extend", rid, lambda tx: extension.extend(tx, rid, ttl, self.caller))
        if done is not None:
            now, info = done
            self.ack(
                {
                    "op": "extend",
                    "now": iso(now),
                    "id": rid,
                    "ttl": ttl,
                    "expires_at": iso(info.expires_at),
                }
            )

    def op_preempt(self) -> None:
        attacker, target = self.rng.sample(self.tenants, 2)
        pool = self.rng.choice([None, *self.pools])
        done = self.write(
            "preempt",
            f"{attacker}>{target}/{pool}",
            lambda tx: evictions.preempt(tx, attacker, target, pool, self.caller),
        )
        if done is not None:
            now, result = done
            self.ack(
                {
                    "op": "preempt",
                    "now": iso(now),
                    "attacker": attacker,
                    "target": target,
                    "pool": pool,
                    "ids": [r.id for r in result.preempted],
                }
            )

    def op_sweep(self) -> None:
        done = self.write("sweep", "-", sweep)
        if done is not None:
            self.ack({"op": "sweep", "now": iso(done[0]), "ids": list(done[1])})

    def op_resize(self) -> None:
        pool = self.rng.choice(self.pools)
        cpu = self.rng.randint(3, 12)
        memory = self.rng.choice([None, 2048, 4096])
        done = self.write(
            "resize", pool, lambda tx: pools.resize_pool(tx, pool, cpu=cpu, memory=memory)
        )
        if done is not None:
            now, info = done
            self.ack({"op": "resize", "now": iso(now), "pool": pool, "total": list(info.total)})

    OPS = (
        ("op_reserve", 35),
        ("op_unreserve", 15),
        ("op_extend", 15),
        ("op_preempt", 10),
        ("op_sweep", 10),
        ("op_resize", 15),
    )

    def step(self) -> None:
        names = [name for name, _ in self.OPS]
        weights = [weight for _, weight in self.OPS]
        getattr(self, self.rng.choices(names, weights)[0])()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("name")
    parser.add_argument("seed", type=int)
    parser.add_argument("ops", type=int)
    parser.add_argument("ledger")
    parser.add_argument("--barrier")
    parser.add_argument("--marker")
    args = parser.parse_args()
    worker = Worker(args)
    worker.mark("R")
    if args.barrier:
        barrier(args.barrier, args.name)
    started = time.monotonic()
    done = 0
    while args.ops < 0 or done < args.ops:
        worker.step()
        done += 1
    worker.counts["seconds"] = round(time.monotonic() - started, 3)  # type: ignore[assignment]
    sys.stdout.write(json.dumps(dict(worker.counts), sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
