"""Whole sweeps: Ray (two nodes) gives the local pool's results trial for trial; a worker killed
during a trial is retried and nothing is lost or stored twice; an interrupted sweep resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hgq_fpga.datasets import digits
from hgq_fpga.sweeps import sweep

pytestmark = pytest.mark.slow

COMPARED = ("lut", "dsp", "carry", "ebops", "accuracy", "feasible", "repair_rounds")


@pytest.fixture(scope="module")
def small_digits():
    d = digits()
    return d.x_train[:400], d.y_train[:400], d.x_test[:200], d.y_test[:200]


def _kw(**kw):
    base = {"architectures": {"tiny": {"widths": [8, 10]}, "narrow": {"widths": [6, 10]}},
            "budgets": [600, None], "seeds": [0, 1], "epochs": 1, "batch_size": 50, "progress": False}
    return {**base, **kw}


def _table(result):
    return {r["trial"]: tuple(r[k] for k in COMPARED) for r in result.rows}


def _kill_when_started(marker_dir: Path, killed: list[int]) -> threading.Thread:
    """Kill (SIGKILL) the worker whose trial writes ``marker_dir/started``, once."""
    def watch() -> None:
        started = marker_dir / "started"
        for _ in range(6000):
            if started.exists() and started.read_text():
                pid = int(started.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _sweep_with_a_victim(runner: str, data, out: Path):
    marker = out.parent / f"marker-{runner}"
    marker.mkdir()
    killed: list[int] = []
    watcher = _kill_when_started(marker, killed)
    archs = {"tiny": {"widths": [8, 10]}, "victim": {"widths": [6, 10], "marker_dir": str(marker)}}
    # (one seed: four trials each, two per worker, where eight cost CI a minute more and covered nothing else)
    result = sweep("sweep_helpers:mlp_with_victim", data, out, runner=runner, workers=2, retries=1,
                   **_kw(architectures=archs, seeds=[0]))
    watcher.join(timeout=1)
    assert len(killed) == 1  # one worker was killed during a trial
    return result


def test_ray_cluster_gives_the_local_results_trial_for_trial_though_a_worker_dies(ray_cluster, small_digits,
                                                                                   tmp_path):
    local = _sweep_with_a_victim("local", small_digits, tmp_path / "local")
    on_ray = _sweep_with_a_victim("ray", small_digits, tmp_path / "ray")
    for result in (local, on_ray):
        assert len(result.ran) == 4 and not result.failed
        assert sorted(r["attempts"] for r in result.rows) == [1] * 3 + [2]  # the killed trial ran again, once
        trials = sorted(p.name for p in (result.path / "trials").iterdir())
        assert trials == sorted(result.ran)  # each trial stored once, no staging folder left
        assert len(list(csv.DictReader((result.path / "results.csv").open()))) == 4
        for name in ("results.parquet", "pareto.png"):
            assert (result.path / name).stat().st_size > 0
    assert _table(local) == _table(on_ray)
    assert all(r["feasible"] and r["lut"] <= r["budget_lut"] for r in on_ray.rows if r["budget_lut"] is not None)
    sens = json.loads((on_ray.path / "trials" / "tiny_lut600_seed0" / "sensitivities.json").read_text())
    assert [s["layer"] for s in sens] == ["dense_0", "logits"] and all(s["lut_saved"] >= 0 for s in sens)
    free = [r["lut"] for r in on_ray.rows if r["budget_lut"] is None]
    assert len(free) == 2 and min(free) > 600  # the budget mattered
    assert len({r["pid"] for r in on_ray.rows}) >= 2  # both nodes took trials


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hgq_fpga.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_an_interrupted_sweep_resumes_with_only_the_unfinished_trials(tmp_path, small_digits):
    for name, a in zip(("x", "y", "x_test", "y_test"), small_digits):
        np.save(tmp_path / f"{name}.npy", a)
    config = tmp_path / "sweep.yml"
    config.write_text("model: mlp\narchitectures: {tiny: {widths: [8, 10]}}\nbudgets: [500, null]\n"
                      "epochs: 1\nbatch_size: 50\ndata: {x: x.npy, y: y.npy, x_test: x_test.npy, y_test: y_test.npy}\n")
    out = tmp_path / "s"
    proc = _cli("sweep", str(config), "-o", str(out), "--workers", "1")
    trials = out / "trials"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if trials.is_dir() and sum(1 for p in trials.iterdir() if not p.name.startswith(".")) >= 1:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)  # (a loaded CI machine: stopping the workers and exiting)
    assert proc.returncode == 130, err
    done = {p.name: p.stat().st_ino for p in trials.iterdir()}
    assert len(done) == 1 and not any(n.startswith(".") for n in done)  # whole trials only
    proc = _cli("sweep", str(config), "-o", str(out), "--workers", "1")
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "1 trial(s) run, 1 already in" in stdout
    assert all((trials / n).stat().st_ino == ino for n, ino in done.items())  # the first run's trials untouched
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 2
