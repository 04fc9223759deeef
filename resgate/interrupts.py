"""What SIGINT and SIGTERM mean to a command (README, "Exit codes").

Until a command's write transaction starts to commit, either signal raises
Interrupted: the transaction rolls back and the command exits 130 (143) saying
nothing was changed. From the moment the commit starts the work stands, so the
signal is only noted: the command finishes and reports what it did. A command
that goes on after its commit (`resgate run`) takes what was noted and undoes
its own work before it exits.

Signal handlers belong to the process, so there is one guard per process. This
module imports nothing heavy: the console entry point installs the guard before
anything else is imported.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

GUARDED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A signal before the commit. Not an Exception: nothing on the way up
    (SQLAlchemy's pool, Click's main) may log it away or turn it into an exit code."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def message(self) -> str:
        what = "terminated" if self.signum == signal.SIGTERM else "interrupted"
        return f"{what}; nothing was changed"


class Guard:
    def __init__(self) -> None:
        # The work stands: a write transaction has started to commit, or the
        # command is over. A signal from then on is noted, not raised.
        self.settled = False
        self.noted: list[int] = []
        self._previous: dict[int, Any] = {}

    def install(self) -> bool:
        """Handle SIGINT and SIGTERM explicitly, so this holds even when the
        process was started with SIGINT ignored (a shell's background job).
        False if they were handled already (or cannot be, off the main thread)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return False
        self.settled = False
        self.noted.clear()
        for signum in GUARDED:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def uninstall(self) -> None:
        """Give back the handlers install() replaced."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The guard for one command; an outer install (the console entry
        point's) stays in place afterwards."""
        mine = self.install()
        try:
            yield
        finally:
            if mine:
                self.uninstall()

    def settle(self) -> None:
        """The command is over: nothing is left to interrupt."""
        self.settled = True

    def take_noted(self) -> list[int]:
        noted, self.noted = self.noted, []
        return noted

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.settled:
            self.noted.append(signum)
            return
        raise Interrupted(signum)

    @contextmanager
    def commit_point(self) -> Iterator[None]:
        """Around a write transaction's commit. The flag is set before the
        commit is sent, so a signal handled at any moment inside it is noted,
        never raised: exit 130 always means the commit was not sent."""
        before = self.settled
        self.settled = True
        try:
            yield
        except BaseException as exc:
            # The commit failed: nothing of this transaction stands.
            self.settled = before
            if not before and self.noted and not isinstance(exc, Interrupted):
                raise Interrupted(self.noted.pop(0)) from exc
            raise


GUARD = Guard()
