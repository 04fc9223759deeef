"""The process plumbing of `resgate run` (README "Running a job on reserved GPUs"):
COMMAND in its own process group, the signals passed on to that group, the
terminal's foreground group, and noticing that COMMAND has exited.

No Typer and no engine here: this is about processes, not reservations."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

from resgate.cli.signals import SignalWait

# README "Running a job on reserved GPUs": these reach the whole group.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class JobSignals(SignalWait):
    """The forwarded signals and SIGCHLD (only to wake `wait`): before COMMAND
    starts they are kept in `pending`, after that they go to its process group."""

    def __init__(self) -> None:
        super().__init__((*FORWARDED, signal.SIGCHLD), self._forward)
        self.group: int | None = None  # COMMAND's process group, once started
        self.pending: list[int] = []  # received before it started

    def _forward(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return
        if self.group is None:
            self.pending.append(signum)
        else:
            killpg(self.group, signum)

    def started(self, group: int) -> None:
        """COMMAND runs in `group`: what came before goes to it now, and the rest as it comes."""
        self.group = group
        for signum in self.pending:
            killpg(group, signum)
        self.pending.clear()


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


def group_members(group: int, leader: int) -> bool:
    """Whether processes other than the (exited, unreaped) leader remain in `group`.
    Reads /proc (Linux); elsewhere answers False."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit() or int(entry) == leader:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == group and fields[0] != b"Z":
            return True
    return False


def start(command: list[str], env: dict[str, str], fd: int | None) -> subprocess.Popen[bytes]:
    """COMMAND as the leader of a new process group; the foreground group of the
    terminal `fd` when there is one. Raises OSError if it cannot be executed."""
    if fd is None:
        return subprocess.Popen(command, env=env, process_group=0)

    def foreground() -> None:
        # In the child, before exec: its own group, the terminal's foreground group
        # (done here rather than in the parent, so COMMAND never runs in the background).
        os.setpgid(0, 0)
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, os.getpid())
        signal.signal(signal.SIGTTOU, old)

    return subprocess.Popen(command, env=env, preexec_fn=foreground)


def exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it: while it is an unreaped
    zombie its process-group id cannot be reused, so signalling the group is safe."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def reap(pid: int) -> int:
    """Wait for the child and return its status as Popen.returncode has it
    (-n: killed by signal n). 1 when it was reaped elsewhere and its status is lost."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 1
    return os.waitstatus_to_exitcode(status)
