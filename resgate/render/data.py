"""Machine output: the JSON shapes of README "Using it" and the CSV rows of README "Using it"."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from resgate import clock
from resgate.engine.records import (
    FreeInfo,
    Held,
    ImportSummary,
    Pardon,
    PoolInfo,
    PreemptResult,
    ReservationInfo,
    Slot,
    StatusReport,
    StoredEvent,
    TenantInfo,
    Ticket,
    Timeline,
)
from resgate.limits import RESOURCES

CSV_HEADER = [
    "id",
    "tenant",
    "pool",
    "cpu",
    "memory",
    "gpu",
    "ttl",
    "status",
    "created_at",
    "expires_at",
    "ended_at",
    "preempted_by",
    "gpu_ids",  # README "GPU devices": the devices, separated by spaces
    "starts_at",  # README "Booking ahead"
    "ends_at",
    "preempt_at",
    "created_by",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def iso(value: datetime | None) -> str | None:
    """A time as resgate writes it (resgate.clock.iso), or null."""
    return None if value is None else clock.iso(value)


def reservation(info: ReservationInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "tenant": info.tenant,
        "pool": info.pool,
        "cpu": info.amounts.cpu,
        "memory": info.amounts.memory,
        "gpu": info.amounts.gpu,
        "ttl": info.ttl,
        "status": info.status,
        "created_at": iso(info.created_at),
        "expires_at": iso(info.expires_at),
        "ended_at": iso(info.ended_at),
        "preempted_by": info.preempted_by,
        "preempted_for": info.preempted_for,
        "request_id": info.request_id,
        "gpu_ids": list(info.gpu_ids),
        "created_by": info.created_by,
        "starts_at": iso(info.starts_at),
        "ends_at": iso(info.ends_at),
        "preempt_at": iso(info.preempt_at),
        "lease": info.lease,
    }


def pool(info: PoolInfo, with_devices: bool = False) -> dict[str, Any]:
    shape = _pool(info)
    if with_devices:
        shape["devices"] = [{"id": device, "reservation": rid} for device, rid in info.devices]
        shape["preempted_ahead"] = [
            {"reservation": t.id, "tenant": t.tenant, "preempt_at": iso(t.at), "by": t.by}
            for t in info.truncations
        ]
    return shape


def _pool(info: PoolInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "total": info.total._asdict(),
        "reserved": info.reserved._asdict(),
        "available": info.available._asdict(),
        "utilization": info.utilization,
        "health": info.health,
        "created_at": iso(info.created_at),
        "per_tenant": info.per_tenant,
        "default_ttl": info.default_ttl,
        "max_ttl": info.max_ttl,
    }


def tenant(info: TenantInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "priority": info.priority,
        "active_reservations": info.active_reservations,
        "created_at": iso(info.created_at),
        "max": {res: getattr(info.max, res) for res in RESOURCES},
        "held": info.held._asdict(),
        "members": list(info.members),
    }


def status(report: StatusReport) -> dict[str, Any]:
    return {
        "pools": [pool(p) for p in report.pools],
        "tenants": [tenant(t) for t in report.tenants],
        "reservations": dict(report.counts),
        "window_hours": report.window_hours,
    }


def preempt(result: PreemptResult) -> dict[str, Any]:
    payload = {"target": result.target, "preempted": [reservation(r) for r in result.preempted]}
    if result.pardons:
        payload["pardoned"] = [pardon(p) for p in result.pardons]
    return payload


def pardon(given: Pardon) -> dict[str, Any]:
    """A truncated reservation given back its time (whole: all of it)."""
    return {
        "id": given.id,
        "truncated_at": iso(given.truncated_at),
        "until": iso(given.until),
        "whole": given.whole,
        "why": given.why,
    }


def dumps_for(value: Any, encoding: str | None) -> str:
    """JSON for text that anyone may have written (the audit log's actor, or
    anything stored with `sqlite3`): with \\u escapes instead when a stream in
    `encoding` (ASCII, Latin-1: PYTHONIOENCODING, a C locale) could not write it,
    or when it holds what JSON leaves raw but a terminal would act on (DEL, C1
    such as the 8-bit CSI, bidi overrides). The same JSON either way."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if not text.isascii() and encoding is not None:
        try:
            text.encode(encoding)
        except (UnicodeEncodeError, LookupError):
            return _ascii(value)
    return text if text.replace("\n", "").isprintable() else _ascii(value)


def _ascii(value: Any) -> str:
    # DEL is ASCII, so ensure_ascii leaves it; it only ever occurs inside a string.
    return json.dumps(value, indent=2, ensure_ascii=True).replace("\x7f", "\\u007f")


def write_json_report(
    stream: IO[str],
    generated_at: datetime,
    pools: list[PoolInfo],
    tenants: list[TenantInfo],
    active: list[ReservationInfo],
    history: Iterable[ReservationInfo],
    audit_head: tuple[int, str],
) -> None:
    """The export report, written as the history streams past (never all in memory)."""
    head = {
        "generated_at": iso(generated_at),
        "audit_head": {"seq": audit_head[0], "hash": audit_head[1]},
        "pools": [pool(p) for p in pools],
        "tenants": [tenant(t) for t in tenants],
        "reservations": [reservation(r) for r in active],
    }
    text = json.dumps(head, indent=2, ensure_ascii=False)
    stream.write(text[:-2])  # reopen the object: drop the closing "\n}"
    stream.write(',\n  "history": [')
    # One encoder for every row: json.dumps(…, ensure_ascii=False) builds a new one
    # per call. Same output as json.dumps.
    encode = json.JSONEncoder(ensure_ascii=False).encode
    first = True
    for info in history:
        stream.write("\n    " if first else ",\n    ")
        stream.write(encode(reservation(info)))
        first = False
    stream.write("\n  ]\n}\n" if not first else "]\n}\n")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if type(value) is int:  # amounts and TTLs: never negative, never a formula
        return str(value)
    text = str(value)
    # A spreadsheet would run these as formulas.
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def write_csv_report(stream: IO[str], history: Iterable[ReservationInfo]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    # The cells of CSV_HEADER, built straight from the record (no dict per row):
    # amounts are ints, times ISO text that starts with a digit; text goes
    # through _cell. The history can be millions of rows (benchmarks/, export).
    for info in history:
        amounts = info.amounts
        ttl, created, expires, ended = info.ttl, info.created_at, info.expires_at, info.ended_at
        starts = info.starts_at
        writer.writerow(
            (
                _cell(info.id),
                _cell(info.tenant),
                _cell(info.pool),
                str(amounts.cpu),
                str(amounts.memory),
                str(amounts.gpu),
                "" if ttl is None else _cell(ttl),
                _cell(info.status),
                clock.iso(created),
                "" if expires is None else clock.iso(expires),
                "" if ended is None else clock.iso(ended),
                _cell(info.preempted_by),
                _cell(" ".join(map(str, info.gpu_ids))),
                "" if starts is None else clock.iso(starts),
                "" if info.ends_at is None else clock.iso(info.ends_at),
                "" if info.preempt_at is None else clock.iso(info.preempt_at),
                _cell(info.created_by),
            )
        )


def import_summary(summary: ImportSummary, dry_run: bool) -> dict[str, Any]:
    """`resgate import-state --json`."""
    return {
        "created": {
            "pools": summary.created_pools,
            "tenants": summary.created_tenants,
            "reservations": summary.created_reservations,
        },
        "reused": {"pools": summary.reused_pools, "tenants": summary.reused_tenants},
        "skipped": summary.skipped,
        "released": summary.released,
        "created_deleted": {"pools": summary.deleted_pools, "tenants": summary.deleted_tenants},
        "statuses": dict(summary.statuses),
        "ended_at_import_time": summary.ended_at_import_time,
        "dry_run": dry_run,
    }


def _displayable(value: str | None) -> str | None:
    """Text fit for any output: bytes that were not UTF-8 as `\\xff`."""
    if value is None or value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def event(event: StoredEvent) -> dict[str, Any]:
    """Every column of an event; `data` as the object it encodes. A value that was
    edited into something resgate never writes (`at` no time, `data` no JSON) is
    given as the text stored, so the log can still be read."""
    at = event.at
    if isinstance(at, datetime):
        if at.tzinfo is not None:
            at = at.astimezone(UTC).replace(tzinfo=None)
        shown_at: str | None = clock.iso(at)
    else:
        shown_at = _displayable(at)
    data: Any
    try:
        data = json.loads(event.data)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        data = _displayable(event.data)
    return {
        "seq": event.seq,
        "at": shown_at,
        "actor": _displayable(event.actor),
        "action": _displayable(event.action),
        "subject": _displayable(event.subject),
        "data": data,
        "prev_hash": _displayable(event.prev_hash),
        "hash": _displayable(event.hash),
    }


def free(info: FreeInfo, promised: dict[str, int] | None = None) -> dict[str, Any]:
    """`resgate free --json`: one pool's free amounts and GPU ids, and until when
    (null: nothing booked takes them). `promised` (to the queue's head) is zeros
    until the queue exists."""
    return {
        "pool": info.pool,
        "free": info.free._asdict(),
        "gpu_ids": list(info.gpu_ids),
        "until": iso(info.until),
        "promised": promised or dict.fromkeys(RESOURCES, 0),
    }


def ticket(shown: Ticket) -> dict[str, Any]:
    """`resgate queue --json`: one ticket (`eta` null: unknown)."""
    return {
        "ticket": shown.id,
        "pool": shown.pool,
        "tenant": shown.tenant,
        "created_by": shown.created_by,
        "priority": shown.priority,
        "request": {
            **shown.amounts._asdict(),
            "gpu_ids": None if shown.gpu_ids is None else list(shown.gpu_ids),
            "duration": shown.duration,
        },
        "position": shown.position,
        "enqueued_at": iso(shown.enqueued_at),
        "eta": iso(shown.eta),
        "reason": shown.reason,
        "status": shown.status,
    }


def slot(found: Slot) -> dict[str, Any]:
    """`resgate slots --json`: one window; `because` names what frees it (null:
    free at the start asked for)."""
    because = None
    if found.freed_by is not None:
        because = {"reservation": found.freed_by[0], "tenant": found.freed_by[1]}
    return {
        "start": iso(found.start),
        "free_until": iso(found.free_until),
        "gpu_ids": list(found.gpu_ids),
        "because": because,
    }


def timeline(drawn: Timeline) -> dict[str, Any]:
    """`resgate timeline --json`: each GPU's spans, and the reservations in full."""

    def spans(device: int) -> list[dict[str, Any]]:
        return [_span(h) for h in drawn.held if device in h.reservation.gpu_ids]

    return {
        "pool": drawn.pool,
        "from": iso(drawn.start),
        "to": iso(drawn.end),
        "devices": [{"id": device, "spans": spans(device)} for device in drawn.device_ids],
        "reservations": [reservation(h.reservation) for h in drawn.held],
    }


def _span(held: Held) -> dict[str, Any]:
    return {
        "start": iso(held.start),
        "end": iso(held.end),
        "reservation": held.reservation.id,
        "tenant": held.reservation.tenant,
        "status": held.reservation.status,
    }
