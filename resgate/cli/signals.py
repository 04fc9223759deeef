"""Signals for the commands that outlive one transaction (`watch`, `run`).

While such a command sleeps or supervises, SIGINT and SIGTERM are its own to
handle: it takes them over from the interrupt guard (resgate/interrupts.py) and
gives them back when it is done. `run` passes them on to its job's process group
(JobSignals in resgate/cli/process.py)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any


class SignalWait:
    """Handlers for `signums` that hand each signal to `on_signal`, and a sleep
    that any of them cuts short (a self-pipe, signal.set_wakeup_fd).

    A handler that only notes the signal can never be swallowed on its way up,
    as an exception raised inside SQLAlchemy's connection close would be."""

    def __init__(self, signums: Iterable[int], on_signal: Callable[[int], None]) -> None:
        self._signums = tuple(signums)
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup = -1

    def install(self) -> None:
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self._pipe = (read, write)
        self._old_wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for signum in self._signums:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        """Give back every handler install() replaced, and the wakeup fd."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._pipe is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._on_signal(signum)

    def wait(self, seconds: float, *readable: int) -> None:
        """Sleep up to `seconds`, less if a signal arrives or one of the file
        descriptors `readable` has something to read."""
        assert self._pipe is not None
        read = self._pipe[0]
        with contextlib.suppress(InterruptedError):
            select.select([read, *readable], [], [], max(0.0, seconds))
        with contextlib.suppress(BlockingIOError):
            while os.read(read, 512):
                pass
