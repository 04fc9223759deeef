"""The job's own supervisor (README "Running a job on reserved GPUs"): a small
process that `resgate run` starts and that starts COMMAND, so the job never outlives its
lease, even when `run` dies.

    resgate run ──control pipe──▶ supervisor ──▶ COMMAND, its process group
                ◀──status pipe───    (subreaper)     └─ its descendants, setsid'd or not

Why a process of its own: `run` can be killed (SIGKILL, the OOM killer), stopped
(SIGSTOP) or cut off from the database, and only a process that is still there
can stop the job then. Why it is built so:

- It is COMMAND's parent and marks itself a child subreaper (PR_SET_CHILD_SUBREAPER,
  Linux): descendants that left COMMAND's group (`setsid`, a double fork) are
  reparented to it when their parents die, so "the job" is COMMAND's group plus
  every descendant of the supervisor, found by one walk of /proc. Elsewhere (no
  prctl, no /proc) it degrades to the group alone.
- `run` holds the only write end of the control pipe: end of file means `run` is
  gone, however it died (a pipe rather than PR_SET_PDEATHSIG, which fires when the
  parent *thread* exits and not at all off Linux). Then every process of the job
  gets SIGTERM at once and SIGKILL after --grace or half the TTL, whichever is
  shorter.
- It keeps its own deadline: `run` sends each successful renewal's lease end; when
  none has come by that end − the grace above, it stops the job itself (SIGTERM
  then, SIGKILL at the end), so a stopped or partitioned `run` cannot leave a job
  running past its lease. No SIGKILL ever comes later than the lease's end.
- Signals: `run` passes on what it gets (SIGINT, SIGTERM, SIGHUP) as control
  messages, and the supervisor sends them to COMMAND's group; it runs in a process
  group of its own and ignores those signals itself, so a signal to `run`'s group
  reaches the job once, through `run`, and cannot kill the supervisor.
- COMMAND's leader is not reaped until the whole job is gone, so its group id
  cannot be reused by a stranger while it is still being signalled.
- It is started as a script (`python -I -S …/supervisor.py`) and imports only the
  standard library: no resgate package, Typer or SQLAlchemy, so it starts in a
  few milliseconds and its memory is its own, not a copy of `run`'s. `run` imports
  it as `resgate.cli.supervisor` for the command line and the messages.
  That is also why it is one file of some 470 lines, not several modules.

The messages are lines of ASCII. To the supervisor: `deadline T` (a monotonic
time: clock.monotonic is one clock for the whole machine), `signal N`, `stop G`
(SIGTERM now, SIGKILL G seconds later). To `run`: `started PID`, `failed ERRNO`
(COMMAND could not be executed), `done CODE HOW` (COMMAND's exit status, 128 + n
for signal n; HOW is `exited`, `stopped` when `run` asked, `lapsed` when the
deadline passed, `orphaned` when `run` was gone)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
POLL = 0.1  # once COMMAND has exited: what it left behind sends no SIGCHLD, look this often
IDLE = 5.0  # longest sleep otherwise: SIGCHLD and the control pipe cut it short
SETTLE = 2.0  # after SIGKILL: how long a straggler (in uninterruptible sleep) is waited for
IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # `run` passes them on


# ---------------------------------------------------------------- the command line


def command_line(
    command: Sequence[str],
    *,
    control: int,
    status: int,
    reservation: str,
    ttl: float,
    grace: float,
    deadline: float,
    terminal: bool,
) -> list[str]:
    """How `run` starts the supervisor: this file, as a script of a bare interpreter."""
    settings = [str(control), str(status), reservation, repr(ttl), repr(grace), repr(deadline)]
    script = os.path.abspath(__file__)
    return [sys.executable, "-I", "-S", script, *settings, str(int(terminal)), *command]


@dataclass(frozen=True)
class Settings:
    control: int
    status: int
    reservation: str
    ttl: float
    grace: float
    deadline: float
    terminal: bool
    command: list[str]

    @classmethod
    def parse(cls, argv: Sequence[str]) -> Settings:
        control, status, reservation, ttl, grace, deadline, terminal, *command = argv
        numbers = float(ttl), float(grace), float(deadline)
        return cls(int(control), int(status), reservation, *numbers, terminal == "1", command)


# ---------------------------------------------------------------- the processes


def become_subreaper() -> bool:
    """Orphaned descendants come to us, not to init (Linux ≥ 3.4); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    group: int
    zombie: bool


def processes() -> list[Proc]:
    """Every process /proc shows (Linux); none elsewhere."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                # After the command name, which may hold anything: state, ppid, pgrp, ...
                fields = stat.read().rsplit(b")", 1)[1].split()
            found.append(Proc(int(entry), int(fields[1]), int(fields[2]), fields[0] == b"Z"))
        except (OSError, IndexError, ValueError):
            continue
    return found


@dataclass
class Members:
    """The live processes of a job: whether its group has any, and its other ones."""

    in_group: bool = False
    others: list[int] = field(default_factory=list)  # descendants outside the group
    zombies: list[int] = field(default_factory=list)  # our own children, dead, unreaped

    def __bool__(self) -> bool:
        return self.in_group or bool(self.others)


def members(table: Sequence[Proc], me: int, group: int, leader: int) -> Members:
    """The job in `table`: the group's live processes, and `me`'s live descendants."""
    children: dict[int, list[Proc]] = {}
    for proc in table:
        children.setdefault(proc.ppid, []).append(proc)
    found = Members(in_group=any(p.group == group and not p.zombie for p in table))
    below, seen = list(children.get(me, [])), {me}
    while below:
        proc = below.pop()
        if proc.pid in seen:
            continue
        seen.add(proc.pid)
        below.extend(children.get(proc.pid, []))
        if proc.zombie:
            if proc.ppid == me and proc.pid != leader:
                found.zombies.append(proc.pid)
        elif proc.group != group:
            found.others.append(proc.pid)
    return found


def send(pid: int, signum: int, *, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


class Job:
    """COMMAND's group, led by `leader`, and the supervisor's other descendants.
    `table` (a /proc walk) is a parameter so tests can stand in for it."""

    def __init__(
        self, leader: int, *, me: int | None = None, table: Callable[[], list[Proc]] = processes
    ) -> None:
        self.leader = leader
        self.group = leader  # the leader's pid is the group's id
        self.me = os.getpid() if me is None else me
        self._table = table

    def members(self) -> Members:
        """The job's live processes; our dead children (but the leader) are reaped."""
        found = members(self._table(), self.me, self.group, self.leader)
        for pid in found.zombies:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        return found

    def signal(self, signum: int) -> None:
        """`signum` to every process of the job, once each: the group by its id (safe:
        the leader is not reaped yet), the rest one by one."""
        send(self.group, signum, group=True)
        for pid in self.members().others:
            send(pid, signum)

    def reap_others(self) -> None:
        """Reap our dead children but the leader (orphans reparented to us), so a job
        that keeps leaving short-lived daemons behind does not fill the pid table."""
        while True:
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if found is None or found.si_pid == self.leader:
                return  # the leader is reaped last (and members() reaps the rest then)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(found.si_pid, 0)

    def leader_exited(self) -> bool:
        """Without reaping it: while it is a zombie its group id cannot be reused."""
        try:
            found = os.waitid(os.P_PID, self.leader, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            return found is not None
        except ChildProcessError:
            return True

    def reap(self) -> int:
        """The leader's exit status as a shell has it (128 + n: killed by signal n),
        and every other dead child of ours."""
        try:
            _, status = os.waitpid(self.leader, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = 1  # reaped elsewhere: its status is lost
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        return 128 - code if code < 0 else code


# ---------------------------------------------------------------- the schedule


class Supervisor:
    """When the job gets SIGTERM and SIGKILL, and when it is over; driven by `tick`
    and the messages, on the monotonic clock `now` passed in."""

    def __init__(
        self,
        job: Job,
        *,
        ttl: float,
        grace: float,
        deadline: float,
        reservation: str = "?",
        run_pid: int = 0,
    ) -> None:
        self.job = job
        self.reservation = reservation  # for our lines on stderr
        self.run_pid = run_pid
        self.grace = grace
        self.short = min(grace, ttl / 2)  # for a `run` that is gone or late
        self.deadline = deadline  # the lease's end, as far as we know
        self.how = "exited"
        self.term_sent = False
        self.kill_at: float | None = None
        self.killed_at: float | None = None  # when SIGKILL went out
        self.leader_done = False
        self.lines: list[str] = []  # for stderr

    def renewed(self, deadline: float) -> None:
        self.deadline = deadline

    def stop(self, now: float, grace: float, how: str = "stopped") -> None:
        """SIGTERM to the whole job now (once), SIGKILL `grace` later at the latest."""
        if not self.term_sent:
            self.term_sent = True
            if self.how == "exited":
                self.how = how
            self.job.signal(signal.SIGTERM)
        kill_at = now + max(0.0, grace)
        self.kill_at = kill_at if self.kill_at is None else min(self.kill_at, kill_at)

    def orphaned(self, now: float) -> None:
        if not self.term_sent:
            self.lines.append(
                f"resgate: resgate run (pid {self.run_pid}) is gone; stopping the job of "
                f"reservation {self.reservation}"
            )
        self.stop(now, self.short, "orphaned")

    def tick(self, now: float) -> None:
        """Whatever is due: the supervisor's own stop, SIGKILL, noticing COMMAND's exit."""
        if not self.term_sent and now >= self.deadline - self.short:
            self.lines.append(
                f"resgate: reservation {self.reservation} was not renewed in time (resgate run, "
                f"pid {self.run_pid}, is stopped or cut off from the database); stopping the job"
            )
            self.stop(now, self.deadline - now, "lapsed")
        kill_at = None if self.kill_at is None else min(self.kill_at, self.deadline)
        if (kill_at is not None and now >= kill_at) or self.killed_at is not None:
            self.kill(now)
        if not self.leader_done:
            self.job.reap_others()
            self.leader_done = self.job.leader_exited()

    def kill(self, now: float) -> None:
        """SIGKILL to the job, and again to whatever is still there at each tick."""
        self.job.signal(signal.SIGKILL)
        self.kill_at = None
        if self.killed_at is None:
            self.killed_at = now

    def over(self, now: float) -> bool:
        """Once COMMAND has exited: True when nothing of the job is left. What it
        left behind gets SIGTERM, and SIGKILL after the grace."""
        if not self.leader_done:
            return False
        if not self.job.members():
            return True
        if self.killed_at is not None:
            return now >= self.killed_at + SETTLE
        self.stop(now, self.grace, self.how)  # leftovers: COMMAND's exit status stands
        return False

    def wait(self, now: float) -> float:
        """How long to sleep before something is due."""
        due = [now + (POLL if self.leader_done or self.killed_at is not None else IDLE)]
        if not self.term_sent:
            due.append(self.deadline - self.short)
        if self.kill_at is not None:
            due.append(min(self.kill_at, self.deadline))
        return max(0.0, min(due) - now)


# ---------------------------------------------------------------- the process itself


def _noted(signum: int, frame: object) -> None:
    """A handler that only wakes the sleep (signal.set_wakeup_fd)."""


class Channel:
    """The two pipes: control messages in, status lines out."""

    def __init__(self, control: int, status: int) -> None:
        self.control = control
        self.status = status
        self.closed = False  # end of file: `run` is gone
        self._buffer = b""
        os.set_blocking(control, False)

    def messages(self) -> Iterator[tuple[str, str]]:
        while not self.closed:
            try:
                data = os.read(self.control, 4096)
            except BlockingIOError:
                break
            if not data:
                self.closed = True
                break
            self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            verb, _, value = line.decode("ascii", "replace").partition(" ")
            yield verb, value

    def say(self, line: str) -> None:
        with contextlib.suppress(OSError):  # `run` is gone: nobody to tell
            os.write(self.status, f"{line}\n".encode("ascii"))


def say_on_stderr(line: str) -> None:
    # Ignoring SIGTTOU: a background process writing to a terminal with `tostop` set
    # would be stopped by it.
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        with contextlib.suppress(OSError):
            os.write(2, f"{line}\n".encode(errors="replace"))
    finally:
        signal.signal(signal.SIGTTOU, old)


def start(command: Sequence[str], terminal: bool) -> subprocess.Popen[bytes]:
    """COMMAND as the leader of a new process group; the terminal's foreground group
    when stdin is the terminal `run` found ours. Raises OSError if it cannot run."""
    if not terminal:
        return subprocess.Popen(command, process_group=0)

    def foreground() -> None:
        # In the child, before exec: its own group, the terminal's foreground group
        # (done here rather than in the parent, so COMMAND never runs in the background).
        os.setpgid(0, 0)
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.tcsetpgrp(0, os.getpid())
        signal.signal(signal.SIGTTOU, old)

    return subprocess.Popen(command, preexec_fn=foreground)


def handle(supervisor: Supervisor, channel: Channel, now: float) -> None:
    """The control messages that came, and the end of the pipe."""
    for verb, value in channel.messages():
        try:
            if verb == "deadline":
                supervisor.renewed(float(value))
            elif verb == "signal":
                send(supervisor.job.group, int(value), group=True)
            elif verb == "stop":
                supervisor.stop(now, float(value))
        except ValueError:
            continue  # not a message of ours
    if channel.closed:
        supervisor.orphaned(now)


def supervise(supervisor: Supervisor, channel: Channel, wakeup: int) -> int:
    """Until the job is over; COMMAND's exit status."""
    while True:
        now = time.monotonic()
        handle(supervisor, channel, now)
        supervisor.tick(now)
        for line in supervisor.lines:
            say_on_stderr(line)
        supervisor.lines.clear()
        if supervisor.over(now):
            return supervisor.job.reap()
        watched = [wakeup] if channel.closed else [wakeup, channel.control]
        with contextlib.suppress(InterruptedError):
            select.select(watched, [], [], supervisor.wait(now))
        with contextlib.suppress(BlockingIOError):
            while os.read(wakeup, 512):
                pass


def main(argv: Sequence[str]) -> int:
    for signum in IGNORED:
        signal.signal(signum, _noted)  # not SIG_IGN: COMMAND must not inherit it
    settings = Settings.parse(argv)
    wake_read, wake_write = os.pipe()
    for fd in (wake_read, wake_write):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, _noted)
    become_subreaper()
    channel = Channel(settings.control, settings.status)
    try:
        child = start(settings.command, settings.terminal)
    except OSError as exc:
        channel.say(f"failed {exc.errno or 0}")
        return 0
    channel.say(f"started {child.pid}")
    child.returncode = 0  # reaped here, not by Popen
    supervisor = Supervisor(
        Job(child.pid),
        ttl=settings.ttl,
        grace=settings.grace,
        deadline=settings.deadline,
        reservation=settings.reservation,
        run_pid=os.getppid(),
    )
    code = supervise(supervisor, channel, wake_read)
    channel.say(f"done {code} {supervisor.how}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
