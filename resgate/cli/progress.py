"""Progress for long work (README "Long work shows progress"): one line on stderr,
redrawn in place, once the work has taken SHOW_AFTER seconds, when stderr is a
terminal, and not when `--json` output goes to that same terminal. Never on a pipe,
never on stdout, and gone (the line cleared) when the work ends, however it ends.

The engine and the store know nothing of terminals: the functions that do long work
take a plain callback, `on_progress(done, total)` (total None: not known), and a
`Bar` is one. A command wraps its work in `shown(...)`, which gives it a Bar, or
None where no bar is wanted, so the work then runs without any reporting at all."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

OnProgress = Callable[[int, int | None], None]

# Work that ends sooner shows nothing (looked up at each call: tests lower it).
SHOW_AFTER = 1.0
# The line is redrawn at most this often, and once more when the work is done.
REDRAW_EVERY = 0.1
BAR_WIDTH = 20


@contextmanager
def shown(label: str, unit: str = "", *, json: bool = False) -> Iterator[OnProgress | None]:
    """`on_progress` for work that may take long: a Bar on stderr when one is wanted
    (`json`: the command prints JSON on stdout), else None."""
    if not wanted(json):
        yield None
        return
    bar = Bar(label, unit)
    try:
        yield bar
    finally:
        bar.close()


def wanted(json: bool = False) -> bool:
    """stderr is a terminal, and is not the terminal `--json` output goes to."""
    try:
        if not sys.stderr.isatty():
            return False
        if json and sys.stdout.isatty():
            return not os.path.samestat(
                os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
            )
    except (OSError, ValueError, AttributeError):  # closed, or not a real file
        return False
    return True


class Bar:
    """`label  ██████░░░░░░░░░░░░░░  31%  31,000/100,000 rows  2s` on `stream`."""

    def __init__(
        self,
        label: str,
        unit: str = "",
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.started = clock()
        self.drawn_at: float | None = None
        self.shown = ""  # the line on screen
        self.chars = ("#", ".")

    def __call__(self, done: int, total: int | None) -> None:
        now = self.clock()
        if now - self.started < SHOW_AFTER:
            return
        last = self.drawn_at
        if last is not None and now - last < REDRAW_EVERY and done != total:
            return
        if last is None:
            self.chars = _bar_chars(self.stream)
        self._draw(self.line(done, total, now - self.started))
        self.drawn_at = now

    def line(self, done: int, total: int | None, elapsed: float) -> str:
        """The line for `done` of `total`, fitted to the terminal's width."""
        unit = f" {self.unit}" if self.unit else ""
        width = terminal_width(self.stream) - 1  # the last column would wrap on some
        if total is None or total <= 0:
            return f"{self.label}  {done:,}{unit}  {elapsed:.0f}s"[:width]
        share = min(max(done / total, 0.0), 1.0)
        rest = f"  {share:4.0%}  {done:,}/{total:,}{unit}  {elapsed:.0f}s"
        size = min(BAR_WIDTH, width - len(self.label) - len(rest) - 2)
        if size < 5:
            return f"{self.label}{rest}"[:width]
        filled = round(share * size)
        full, empty = self.chars
        return f"{self.label}  {full * filled}{empty * (size - filled)}{rest}"

    def close(self) -> None:
        """Clear the line, if one was drawn."""
        if self.shown:
            self._write("\r" + " " * len(self.shown) + "\r")
        self.drawn_at, self.shown = None, ""

    def _draw(self, line: str) -> None:
        if line != self.shown:
            self._write("\r" + line.ljust(len(self.shown)))
            self.shown = line

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: the work goes on
            pass


def _bar_chars(stream: TextIO) -> tuple[str, str]:
    """The bar's characters where the stream can encode them, as status bars are drawn."""
    from resgate.render.text import Style

    style = Style.for_stream("never", stream)
    return style.full, style.empty


def terminal_width(stream: TextIO) -> int:
    """COLUMNS, else the terminal's width, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80
