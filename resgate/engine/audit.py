"""The audit trail (README "The audit log"): an append-only, hash-chained log of every change.

Each event's hash covers its own fields and the previous event's hash, so editing,
deleting or reordering any event breaks the chain from that point on. Anyone can
recompute it: SHA-256 over the canonical JSON of
{"seq", "at", "actor", "action", "subject", "data", "prev_hash"}.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from itertools import chain
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import LargeBinary, cast, select

from resgate.clock import iso
from resgate.config import os_user_and_source
from resgate.engine.records import StoredEvent
from resgate.engine.validation import check_actor
from resgate.store.database import Tx
from resgate.store.models import Event

GENESIS = "0" * 64
ACTIONS = (
    "pool.create",
    "pool.resize",
    "pool.delete",
    "tenant.add",
    "tenant.update",
    "tenant.remove",
    "reservation.create",
    "reservation.release",
    "reservation.extend",
    "reservation.expire",
    "reservation.preempt",
    "reservation.renew",
)


@cache
def _os_actor() -> str:
    """The real user (README "Who is acting"), with the checks RESGATE_ACTOR gets:
    LOGNAME and USER, used when the uid has no passwd entry, are anyone's to set."""
    return check_actor(*os_user_and_source())


def actor() -> str:
    """Who is acting: RESGATE_ACTOR, else the OS user name, else `uid:<n>`.
    Refused (exit 2) when it is not printable UTF-8 or longer than the column
    (validation.check_actor): it is shown by `audit log` and stored on both
    databases alike. While a waiting request is admitted on its owner's behalf
    (`on_behalf_of`), its owner."""
    owner = _ON_BEHALF.get()
    if owner is not None:
        return owner[0]
    chosen = os.environ.get("RESGATE_ACTOR")
    return _checked(chosen) if chosen else _os_actor()


# (owner, the actor of the transaction): README "Waiting in line".
_ON_BEHALF: ContextVar[tuple[str, str] | None] = ContextVar("resgate_on_behalf", default=None)


@contextmanager
def on_behalf_of(owner: str) -> Iterator[None]:
    """Within: events are the owner's, and their data says `via` whom."""
    via = actor()
    token = _ON_BEHALF.set((owner, via))
    try:
        yield
    finally:
        _ON_BEHALF.reset(token)


def os_user_label() -> str | None:
    """The OS user when RESGATE_ACTOR names someone else (README "Who is acting"):
    every event's data then says who really ran the command. None otherwise."""
    chosen = os.environ.get("RESGATE_ACTOR")
    if not chosen:
        return None
    real = _os_actor()
    return None if _checked(chosen) == real else real


@lru_cache(maxsize=8)
def _checked(value: str) -> str:
    return check_actor(value)


# One encoder each, reused: json.dumps with options builds a new one per call.
# The canonical form is exactly json.dumps(body, sort_keys=True,
# separators=(",", ":"), ensure_ascii=False).
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
# A str as a JSON string literal, as JSONEncoder(ensure_ascii=False) writes it
# (this is the function it calls), without the encoder's per-call overhead.
_string = encode_basestring


def _hash(seq: int, at: str, who: str, action: str, subject: str, data: Any, prev: str) -> str:
    body = {
        "seq": seq,
        "at": at,
        "actor": who,
        "action": action,
        "subject": subject,
        "data": data,
        "prev_hash": prev,
    }
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def event_hash(
    seq: int, at: datetime, who: str, action: str, subject: str, data: Any, prev_hash: str
) -> str:
    return _hash(seq, iso(at), who, action, subject, data, prev_hash)


@dataclass(frozen=True)
class Change:
    action: str
    subject: str
    data: dict[str, Any]


def head(tx: Tx) -> tuple[int, str]:
    # Plain SQL on the session's connection: this runs in every write
    # transaction, and the ORM's statement handling cost more than the query.
    row = tx.connection.exec_driver_sql(
        "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
    ).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def record(tx: Tx, changes: Iterable[Change]) -> None:
    """Append events for `changes`, in order, in the caller's transaction."""
    owner = _ON_BEHALF.get()
    if owner is not None:
        changes = [Change(c.action, c.subject, {**c.data, "via": owner[1]}) for c in changes]
    append(tx, ((c.action, c.subject, _canonical(c.data)) for c in changes))


def append(tx: Tx, events: Iterable[tuple[str, str, str]]) -> None:
    """Append events given as (action, subject, data as canonical JSON text), in
    order: one INSERT however many. The writer holds the audit head (BEGIN
    IMMEDIATE on SQLite, the audit_head row on PostgreSQL), so max + 1 is safe.
    The sweep calls this directly with its data already encoded: it may log
    100,000 events in one go (benchmarks/, sweep)."""
    pending = iter(events)
    first = next(pending, None)
    if first is None:
        return
    seq, prev = head(tx)
    who = actor()
    real = os_user_label()
    # What every event of this batch shares, encoded once. The body is assembled
    # in sorted key order, byte for byte what _canonical would give.
    shared = f'"actor":{_string(who)},"at":{_string(iso(tx.now))},"data":'
    # The stored form of `at`: text on SQLite, a timestamp on PostgreSQL.
    stored_at: object = tx.now if tx.is_postgres else tx.now.strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = []
    for action, subject, data in chain((first,), pending):
        seq += 1
        if real is not None:
            data = _with_os_user(data, real)
        body = (
            f'{{"action":{_string(action)},{shared}{data},"prev_hash":"{prev}",'
            f'"seq":{seq},"subject":{_string(subject)}}}'
        )
        digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
        rows.append((seq, stored_at, who, action, subject, data, prev, digest))
        prev = digest
    # The driver's own execute(many): no per-row parameter processing.
    sql = _INSERT_EVENTS["?" if tx.connection.dialect.paramstyle == "qmark" else "%s"]
    tx.connection.exec_driver_sql(sql, rows[0] if len(rows) == 1 else rows)


def _with_os_user(data: str, name: str) -> str:
    """`data` (canonical JSON of an object) with "os_user" added, still canonical:
    the hash covers data, so `audit verify` recomputes exactly this."""
    if data == "{}":
        return f'{{"os_user":{_string(name)}}}'
    body = json.loads(data)
    body["os_user"] = name
    return _canonical(body)


_INSERT_EVENTS = {
    mark: "INSERT INTO events (seq, at, actor, action, subject, data, prev_hash, hash) "
    f"VALUES ({', '.join([mark] * 8)})"
    for mark in ("?", "%s")
}


def log(
    tx: Tx,
    since: datetime | None = None,
    since_seq: int | None = None,
    action: str | None = None,
) -> Iterator[StoredEvent]:
    """The events, oldest first, as stored: a row edited behind resgate's back
    (`sqlite3`) is still read, whatever it holds (`audit verify` names it)."""
    query = select(Event.seq, *_stored_columns(tx)).order_by(Event.seq)
    if since is not None:
        query = query.where(Event.at >= since)
    if since_seq is not None:
        query = query.where(Event.seq > since_seq)
    if action is not None:
        query = query.where(Event.action == action)
    rows = tx.session.execute(query, execution_options={"yield_per": 2000})
    with rows:
        yield from _decoded(rows, tx.is_postgres)


_STORED = ("at", "actor", "action", "subject", "data", "prev_hash", "hash")


def _stored_columns(tx: Tx) -> list[Any]:
    """Every column after seq. On SQLite each as its bytes: text stored there with
    `sqlite3` need not be UTF-8 nor `at` a time, and the driver would fail on
    reading either; _decoded makes sense of them instead."""
    columns = [getattr(Event, name) for name in _STORED]
    if tx.is_postgres:  # typed and checked by the server: always what resgate wrote
        return columns
    return [cast(column, LargeBinary).label(column.key) for column in columns]


def _decoded(rows: Iterable[Any], is_postgres: bool) -> Iterator[StoredEvent]:
    if is_postgres:
        for row in rows:
            yield StoredEvent(*row)
        return
    for seq, at, *texts in rows:
        text_at = _text(at)
        when = _stored_time(text_at)
        yield StoredEvent(seq, text_at if when is None else when, *map(_text, texts))


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    events: int
    head: str
    first_bad_seq: int | None
    reason: str | None  # "missing", "altered", "out of chain" or "head mismatch"
    found: str | None = None  # head mismatch: the hash the saved head's seq has


def verify(tx: Tx, expect: tuple[int, str] | None = None) -> Verdict:
    """Recompute the chain from seq 1; name the first bad event."""
    # As log() reads them: an edit that is no time at all, or no UTF-8, is
    # reported as altered instead of failing inside the driver.
    rows = tx.session.execute(
        select(Event.seq, *_stored_columns(tx)).order_by(Event.seq),
        execution_options={"yield_per": 5000},
    )
    # Closed on every way out: verify stops at the first bad event, and an open
    # server-side cursor (PostgreSQL, yield_per) would outlive the transaction.
    with rows:
        return _verify_rows(_decoded(rows, tx.is_postgres), expect)


def _verify_rows(rows: Iterable[StoredEvent], expect: tuple[int, str] | None) -> Verdict:
    expected_seq, prev, count = 1, GENESIS, 0
    pinned_seen = False
    for row in rows:
        if row.seq != expected_seq:
            return Verdict(False, count, prev, expected_seq, "missing")
        try:
            data = json.loads(row.data)  # type: ignore[arg-type]
        except (TypeError, ValueError, RecursionError):
            return Verdict(False, count, prev, row.seq, "altered")
        if not isinstance(row.at, datetime):
            return Verdict(False, count, prev, row.seq, "altered")
        try:
            digest = event_hash(
                row.seq,
                row.at,
                row.actor,  # type: ignore[arg-type]
                row.action,  # type: ignore[arg-type]
                row.subject,  # type: ignore[arg-type]
                data,
                row.prev_hash,  # type: ignore[arg-type]
            )
        except (UnicodeEncodeError, RecursionError):  # text that was not UTF-8
            return Verdict(False, count, prev, row.seq, "altered")
        if digest != row.hash:
            return Verdict(False, count, prev, row.seq, "altered")
        if row.prev_hash != prev:
            return Verdict(False, count, prev, row.seq, "out of chain")
        if expect is not None and row.seq == expect[0]:
            if row.hash != expect[1]:
                return Verdict(False, count, prev, row.seq, "head mismatch", str(row.hash))
            pinned_seen = True
        prev, expected_seq, count = str(row.hash), expected_seq + 1, count + 1
    if expect is not None and not pinned_seen:
        # The log ends before a head saved earlier: it was cut short.
        return Verdict(False, count, prev, max(expected_seq, 1), "missing")
    return Verdict(True, count, prev, None, None)


def _stored_time(value: object) -> datetime | None:
    """An event's `at` as read back; None when it is not a time (edited)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
