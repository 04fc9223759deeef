"""Tables that fit the terminal (README "Seeing it at a glance"): `table` lays out
every command's table. Given a width (a terminal's), no line is wider: compact
forms first (short ids), then text shortened with an ellipsis, then columns
dropped in the command's fixed order, never wrapped. Without a width (a pipe,
`--wide`) every column is shown whole. Widths are display widths: a wide
character (CJK) takes two columns, a combining one none."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

GAP = "  "

# (row, width) → that row's cell in at most `width` columns, shortened its own way.
Elide = Callable[[int, int], str]
# (text, colour) → the text painted.
Paint = Callable[[str, str], str]


@dataclass
class Column:
    """One column of a table, and how it may give way when the table is too wide."""

    header: str
    cells: list[str]
    right: bool = False  # numbers are right-aligned
    # When the table does not fit: the order in which it goes (1 first); None: never.
    drop: int | None = None
    # Cells may be shortened with an ellipsis down to this width; None: never.
    least: int | None = None
    # A compact form, used before anything is shortened or dropped.
    short: list[str] | None = None
    short_header: str | None = None
    colours: list[str | None] | None = None
    elide: Elide | None = None  # its own way of shortening a cell (`nlp, cv +3`)


@dataclass
class _Shown:
    column: Column
    compact: bool = False
    width: int = 0
    header: str = field(init=False, default="")
    cells: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.use(self.compact)

    def use(self, compact: bool) -> None:
        column = self.column
        self.compact = compact
        self.header = (column.short_header if compact else None) or column.header
        self.cells = (column.short if compact else None) or column.cells
        self.width = self.natural

    @property
    def natural(self) -> int:
        return max([text_width(self.header), *map(text_width, self.cells)])

    @property
    def least(self) -> int:
        least = self.column.least
        if least is None:
            return self.natural
        return min(self.natural, max(least, text_width(self.header)))


def char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def text_width(text: str) -> int:
    """The columns `text` takes on a terminal."""
    if text.isascii():
        return len(text)
    return sum(map(char_width, text))


def cut(text: str, width: int, ellipsis: str = "…") -> str:
    """`text` in at most `width` columns: shortened, with `ellipsis` at the end."""
    if text_width(text) <= width:
        return text
    room = width - text_width(ellipsis)
    if room < 0:
        return ellipsis[: max(0, width)]
    kept, used = [], 0
    for char in text:
        used += char_width(char)
        if used > room:
            break
        kept.append(char)
    return "".join(kept) + ellipsis


def clip(line: str, width: int | None, ellipsis: str = "…") -> str:
    """A line of plain text (no colour) cut to `width`; None: whole."""
    return line if width is None else cut(line, width, ellipsis)


def table(
    columns: Sequence[Column],
    width: int | None = None,
    ellipsis: str = "…",
    paint: Paint | None = None,
) -> str:
    """The lines of a table: headers, a rule of dashes, the rows; two spaces between
    columns, numbers right-aligned, no trailing blanks. `width`: none of its lines
    is wider (None: nothing is dropped or cut). `paint` colours cells that have a
    colour (after they are cut and before they are padded)."""
    shown = layout(list(columns), width)
    rows = len(columns[0].cells) if columns else 0
    lines = [
        _line([(s, cut(s.header, s.width, ellipsis), None) for s in shown]),
        _line([(s, "-" * s.width, None) for s in shown]),
    ]
    for row in range(rows):
        lines.append(_line([(s, _cell(s, row, ellipsis), _colour(s, row)) for s in shown], paint))
    return "\n".join(lines)


def layout(columns: list[Column], width: int | None) -> list[_Shown]:
    """Which columns are shown, in which form and how wide."""
    if width is None:
        return [_Shown(c) for c in columns]
    natural = [_Shown(c) for c in columns]
    if _total(natural) <= width:
        return natural
    order = sorted((c for c in columns if c.drop is not None), key=lambda c: c.drop or 0)
    for dropped in range(len(order) + 1):
        kept = [_Shown(c, compact=True) for c in columns if c not in order[:dropped]]
        if _total(kept, least=True) <= width:
            return _widen(kept, width)
    _shrink(kept, width)
    return _force(kept, width)


def _total(shown: list[_Shown], least: bool = False) -> int:
    widths = [s.least if least else s.width for s in shown]
    return sum(widths) + len(GAP) * max(0, len(widths) - 1)


def _widen(shown: list[_Shown], width: int) -> list[_Shown]:
    """Every column back in its whole form if that fits without shortening
    anything (all or none: one table, one form); then shorten what must be."""
    for s in shown:
        s.use(False)
    if _total(shown) > width:
        for s in shown:
            s.use(True)
    _shrink(shown, width)
    return shown


def _shrink(shown: list[_Shown], width: int) -> None:
    """Take the excess from the shortenable columns, the first to be dropped first
    (never-dropped ones last), none below its least."""
    excess = _total(shown) - width
    for s in sorted(shown, key=lambda s: (s.column.drop is None, s.column.drop or 0)):
        take = min(excess, s.width - s.least)
        if take > 0:
            s.width -= take
            excess -= take


def _force(shown: list[_Shown], width: int) -> list[_Shown]:
    """A terminal too narrow for even the least of the table: the last columns go,
    and what is left is cut to the width."""
    while len(shown) > 1 and _total(shown) > width:
        over = _total(shown) - width
        last = shown[-1]
        if last.width - over >= 1:
            last.width -= over
        else:
            shown.pop()
    if _total(shown) > width:
        shown[0].width = max(0, width)
    return shown


def _cell(shown: _Shown, row: int, ellipsis: str) -> str:
    text = shown.cells[row]
    if text_width(text) <= shown.width:
        return text
    if shown.column.elide is not None:
        text = shown.column.elide(row, shown.width)
    return cut(text, shown.width, ellipsis)


def _colour(shown: _Shown, row: int) -> str | None:
    colours = shown.column.colours
    return None if colours is None else colours[row]


def _line(parts: list[tuple[_Shown, str, str | None]], paint: Paint | None = None) -> str:
    cells = []
    for shown, text, colour in parts:
        pad = " " * max(0, shown.width - text_width(text))
        if colour is not None and paint is not None:
            text = paint(text, colour)
        cells.append(pad + text if shown.column.right else text + pad)
    return GAP.join(cells).rstrip(" ")
