"""Task functions and model builders for the sweep tests.

Worker processes import them by name (``sweep_helpers``): the tests put this
folder on ``sys.path``, which the local pool and Ray pass on to their workers.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def scale(shared: int, x: int) -> int:
    """``shared * x``."""
    return shared * x


def fail(shared: Any, x: int) -> int:
    raise ValueError(f"task {x} is broken")


def die_once(folder: str, x: int) -> int:
    """Kill this worker the first time it sees ``x`` (a marker file remembers); return ``x`` after."""
    marker = Path(folder) / f"died-{x}"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def nap(marker: str, seconds: float) -> None:
    """Write ``marker`` (the task has started), then sleep ``seconds``."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)


def die_always(folder: str, x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def pid(shared: Any, x: int) -> tuple[int, str | None]:
    """The worker's process id and its OMP_NUM_THREADS."""
    return os.getpid(), os.environ.get("OMP_NUM_THREADS")


def xla_pool_threads(shared: Any, x: int) -> int:
    """How many threads JAX's CPU client runs computations on in this worker (after one computation)."""
    import jax
    import jax.numpy as jnp

    jax.jit(lambda v: v * 2)(jnp.ones(3)).block_until_ready()
    names = [Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")]
    return sum(name.startswith("tf_XLAEigen") for name in names)


def mlp_with_victim(marker_dir: str | None = None, **options: Any) -> Any:
    """:func:`hgq_fpga.models.mlp`; with ``marker_dir``, the first trial to build it writes
    ``started`` (its process id) there and waits to be killed by the test."""
    from hgq_fpga.models import mlp

    if marker_dir is not None:
        started = Path(marker_dir) / "started"
        if not started.exists():
            started.write_text(str(os.getpid()))
            time.sleep(300)
            raise RuntimeError("the test did not kill this worker")
    return mlp(**options)
