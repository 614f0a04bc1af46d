"""Run many independent tasks (sweep trials, syntheses) in this process, in a
pool of local worker processes, or on a Ray cluster -- with bounded retries
when a worker dies.

Every runner calls ``fn(shared, *args)`` once per task and hands each outcome
to ``on_result(key, outcome)`` in this process, as soon as it arrives, so that
the caller can store it (a sweep writes the trial's folder then: what has
arrived is kept whatever happens to the rest).

* ``"inline"`` -- one after another in this process (nothing is pickled; a
  crash of the task ends the caller too). For debugging and notebooks.
* ``"local"`` -- ``workers`` fresh Python processes (``python -m
  hgq_fpga.sweeps.worker``; never ``fork``: TensorFlow and JAX are not
  fork-safe, and unlike ``multiprocessing``'s ``spawn`` the caller's script is
  not imported again). ``shared`` is sent to each worker once. A worker that dies (SIGKILL, out of memory, a segfault) is replaced,
  and its task runs again, at most ``retries`` more times.
* ``"ray"`` -- Ray tasks with ``num_cpus``/``num_gpus`` each, on the cluster at
  ``address`` (or ``RAY_ADDRESS``), or on a local Ray started for the call.
  ``shared`` goes to the object store once. A task whose worker or node dies
  is resubmitted by this runner (Ray's own retries are off, so that the
  number of attempts is known), at most ``retries`` more times.

An exception raised by ``fn`` is the task's result (an :class:`Outcome` with
``error``), not retried: running deterministic code again gives the same error.

Why a pool of our own instead of :class:`concurrent.futures.ProcessPoolExecutor`:
when one of its workers dies, the executor breaks and fails every pending task,
without saying which task the dead worker held; here each worker holds one
known task, so only that task is retried.

Example:
    >>> from hgq_fpga.sweeps.runners import run_tasks
    >>> got = {}
    >>> run_tasks(pow, [("a", (2,)), ("b", (3,))], shared=10, runner="inline",
    ...           on_result=lambda key, out: got.update({key: out.value}))
    >>> got
    {'a': 100, 'b': 1000}
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ..processes import WAIT_SLICE

__all__ = ["RUNNERS", "Outcome", "check_runner", "error_text", "run_tasks"]

RUNNERS = ("inline", "local", "ray")


@dataclass
class Outcome:
    """How one task ended.

    Attributes:
        value: ``fn``'s return value (None on failure).
        error: None, or the exception's type, message and traceback as text.
        attempts: how many times the task was started (more than 1 after a worker died).
        worker_deaths: the messages of the deaths that caused the retries.
    """

    value: Any = None
    error: str | None = None
    attempts: int = 1
    worker_deaths: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the task returned a value."""
        return self.error is None


Task = tuple[str, tuple]
OnResult = Callable[[str, Outcome], None]


def error_text(e: BaseException) -> str:
    """An exception as text: type, message and traceback (what an :class:`Outcome` carries)."""
    return "".join(traceback.format_exception_only(type(e), e)).strip() + "\n" + "".join(
        traceback.format_tb(e.__traceback__))


def check_runner(runner: str, workers: int | None = None, retries: int = 0) -> None:
    """Refuse an unknown runner, ``workers < 1`` or ``retries < 0``, naming the value received."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {', '.join(RUNNERS)}; received runner={runner!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a whole number >= 1; received workers={workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0; received retries={retries!r}")


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[Task],
    *,
    shared: Any = None,
    on_result: OnResult,
    runner: str = "local",
    workers: int | None = None,
    retries: int = 2,
    cpus: float = 1,
    gpus: float = 0,
    address: str | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run ``fn(shared, *args)`` for each ``(key, args)`` of ``tasks`` (see the module docstring).

    Args:
        fn: a module-level function (``local`` and ``ray`` send it by reference).
        tasks: ``(key, args)`` pairs; keys are unique.
        shared: sent once per worker, passed first to every call.
        on_result: called in this process with each task's :class:`Outcome`.
        runner: ``"inline"``, ``"local"`` or ``"ray"``.
        workers: ``local``: number of processes (default: CPU count // cpus, at most len(tasks)).
        retries: more attempts for a task whose worker died.
        cpus, gpus: per task (``ray``; ``local`` uses ``cpus`` for the thread pinning in ``env``).
        address: ``ray``: the cluster (default ``RAY_ADDRESS``, else a Ray started here).
        env: environment variables set in each worker before ``fn`` first runs.
    """
    check_runner(runner, workers, retries)
    keys = [k for k, _ in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    if not tasks:
        return
    if runner == "inline":
        for key, args in tasks:
            try:
                out = Outcome(value=fn(shared, *args))
            except Exception as e:  # the task's own error is its result
                out = Outcome(error=error_text(e))
            on_result(key, out)
    elif runner == "local":
        n = workers or max(1, int((os.cpu_count() or 1) // max(cpus, 1)))
        _LocalPool(fn, shared, env or {}).run(list(tasks), min(n, len(tasks)), retries, on_result)
    else:
        from .ray_runner import run_on_ray

        run_on_ray(fn, list(tasks), shared=shared, on_result=on_result, retries=retries, cpus=cpus,
                   gpus=gpus, address=address, env=env or {})


# -- local pool -----------------------------------------------------------------------
def worker_loop(receive: Connection, send: Connection) -> None:  # pragma: no cover - runs in the child
    """The worker's side: the function and the shared data, then ``(key, args)`` until None."""
    try:
        fn, shared = pickle.loads(receive.recv_bytes())
    except Exception as e:  # e.g. a function of the caller's __main__, which a worker cannot import
        send.send((None, None, error_text(e)))
        return
    while True:
        try:
            message = receive.recv()
        except EOFError:
            return
        if message is None:
            return
        key, args = message
        try:
            reply = (key, fn(shared, *args), None)
        except Exception as e:
            reply = (key, None, error_text(e))
        try:
            send.send(reply)
        except Exception as e:  # the value does not pickle
            send.send((key, None, f"the result of task {key} cannot be sent back: {error_text(e)}"))


@dataclass
class _Worker:
    process: subprocess.Popen
    send: Connection
    receive: Connection
    key: str | None = None

    def close(self) -> None:
        self.send.close()
        self.receive.close()


class _LocalPool:
    """Spawned worker processes, one task each at a time (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], shared: Any, env: dict[str, str]) -> None:
        try:
            self.payload = pickle.dumps((fn, shared), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise TypeError(
                f"runner='local' sends the task function and its data to worker processes, and they "
                f"cannot be pickled ({e}); use module-level functions (not lambdas or nested "
                f"functions), or runner='inline'"
            ) from e
        # like Ray, which gives its workers the driver's sys.path: a builder importable here is importable there
        path = os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)
        self.env = {**os.environ, **env, "PYTHONPATH": path}

    def _start(self) -> _Worker:
        """A fresh ``python -m hgq_fpga.sweeps.worker`` talking over two pipes of its own (its
        standard streams stay the user's); it dies with this process, even on SIGKILL."""
        from ..processes import die_with_parent

        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "hgq_fpga.sweeps.worker", str(down_r), str(up_w)],
                                    pass_fds=(down_r, up_w), env=self.env, stdin=subprocess.DEVNULL,
                                    preexec_fn=die_with_parent)
        finally:
            os.close(down_r)
            os.close(up_w)
        w = _Worker(proc, Connection(down_w, readable=False), Connection(up_r, writable=False))
        w.send.send_bytes(self.payload)
        return w

    def run(self, tasks: list[Task], n: int, retries: int, on_result: OnResult) -> None:
        self.queue = list(reversed(tasks))
        self.args_of = dict(tasks)
        self.attempts: dict[str, int] = {}
        self.deaths: dict[str, list[str]] = {}
        pool: list[_Worker | None] = [None] * n  # started when there is a task for them
        try:
            while self.queue or any(w is not None and w.key is not None for w in pool):
                for i, w in enumerate(pool):
                    if self.queue and (w is None or w.key is None):
                        w = pool[i] = w or self._start()
                        w.key, args = self.queue.pop()
                        self.attempts[w.key] = self.attempts.get(w.key, 0) + 1
                        w.send.send((w.key, args))
                self._collect(pool, retries, on_result)
        finally:
            self._stop([w for w in pool if w is not None])

    def _collect(self, pool: list[_Worker | None], retries: int, on_result: OnResult) -> None:
        """Wait for replies or deaths; hand on the results, queue the retries."""
        busy = [w for w in pool if w is not None and w.key is not None]
        ready: list = []
        while not ready:  # in slices, so that a SIGTERM given to another thread is acted on (processes.py)
            ready = wait([w.receive for w in busy], timeout=WAIT_SLICE)  # a reply, or end of file: the worker died
        for w in busy:
            if w.receive not in ready:
                continue
            key, w.key = w.key, None
            try:
                got, value, error = w.receive.recv()
            except (EOFError, OSError):  # the worker died (perhaps while sending)
                self._died(pool, w, key, retries, on_result)
            else:
                if got is None:  # the worker could not load the function or the shared data
                    raise RuntimeError(f"runner='local': the worker processes cannot load the task function or "
                                       f"its data: {error.splitlines()[0]}. Define functions in an importable "
                                       f"module (not in the script run as __main__), or use runner='inline'")
                on_result(key, Outcome(value, error, self.attempts[key], tuple(self.deaths.get(key, ()))))

    def _died(self, pool: list[_Worker | None], w: _Worker, key: str, retries: int, on_result: OnResult) -> None:
        why = f"worker process {w.process.pid} died (exit code {w.process.wait()})"
        self.deaths.setdefault(key, []).append(why)
        if self.attempts[key] <= retries:
            self.queue.append((key, self.args_of[key]))
        else:
            on_result(key, Outcome(None, f"{why}; it died on each of {self.attempts[key]} attempts",
                                   self.attempts[key], tuple(self.deaths[key])))
        w.close()
        pool[pool.index(w)] = None

    @staticmethod
    def _stop(pool: list[_Worker]) -> None:
        for w in pool:
            try:
                if w.key is None:
                    w.send.send(None)
            except OSError:
                pass
        for w in pool:
            try:
                w.process.wait(timeout=5 if w.key is None else 0.01)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
            w.close()
