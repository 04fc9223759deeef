"""Human output: tables (tabulate), bars, colour policy (colorama), encodings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from resgate.clock import span
from resgate.engine.records import (
    ImportSummary,
    PoolInfo,
    PreemptResult,
    ReservationInfo,
    StatusReport,
    TenantInfo,
    Victim,
)
from resgate.limits import RESOURCES

BAR_WIDTH = 20
HEALTH_COLOURS = {"healthy": "green", "warning": "yellow", "exhausted": "red"}
LABELS = {"cpu": "CPU", "memory": "MEMORY MB", "gpu": "GPU"}


def colour_wanted(setting: str, stream: IO[str]) -> bool:
    """--color always|never wins; in auto, FORCE_COLOR forces, NO_COLOR disables,
    otherwise colour only on a terminal."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    if forced_colour():
        return True
    if "NO_COLOR" in os.environ:
        return False
    return stream.isatty()


def forced_colour() -> bool:
    """FORCE_COLOR as everyone reads it: set to anything but "", "0" or "false"."""
    value = os.environ.get("FORCE_COLOR")
    return value is not None and value.strip().lower() not in ("", "0", "false")


@dataclass(frozen=True)
class Style:
    colour: bool
    full: str = "█"
    empty: str = "░"
    dash: str = "—"

    @classmethod
    def for_stream(cls, setting: str, stream: IO[str]) -> Style:
        colour = colour_wanted(setting, stream)
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            "█░—".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            return cls(colour, "#", ".", "-")
        return cls(colour)

    def paint(self, text: str, colour: str) -> str:
        if not self.colour:
            return text
        from colorama import Fore
        from colorama import Style as Reset

        code = {"green": Fore.GREEN, "yellow": Fore.YELLOW, "red": Fore.RED}[colour]
        return f"{code}{text}{Reset.RESET_ALL}"

    def health(self, value: str) -> str:
        return self.paint(value, HEALTH_COLOURS[value])


def local(value: datetime | None) -> str:
    """Stored UTC shown as local time."""
    if value is None:
        return "-"
    # isoformat, not strftime: %Y gives year 1 as `1`, not `0001`.
    try:
        shown = value.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)
    except (OverflowError, ValueError):  # year 1 or 9999, beyond local time
        return value.isoformat(" ", "seconds") + " UTC"
    return shown.isoformat(" ", "seconds")


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, encoding: str | None = None) -> str:
    """`text` safe to put on a terminal: every character that is not printable (C0,
    DEL, C1, line and paragraph separators, bidi and other format characters,
    surrogates) shown as an escape (`\\n`, `\\x1b`, `\\u202e`), and, given the
    stream's `encoding`, whatever it cannot encode as well, so stored text can
    neither forge a line of a table nor drive the terminal."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape(c) for c in text)
    if encoding is not None and not text.isascii():
        try:
            text.encode(encoding)
        except UnicodeEncodeError:
            text = text.encode(encoding, "backslashreplace").decode(encoding)
        except LookupError:
            pass
    return text


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def duration(seconds: int) -> str:
    """45s, 4m59s, 25h1m."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60}m"


def expires(info: ReservationInfo, now: datetime) -> str:
    if info.status != "active":
        return "-"
    if info.expires_at is None:
        return "never"
    return duration(max(0, int((info.expires_at - now).total_seconds())))


def _table(headers: list[str], rows: list[list[object]]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def whole_percent(used: int, total: int) -> int:
    if total <= 0:
        return 0
    return int(100 * used / total + 0.5)


def usage_cell(used: int, total: int) -> str:
    return f"{used} / {total} ({whole_percent(used, total)}%)"


def pools_table(pools: list[PoolInfo], style: Style) -> str:
    rows: list[list[object]] = [
        [
            pool.name,
            usage_cell(pool.reserved.cpu, pool.total.cpu),
            usage_cell(pool.reserved.memory, pool.total.memory),
            usage_cell(pool.reserved.gpu, pool.total.gpu),
            style.health(pool.health),
            local(pool.created_at),
        ]
        for pool in pools
    ]
    headers = [
        "NAME",
        "CPU (USED/TOTAL)",
        "MEMORY MB (USED/TOTAL)",
        "GPU (USED/TOTAL)",
        "STATUS",
        "CREATED",
    ]
    return _table(headers, rows)


def pool_detail(pool: PoolInfo, style: Style) -> str:
    rows: list[list[object]] = []
    for res in RESOURCES:
        total, used = getattr(pool.total, res), getattr(pool.reserved, res)
        rows.append(
            [
                LABELS[res],
                total,
                f"{used} ({pool.utilization[res]:.2f}%)",
                getattr(pool.available, res),
            ]
        )
    device_lines = ""
    if pool.devices:
        held = [f"{device} ({rid or 'free'})" for device, rid in pool.devices]
        device_lines = "\n\nGPU devices: " + ", ".join(held)
    head = (
        f"Pool: {pool.name}\n"
        f"Health: {style.health(pool.health)}\n"
        f"Created: {local(pool.created_at)}\n"
        f"Policies: {policies(pool)}\n\n"
    )
    return head + _table(["RESOURCE", "TOTAL", "RESERVED", "AVAILABLE"], rows) + device_lines


def policies(pool: PoolInfo) -> str:
    """per tenant 1, default TTL none, max TTL 1d"""
    per_tenant = "unlimited" if pool.per_tenant is None else str(pool.per_tenant)

    def ttl(value: int | None) -> str:
        return "none" if value is None else span(value)

    return (
        f"per tenant {per_tenant}, default TTL {ttl(pool.default_ttl)}, max TTL {ttl(pool.max_ttl)}"
    )


def holding(held: int, cap: int | None) -> str:
    """`6/8` where capped, `6` where not."""
    return str(held) if cap is None else f"{held}/{cap}"


def holdings(tenant: TenantInfo) -> list[str]:
    return [holding(getattr(tenant.held, res), getattr(tenant.max, res)) for res in RESOURCES]


def quota_summary(tenant: TenantInfo) -> str:
    caps = [
        f"max {res} {getattr(tenant.max, res)}"
        for res in RESOURCES
        if getattr(tenant.max, res) is not None
    ]
    return ", ".join(caps) if caps else "no quotas"


def tenants_table(tenants: list[TenantInfo]) -> str:
    """MEMBERS appears once some tenant has members ("-": anyone may act for it)."""
    rows: list[list[object]] = [
        [t.name, t.priority, t.active_reservations, *holdings(t), local(t.created_at)]
        for t in tenants
    ]
    headers = ["NAME", "PRIORITY", "ACTIVE", "CPU", "MEMORY MB", "GPU", "REGISTERED"]
    if any(t.members for t in tenants):
        headers.append("MEMBERS")
        for row, tenant in zip(rows, tenants, strict=True):
            row.append(",".join(tenant.members) or "-")
    return _table(headers, rows)


def gpu_cell(info: ReservationInfo) -> str:
    """`2 [0,1]`: the count and, when it holds devices, which."""
    if not info.gpu_ids:
        return str(info.amounts.gpu)
    return f"{info.amounts.gpu} [{','.join(map(str, info.gpu_ids))}]"


def reservations_table(reservations: list[ReservationInfo], now: datetime) -> str:
    rows: list[list[object]] = [
        [
            r.id,
            r.tenant,
            # Free text (RESGATE_ACTOR, or written with `sqlite3`); "-": no one on record.
            "-" if r.created_by is None else printable(r.created_by),
            r.pool,
            r.amounts.cpu,
            r.amounts.memory,
            gpu_cell(r),
            r.status,
            expires(r, now),
        ]
        for r in reservations
    ]
    header = ["ID", "TENANT", "USER", "POOL", "CPU", "MEMORY MB", "GPU", "STATUS", "EXPIRES"]
    return _table(header, rows)


def reservation_detail(info: ReservationInfo, now: datetime) -> str:
    lines = [
        f"  Tenant:   {info.tenant}",
        f"  Pool:     {info.pool}",
        f"  CPU:      {info.amounts.cpu}",
        f"  Memory:   {info.amounts.memory} MB",
        f"  GPU:      {gpu_cell(info)}",
        f"  Status:   {info.status}",
        f"  Created:  {local(info.created_at)}",
        f"  Expires:  {'never' if info.expires_at is None else local(info.expires_at)}"
        + (f" (in {expires(info, now)})" if info.expires_at and info.status == "active" else ""),
    ]
    return "\n".join(lines)


def preempt_summary(result: PreemptResult) -> str:
    lines = [f"Preempted {len(result.preempted)} reservation(s) from '{result.target}'"]
    for r in result.preempted:
        lines.append(
            f"  {r.id}  cpu={r.amounts.cpu} mem={r.amounts.memory} gpu={r.amounts.gpu}"
            f"  pool={r.pool}"
        )
    return "\n".join(lines)


def victims_summary(victims: list[Victim]) -> str:
    lines = [f"Preempted {len(victims)} reservation(s)"]
    for victim in victims:
        r = victim.reservation
        lines.append(
            f"  {r.id}  tenant={r.tenant} (priority {victim.priority})"
            f"  cpu={r.amounts.cpu} mem={r.amounts.memory} gpu={r.amounts.gpu}"
        )
    return "\n".join(lines)


def events_table(events: list[dict[str, Any]], encoding: str | None = None) -> str:
    """`audit log`: every text shown through printable(), in the stream's
    `encoding`; what cannot be parsed (an `at` or `data` edited with `sqlite3`)
    is shown as stored."""
    rows: list[list[object]] = [
        [
            e["seq"],
            _event_time(e["at"], encoding),
            *(_cell_text(e[key], encoding) for key in ("actor", "action", "subject")),
            _event_data(e["data"], encoding),
        ]
        for e in events
    ]
    return _table(["SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DATA"], rows)


def _cell_text(value: object, encoding: str | None) -> str:
    return "" if value is None else printable(str(value), encoding)


def _event_time(value: object, encoding: str | None) -> str:
    try:
        return local(datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%fZ"))
    except ValueError:
        return _cell_text(value, encoding)


def _event_data(value: object, encoding: str | None) -> str:
    if isinstance(value, str):  # not JSON: as stored
        return printable(value, encoding)
    import json

    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return printable(text, encoding)


def bar(percent_used: float, style: Style) -> str:
    filled = min(BAR_WIDTH, max(0, round(percent_used / 100 * BAR_WIDTH)))
    return style.full * filled + style.empty * (BAR_WIDTH - filled)


def status_view(report: StatusReport, style: Style) -> str:
    counts = report.counts
    lines = [
        f"Reservations: {counts['active']} active {style.dash} last {report.window_hours}h: "
        f"{counts['released']} released, {counts['expired']} expired, "
        f"{counts['preempted']} preempted",
        "",
        "Pools:",
    ]
    if not report.pools:
        lines.append("  (none)")
    for pool in report.pools:
        lines.append(f"  {pool.name}  [{style.health(pool.health)}]")
        for res in RESOURCES:
            used, total = getattr(pool.reserved, res), getattr(pool.total, res)
            lines.append(
                f"    {LABELS[res]:<10} {bar(pool.utilization[res], style)} "
                f"{pool.utilization[res]:6.2f}%  {used} / {total}"
            )
    lines += ["", "Tenants:"]
    if not report.tenants:
        lines.append("  (none)")
    else:
        rows: list[list[object]] = [
            [rank, t.name, t.priority, t.active_reservations, *holdings(t)]
            for rank, t in enumerate(report.tenants, start=1)
        ]
        table = _table(["#", "NAME", "PRIORITY", "ACTIVE", "CPU", "MEMORY MB", "GPU"], rows)
        lines += ["  " + line for line in table.splitlines()]
    return "\n".join(lines)


def import_summary(summary: ImportSummary, source: str) -> str:
    """`resgate import-state`: what `--json` says, in words."""

    def created(count: int, deleted: int) -> str:
        return f"{count} created" + (f" ({deleted} of them deleted)" if deleted else "")

    s = summary
    lines = [
        f"Imported {source}",
        f"Pools: {created(s.created_pools, s.deleted_pools)}, {s.reused_pools} reused",
        f"Tenants: {created(s.created_tenants, s.deleted_tenants)}, {s.reused_tenants} reused",
        f"Reservations: {s.created_reservations} created ({s.statuses['active']} active, "
        f"{s.statuses['expired']} expired, {s.statuses['released']} released), "
        f"{s.skipped} skipped (already imported)",
    ]
    if s.ended_at_import_time:
        lines.append(
            f"{s.ended_at_import_time} released reservation(s) had no release time in the "
            "file: they ended at the import time"
        )
    if s.released:
        lines.append(
            f"{s.released} reservation(s) an earlier import left active, no longer active "
            "in the file: released now"
        )
    return "\n".join(lines)
