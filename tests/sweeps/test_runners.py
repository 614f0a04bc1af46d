"""The runners: the same results in this process, in local workers and on Ray; a dead
worker's task retried (bounded), a task's own error not retried."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hgq_fpga.optional import MissingDependencyError
from hgq_fpga.sweeps import run_tasks

TASKS = [(f"t{i}", (i,)) for i in range(6)]


def collect(fn, tasks=TASKS, **kwargs):
    got, calls = {}, []

    def on_result(key, out):
        calls.append(key)
        got[key] = out

    run_tasks(fn, tasks, on_result=on_result, **kwargs)
    assert sorted(calls) == sorted(k for k, _ in tasks)  # each task reported exactly once
    return got


@pytest.mark.parametrize("runner", ["inline", "local"])
def test_every_task_runs_once_with_the_shared_data(runner):
    import sweep_helpers

    got = collect(sweep_helpers.scale, shared=7, runner=runner, workers=2)
    assert {k: o.value for k, o in got.items()} == {f"t{i}": 7 * i for i in range(6)}
    assert all(o.ok and o.attempts == 1 for o in got.values())


def test_local_workers_get_the_thread_settings_and_are_reused():
    import sweep_helpers

    got = collect(sweep_helpers.pid, runner="local", workers=2, env={"OMP_NUM_THREADS": "1"})
    pids = {o.value[0] for o in got.values()}
    assert len(pids) <= 2 and all(o.value[1] == "1" for o in got.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_a_trial_worker_runs_jax_on_as_many_threads_as_it_has_cpus():
    """thread_env pins JAX's CPU client too (PJRT_NPROC): without it the pool has one thread a core."""
    import sweep_helpers

    from hgq_fpga.sweeps.trial import thread_env

    got = collect(sweep_helpers.xla_pool_threads, tasks=[("t", (0,))], runner="local", workers=1,
                  env=thread_env(1))
    assert got["t"].value == 1


def test_a_killed_local_worker_is_replaced_and_its_task_retried(tmp_path):
    import sweep_helpers

    got = collect(sweep_helpers.die_once, shared=str(tmp_path), runner="local", workers=2, retries=1)
    assert {k: o.value for k, o in got.items()} == {f"t{i}": i for i in range(6)}
    assert all(o.attempts == 2 and "died (exit code -9)" in o.worker_deaths[0] for o in got.values())


def test_retries_are_bounded(tmp_path):
    import sweep_helpers

    got = collect(sweep_helpers.die_always, tasks=TASKS[:2], shared=str(tmp_path), runner="local", workers=1,
                  retries=2)
    for o in got.values():
        assert not o.ok and o.attempts == 3 and len(o.worker_deaths) == 3
        assert "died on each of 3 attempts" in o.error


@pytest.mark.parametrize("runner", ["inline", "local"])
def test_a_task_error_is_its_result_and_not_retried(runner):
    import sweep_helpers

    got = collect(sweep_helpers.fail, tasks=TASKS[:2], runner=runner, workers=1)
    assert all(not o.ok and o.attempts == 1 and "ValueError: task" in o.error for o in got.values())


def test_a_function_that_cannot_be_pickled_is_refused_before_any_work():
    with pytest.raises(TypeError, match=r"use module-level functions \(not lambdas or nested functions\), or runner='inline'"):
        run_tasks(lambda s, x: x, TASKS, on_result=print, runner="local")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"runner": "spark"}, "runner must be one of inline, local, ray; received runner='spark'"),
    ({"retries": -1}, "retries must be a whole number >= 0; received retries=-1"),
    ({"workers": 0}, "workers must be a whole number >= 1; received workers=0"),
    ({"workers": -2}, "workers must be a whole number >= 1"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_tasks(print, TASKS, on_result=print, **kwargs)


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"runner='ray' .*pip install 'hgq_fpga\[cluster\]'"):
        run_tasks(print, TASKS, on_result=print, runner="ray")


@pytest.mark.slow
def test_ray_runs_retries_and_reports_errors(ray_cluster, tmp_path):
    import sweep_helpers

    got = collect(sweep_helpers.scale, shared=3, runner="ray")
    assert {k: o.value for k, o in got.items()} == {f"t{i}": 3 * i for i in range(6)}
    got = collect(sweep_helpers.die_once, tasks=TASKS[:2], shared=str(tmp_path), runner="ray", retries=1)
    assert all(o.value is not None and o.attempts == 2 and o.worker_deaths for o in got.values())
    got = collect(sweep_helpers.die_always, tasks=TASKS[:1], shared=str(tmp_path), runner="ray", retries=1)
    assert not got["t0"].ok and got["t0"].attempts == 2 and "died on each of 2 attempts" in got["t0"].error
    got = collect(sweep_helpers.fail, tasks=TASKS[:1], runner="ray")
    assert not got["t0"].ok and got["t0"].attempts == 1 and "ValueError: task 0 is broken" in got["t0"].error


def test_a_function_workers_cannot_import_is_one_clear_error(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("from hgq_fpga.sweeps import run_tasks\n"
                      "def f(shared, x):\n    return x\n"
                      "run_tasks(f, [('a', (1,))], on_result=print, runner='local', workers=1)\n")
    import subprocess

    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "cannot load the task function" in proc.stderr and "not in the script run as __main__" in proc.stderr


def test_sweep_refuses_a_builder_from_main_before_any_work(tmp_path):
    from hgq_fpga.sweeps import sweep

    def build():  # noqa: ANN202
        return None

    build.__module__ = "__main__"
    with pytest.raises(ValueError, match=r"defined in the script being run \(__main__\)"):
        sweep(build, "digits", tmp_path / "s", budgets=[100], epochs=1)
    assert not (tmp_path / "s").exists()


OTHER_THREAD = textwrap.dedent("""
    import os, signal, sys, threading, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from sweep_helpers import nap
    from hgq_fpga.processes import sigterm_as_interrupt
    from hgq_fpga.sweeps import run_tasks

    marker = Path(sys.argv[2])
    sigterm_as_interrupt()

    def other():  # once the task runs, SIGTERM to this thread: the kernel may pick any thread for a process's signal
        while not marker.exists():
            time.sleep(0.05)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    threading.Thread(target=other, daemon=True).start()
    start = time.monotonic()
    try:
        run_tasks(nap, [("a", (300,))], shared=str(marker), on_result=print, runner="local", workers=1, retries=0)
    except KeyboardInterrupt:
        worker = int(marker.read_text())
        print(f"interrupted after {time.monotonic() - start:.1f} s; worker alive: {os.path.exists(f'/proc/{worker}')}")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pthread_kill to a thread; reads /proc")
def test_sigterm_given_to_another_thread_stops_a_local_sweep(tmp_path):
    here = str(Path(__file__).resolve().parent)
    done = subprocess.run([sys.executable, "-c", OTHER_THREAD, here, str(tmp_path / "started")], capture_output=True,
                          text=True, timeout=250)
    assert done.stdout.startswith("interrupted after"), done.stdout + done.stderr
    assert float(done.stdout.split()[2]) < 120 and done.stdout.rstrip().endswith("worker alive: False"), done.stdout
