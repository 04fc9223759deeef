"""The console entry point (`resgate`, `python -m resgate`).

The interrupt guard (resgate/interrupts.py) goes in before anything else is
imported, so a Ctrl-C at any moment gets its one `Error:` line, never a
traceback."""

from __future__ import annotations

import signal
import sys

from resgate.interrupts import GUARD, GUARDED, Interrupted


def main() -> None:
    GUARD.install()
    try:
        from resgate.cli import main as cli_main
    except Interrupted as exc:
        sys.stderr.write(f"Error: {exc.message}\n")
        sys.exit(exc.exit_code)
    try:
        cli_main()
    finally:
        # The command is over and has said so: a signal now could only cut the
        # interpreter's shutdown short (its handlers are reset to the default
        # there), turning a reported success into death by signal.
        signal.pthread_sigmask(signal.SIG_BLOCK, GUARDED)
