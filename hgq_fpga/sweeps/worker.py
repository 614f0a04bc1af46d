"""``python -m hgq_fpga.sweeps.worker IN_FD OUT_FD``: a worker of the ``"local"`` runner.

It reads the task function and the shared data, then tasks, from the pipe
``IN_FD`` and sends each outcome on ``OUT_FD`` (see
:func:`hgq_fpga.sweeps.runners.worker_loop`). Not meant to be run by hand.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection


def main(argv: list[str]) -> int:
    from .runners import worker_loop

    receive, send = Connection(int(argv[0]), writable=False), Connection(int(argv[1]), readable=False)
    try:
        worker_loop(receive, send)
    except KeyboardInterrupt:  # the parent is stopping the sweep
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
