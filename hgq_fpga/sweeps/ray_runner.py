"""The ``"ray"`` runner of :func:`hgq_fpga.sweeps.runners.run_tasks`.

Ray is optional (``pip install 'hgq_fpga[cluster]'``). The cluster is the one
at ``address`` or ``RAY_ADDRESS`` when given (``ray start --head`` on a
cluster, or a SLURM job that started one); otherwise a local Ray is started
for the call and stopped after it. Ray's own task retries are off
(``max_retries=0``): a task whose worker or node died comes back as a
:class:`ray.exceptions.RayError` other than :class:`ray.exceptions.RayTaskError`,
and is resubmitted here, so that the attempts are counted and bounded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..optional import require
from ..processes import WAIT_SLICE
from .runners import OnResult, Outcome, Task, error_text

__all__ = ["CLUSTER_EXTRA", "require_ray", "run_on_ray"]

CLUSTER_EXTRA = "cluster"


def require_ray() -> Any:
    """The ``ray`` module, or :class:`~hgq_fpga.optional.MissingDependencyError` with the install line."""
    require("ray", feature="runner='ray' (--runner ray)", extra=CLUSTER_EXTRA)
    import ray

    return ray


def _call(fn: Callable[..., Any], shared: Any, args: tuple) -> Any:  # pragma: no cover - runs on a Ray worker
    return fn(shared, *args)


def _connect(ray: Any, address: str | None) -> bool:
    """Connect to the cluster (or start a local Ray); True when this call started it."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=True,
             logging_level="ERROR")
    return True


def run_on_ray(
    fn: Callable[..., Any],
    tasks: list[Task],
    *,
    shared: Any,
    on_result: OnResult,
    retries: int,
    cpus: float,
    gpus: float,
    address: str | None,
    env: dict[str, str],
) -> None:
    """Run the tasks as Ray tasks (see the module docstring)."""
    ray = require_ray()
    started = _connect(ray, address)
    remote = ray.remote(_call).options(num_cpus=cpus, num_gpus=gpus, max_retries=0, retry_exceptions=False,
                                       runtime_env={"env_vars": env} if env else None)
    pending: dict[Any, str] = {}
    try:
        shared_ref = ray.put(shared)
        args_of = dict(tasks)
        attempts = {key: 1 for key in args_of}
        deaths: dict[str, list[str]] = {}
        pending = {remote.remote(fn, shared_ref, args): key for key, args in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SLICE)  # slices: see processes.py
            for ref in done:
                key = pending.pop(ref)
                try:
                    out = Outcome(ray.get(ref), None, attempts[key], tuple(deaths.get(key, ())))
                except ray.exceptions.RayTaskError as e:  # fn raised: its own error, not retried
                    cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
                    out = Outcome(None, error_text(cause), attempts[key], tuple(deaths.get(key, ())))
                except ray.exceptions.RayError as e:  # the worker or its node died
                    deaths.setdefault(key, []).append(f"{type(e).__name__}: {str(e).splitlines()[0]}")
                    if attempts[key] <= retries:
                        attempts[key] += 1
                        pending[remote.remote(fn, shared_ref, args_of[key])] = key
                        continue
                    out = Outcome(None, f"the worker died on each of {attempts[key]} attempts: {deaths[key][-1]}",
                                  attempts[key], tuple(deaths[key]))
                on_result(key, out)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
