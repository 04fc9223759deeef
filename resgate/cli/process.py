"""The process plumbing of `resgate run` (README "Running a job on reserved GPUs"):
its supervisor started (resgate/cli/supervisor.py, which starts COMMAND in its own
process group and owns it), the signals passed on to that group, the terminal's
foreground group.

No Typer and no engine here: this is about processes, not reservations."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from resgate.cli import supervisor
from resgate.cli.signals import SignalWait

# README "Running a job on reserved GPUs": these reach the whole group.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class JobSignals(SignalWait):
    """The forwarded signals and SIGCHLD (only to wake `wait`): before COMMAND
    starts they are kept in `pending`, after that they go to `forward` (which
    hands them to COMMAND's process group, through its supervisor)."""

    def __init__(self) -> None:
        super().__init__((*FORWARDED, signal.SIGCHLD), self._forward)
        self.forward: Callable[[int], None] | None = None  # once COMMAND is started
        self.pending: list[int] = []  # received before it started

    def _forward(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return
        if self.forward is None:
            self.pending.append(signum)
        else:
            self.forward(signum)

    def started(self, forward: Callable[[int], None]) -> None:
        """COMMAND runs: what came before goes to it now, and the rest as it comes."""
        self.forward = forward
        for signum in self.pending:
            forward(signum)
        self.pending.clear()

    def stopped(self) -> None:
        """COMMAND is over: nothing to pass signals on to any more."""
        self.forward = None


def killpg(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


@contextlib.contextmanager
def ttou_ignored() -> Iterator[None]:
    # tcsetpgrp from a background process group would stop us with SIGTTOU.
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTTOU, old)


def terminal() -> int | None:
    """stdin's fd when it is a terminal whose foreground group is ours, else None:
    then COMMAND's group becomes the foreground group, so Ctrl-C reaches it once."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def take_terminal_back(fd: int | None) -> None:
    if fd is not None:
        with ttou_ignored(), contextlib.suppress(OSError):
            os.tcsetpgrp(fd, os.getpgrp())


@dataclass
class Spawned:
    """A supervisor started: the process, the write end of its control pipe and the
    (non-blocking) read end of its status pipe."""

    process: subprocess.Popen[bytes]
    control: int
    status: int


def spawn_supervisor(
    command: list[str],
    env: dict[str, str],
    terminal: int | None,
    *,
    reservation: str,
    ttl: float,
    grace: float,
    deadline: float,
) -> Spawned:
    """The supervisor of resgate/cli/supervisor.py, in a process group of its own,
    with `env` (COMMAND's environment). Only it holds the pipes' other ends, so
    when this process dies, however, its control pipe reads end of file."""
    control_read, control_write = os.pipe()
    status_read, status_write = os.pipe()
    argv = supervisor.command_line(
        command,
        control=control_read,
        status=status_write,
        reservation=reservation,
        ttl=ttl,
        grace=grace,
        deadline=deadline,
        terminal=terminal is not None,
    )
    try:
        child = subprocess.Popen(
            argv, env=env, pass_fds=(control_read, status_write), process_group=0
        )
    except BaseException:
        for fd in (control_write, status_read):
            os.close(fd)
        raise
    finally:
        for fd in (control_read, status_write):
            os.close(fd)
    os.set_blocking(status_read, False)
    return Spawned(child, control_write, status_read)
