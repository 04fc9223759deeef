"""Starts engine workers by fork(), so the crash test can kill and replace
dozens of them without paying Python's and SQLAlchemy's import time each time.

    python forkserver.py        # then, one command a line on stdin:
    spawn ARGS...               # fork a worker running `engine_worker.py ARGS...`
                                #   -> "pid N"
    poll N                      # -> "running N" or "exited N STATUS"
    wait N                      # -> "exited N STATUS" (after the test killed it)

This process imports everything and never opens a database, so every child
starts clean and opens its own connection. Children write nothing to stdout;
their stderr is this process's stderr.
"""

from __future__ import annotations

import os
import sys
import traceback

import engine_worker


def child(args: list[str]) -> None:
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        sys.argv = ["engine_worker.py", *args]
        engine_worker.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    for line in sys.stdin:
        command, *args = line.split()
        if command == "spawn":
            pid = os.fork()
            if pid == 0:
                child(args)
            reply = f"pid {pid}"
        elif command == "poll":
            pid = int(args[0])
            done, status = os.waitpid(pid, os.WNOHANG)
            reply = f"running {pid}" if done == 0 else f"exited {pid} {status}"
        elif command == "wait":
            pid = int(args[0])
            _, status = os.waitpid(pid, 0)
            reply = f"exited {pid} {status}"
        else:
            reply = f"error unknown command {command!r}"
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
