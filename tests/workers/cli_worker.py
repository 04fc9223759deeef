"""One real `resgate` command, started at a barrier.

    python cli_worker.py BARRIER_DIR NAME -- resgate arguments...

The process imports everything the command needs first (the slow part of
starting), says it is ready, waits for BARRIER_DIR/go, then runs the command
through resgate's own entry point — exactly what the installed `resgate` script
does — and exits with its exit code.
"""

from __future__ import annotations

import sys

from ledger import barrier

import resgate.cli
import resgate.engine.reservations
import resgate.render.data
import resgate.render.tables
import resgate.render.text
import resgate.render.views
import resgate.store.database


def main() -> None:
    directory, name, separator, *args = sys.argv[1:]
    assert separator == "--", sys.argv
    barrier(directory, name)
    sys.argv = ["resgate", *args]
    resgate.cli.main()


if __name__ == "__main__":
    main()
