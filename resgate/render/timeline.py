"""`resgate timeline` drawn (README "Booking ahead"): one row per GPU (or, in a pool
without GPUs, per reservation) in cells of one fixed length chosen to fit the
width, a letter per tenant, `!` where a planned truncation falls, a `now` marker,
and a line per resource of how loaded each cell is at its busiest."""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from resgate.clock import span
from resgate.engine.records import Held, Timeline
from resgate.render.text import FALLBACK_WIDTH, Style, local

# The cell lengths to choose from, in seconds: the shortest that fits wins.
CELLS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)
LETTERS = string.ascii_lowercase + string.digits  # then `*` for every other tenant
TICK = 6  # cells at least between time labels: `HH:MM` and a space
TICKS = (300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 1209600)


def timeline_text(drawn: Timeline, style: Style) -> str:
    rows = _rows(drawn, style)
    label_width = max(len(label) for label, _ in rows) if rows else 6
    label_width = max(label_width, len("MEMORY"))
    room = max(1, (style.width or FALLBACK_WIDTH) - label_width - 2)
    seconds = (drawn.end - drawn.start).total_seconds()
    cell = next((c for c in CELLS if seconds / c <= room), CELLS[-1])
    origin = _aligned(drawn.start, cell)
    count = min(room, math.ceil((drawn.end - origin).total_seconds() / cell))
    cells = [origin + timedelta(seconds=cell * i) for i in range(count + 1)]
    letters = _letters(drawn.held)

    def line(label: str, body: str) -> str:
        return f"{label:<{label_width}}  {body}".rstrip()

    lines = [
        style.clip(
            f"{drawn.pool} {style.dot} one cell = {span(cell)} {style.dot} "
            f"{local(drawn.start)[:16]} {style.dash} {local(drawn.end)[:16]}"
        ),
        line("", _axis(cells, cell)),
    ]
    if cells[0] <= drawn.now < cells[-1]:
        at = int((drawn.now - cells[0]).total_seconds() // cell)
        lines.append(line("", " " * at + "v now"))
    for label, spans in rows:
        lines.append(line(label, _cells(spans, cells, letters, style)))
    for resource, label in (("cpu", "CPU"), ("memory", "MEMORY"), ("gpu", "GPU")):
        total = getattr(drawn.total, resource)
        if total and (resource != "gpu" or not drawn.device_ids):
            lines.append(line(label, _load(drawn.held, resource, total, cells, style)))
    keys = [f"{letter} {tenant}" for tenant, letter in letters.items()]
    keys += [f"{style.empty} free", "! planned end by preemption"]
    lines += [line("", words) for words in _wrapped(keys, room)]
    return "\n".join(lines)


def _wrapped(items: Sequence[str], width: int) -> list[str]:
    """`items` two spaces apart, in lines of at most `width` where they can be."""
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + 2 + len(item) > width:
            lines.append("")
        lines[-1] = f"{lines[-1]}  {item}" if lines[-1] else item
    return lines


def _rows(drawn: Timeline, style: Style) -> list[tuple[str, list[Held]]]:
    if drawn.device_ids:
        return [
            (f"GPU {device}", [h for h in drawn.held if device in h.reservation.gpu_ids])
            for device in drawn.device_ids
        ]
    return [(style.short(h.reservation.id), [h]) for h in drawn.held]


def _aligned(start: datetime, cell: int) -> datetime:
    """`start` rounded down to a whole cell of local time (a day's cells from
    midnight; a week's from a day's start)."""
    shown = start.replace(tzinfo=UTC).astimezone()
    into_day = shown.hour * 3600 + shown.minute * 60 + shown.second + shown.microsecond / 1e6
    step = min(cell, 86400)
    return start - timedelta(seconds=into_day % step)


def _axis(cells: Sequence[datetime], cell: int) -> str:
    """A time label at every round instant TICK cells or more apart: the local
    time, or the date at midnight and for cells of a day or more."""
    tick = next((t for t in TICKS if t >= TICK * cell and t % cell == 0), TICK * cell)
    text = ""
    for i, at in enumerate(cells[:-1]):
        shown = at.replace(tzinfo=UTC).astimezone()
        into_day = shown.hour * 3600 + shown.minute * 60 + shown.second
        if tick <= 86400:
            round_instant = into_day % tick == 0 and shown.microsecond == 0
        else:  # whole days apart, counted from the first
            round_instant = i % (tick // cell) == 0
        if not round_instant or len(text) > i:
            continue
        label = local(at)
        text = text.ljust(i) + (label[5:10] if into_day == 0 else label[11:16])
    return text


def _letters(held: Sequence[Held]) -> dict[str, str]:
    """Each tenant's letter, in name order: a–z, then 0–9, then `*`."""
    tenants = sorted({h.reservation.tenant for h in held})
    return {t: LETTERS[i] if i < len(LETTERS) else "*" for i, t in enumerate(tenants)}


def _overlap(held: Held, start: datetime, end: datetime) -> float:
    stop = end if held.end is None else min(end, held.end)
    return max(0.0, (stop - max(start, held.start)).total_seconds())


def _cells(
    spans: Sequence[Held], cells: Sequence[datetime], letters: dict[str, str], style: Style
) -> str:
    """A row: in each cell, the letter of the tenant holding most of it, `!` where
    a planned truncation falls, else free."""
    drawn = []
    for start, end in itertools.pairwise(cells):
        truncated = [
            h
            for h in spans
            if h.reservation.preempt_at is not None and start <= h.reservation.preempt_at < end
        ]
        holders = [(_overlap(h, start, end), h) for h in spans]
        most = max(holders, key=lambda pair: pair[0], default=(0.0, None))
        if truncated:
            drawn.append("!")
        elif most[1] is not None and most[0] > 0:
            drawn.append(letters[most[1].reservation.tenant])
        else:
            drawn.append(style.empty)
    return "".join(drawn)


def _load(
    held: Sequence[Held], resource: str, total: int, cells: Sequence[datetime], style: Style
) -> str:
    """How much of `resource` is held at each cell's busiest instant: free, tenths
    as digits 1–9, or full."""
    drawn = []
    for start, end in itertools.pairwise(cells):
        inside = [h for h in held if _overlap(h, start, end) > 0]
        points = {start} | {h.start for h in inside if h.start > start}
        busiest = max(
            (
                sum(
                    getattr(h.reservation.amounts, resource)
                    for h in inside
                    if h.start <= at and (h.end is None or at < h.end)
                )
                for at in points
            ),
            default=0,
        )
        if busiest <= 0:
            drawn.append(style.empty)
        elif busiest >= total:
            drawn.append(style.full)
        else:
            drawn.append(str(min(9, max(1, math.ceil(10 * busiest / total)))))
    return "".join(drawn)
