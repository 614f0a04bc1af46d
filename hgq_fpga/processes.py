"""Child processes (g++ builds) that die with hgq_fpga, whatever ends it.

:func:`start_group` runs a command in a process group of its own, under a
``bash`` that the kernel signals (``PR_SET_PDEATHSIG``, Linux) when the
Python process that started it dies -- even by SIGKILL, when no Python code
runs -- and that then kills the whole group (``build_lib.sh``, g++,
cc1plus). :func:`kill_group` ends the group from Python (an exception, Ctrl-C,
SIGTERM turned into an exception by :func:`sigterm_as_interrupt`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["WAIT_SLICE", "die_with_parent", "kill_group", "run_in_group", "sigterm_as_interrupt", "signal_received",
           "start_group"]

_PR_SET_PDEATHSIG = 1
#: seconds a wait on a child (a build, a worker) lasts before Python looks at its signals again
WAIT_SLICE = 0.5
_RECEIVED: list[int] = []  # signals turned into KeyboardInterrupt, even where some code swallowed it


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn``: the kernel sends SIGTERM to this child when its parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_group(command: list[str], cwd: str | Path, **popen: Any) -> subprocess.Popen:
    """Start ``command`` in its own process group; the whole group dies with this process."""
    quoted = " ".join("'" + c.replace("'", "'\\''") + "'" for c in command)
    wrapper = f"trap 'kill -KILL 0' TERM; {quoted} & wait $!"
    return subprocess.Popen(["bash", "-c", wrapper], cwd=cwd, start_new_session=True,
                            preexec_fn=die_with_parent, **popen)


def kill_group(proc: subprocess.Popen) -> None:
    """Kill every process of ``proc``'s group and reap ``proc``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_in_group(command: list[str], cwd: str | Path, *, desc: str, progress: bool = False,
                 timeout: float | None = None) -> tuple[int, str]:
    """Run ``command`` (:func:`start_group`) and return ``(exit code, stdout and stderr together)``.

    ``progress`` shows ``desc`` and the elapsed time while it runs (tqdm, on
    standard error; it disappears when done). An exception here (Ctrl-C,
    SIGTERM, ``timeout`` seconds passed: :class:`subprocess.TimeoutExpired`)
    kills the whole group before it propagates.
    """
    from .progress import elapsed

    proc = start_group(command, cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = None if timeout is None else time.monotonic() + timeout
    try:
        with elapsed(desc, enabled=progress):
            while True:  # in slices: a SIGTERM that the kernel gives to another thread is acted on within
                try:      # WAIT_SLICE seconds, not when the build ends (the handler runs in the main thread only)
                    left = WAIT_SLICE if end is None else min(WAIT_SLICE, end - time.monotonic())
                    output, _ = proc.communicate(timeout=max(left, 0.0))
                    break
                except subprocess.TimeoutExpired:
                    if end is not None and time.monotonic() >= end:
                        raise subprocess.TimeoutExpired(command, timeout) from None
    except BaseException:
        kill_group(proc)
        raise
    return proc.returncode, output


def sigterm_as_interrupt() -> None:
    """Make SIGTERM raise :class:`KeyboardInterrupt` in the main thread, so that the
    clean-up code (``finally``, ``except BaseException``) runs as on Ctrl-C."""
    def handler(signum: int, frame: Any) -> None:
        _RECEIVED.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def signal_received() -> int | None:
    """The first signal :func:`sigterm_as_interrupt` turned into an exception, or None.

    A command that finishes although it was signalled (the exception was raised
    where a library ignores exceptions, such as a finaliser) still reports the
    interruption: a process told to stop does not exit 0.
    """
    return _RECEIVED[0] if _RECEIVED else None
