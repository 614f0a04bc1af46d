"""One sweep trial, as it runs on a worker: build, train under the budget,
estimate exactly, measure the emulated firmware's accuracy, and return it all
(the model as ``.keras`` bytes) to the process that writes the sweep folder.

Nothing is written on the worker, so a trial runs the same on a worker that
does not share the sweep folder's file system (a Ray cluster's other nodes).

Threads are pinned before TensorFlow starts on the worker (``OMP_NUM_THREADS``
and TensorFlow's intra-op pool = the trial's CPUs, inter-op = 1; on JAX the
CPU client's pool, ``PJRT_NPROC``): the same trial then gives the same numbers
whichever runner carried it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .spec import SweepSpec, Trial, resolve_build

__all__ = ["load_model_bytes", "pin_threads", "run_trial", "thread_env"]


def thread_env(cpus: float) -> dict[str, str]:
    """Environment variables that pin a worker's math libraries to ``cpus`` threads.

    JAX's CPU client sizes its pool by ``PJRT_NPROC`` (else one thread a core): with two
    threads on a 2-core machine a quantized 64-256-256-10 MLP's epoch took 23-135 ms from
    one process to the next (the pool's threads spin while they wait), 20-25 ms with one.
    """
    n = str(max(1, int(cpus)))
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
            "PJRT_NPROC": n}


def pin_threads(cpus: float) -> None:
    """Set :func:`thread_env` unless TensorFlow already runs in this process (its pools are then fixed)."""
    if "tensorflow" not in sys.modules:
        os.environ.update(thread_env(cpus))


def _model(spec: SweepSpec, trial: Trial, build: Any) -> Any:
    import keras

    from ..models import compile_classifier

    keras.utils.set_random_seed(trial.seed)
    model = (build if callable(build) else resolve_build(spec.build))(**spec.architectures[trial.architecture])
    if not isinstance(model, keras.Model):
        raise TypeError(f"the builder {spec.build} returned {type(model).__name__}, not a keras.Model")
    if not getattr(model, "compiled", False):
        compile_classifier(model, spec.learning_rate)
    return model


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    from ..emulator import emulate

    out = np.asarray(emulate(model, x))
    return float(np.mean(np.argmax(out.reshape(len(out), -1), axis=1) == np.asarray(y).reshape(-1)))


def _keras_bytes(model: Any) -> bytes:
    with tempfile.TemporaryDirectory(prefix="hgq_fpga_trial_") as d:
        path = Path(d) / "model.keras"
        model.save(path)
        return path.read_bytes()


def load_model_bytes(data: bytes, folder: Path) -> Any:
    """A model from ``.keras`` bytes (written into ``folder``, loaded with :func:`hgq_fpga.load_model`'s checks)."""
    from ..loading import load_model
    from ..startup import import_keras_quietly

    import_keras_quietly()
    path = folder / "model.keras"
    path.write_bytes(data)
    return load_model(path)


def run_trial(shared: dict[str, Any], trial: Trial) -> dict[str, Any]:
    """Train and measure one trial (see the module docstring); ``shared`` holds
    ``spec`` (:class:`SweepSpec`), ``data`` (x, y, x_test, y_test), ``cpus`` and
    ``build`` (a function, or None to resolve ``spec.build``).

    Returns ``{"metrics": ..., "estimate": ResourceReport.to_dict(), "history": [...],
    "sensitivities": [...], "model": bytes}``.
    """
    pin_threads(shared.get("cpus", 1))
    from ..startup import import_keras_quietly

    import_keras_quietly()
    from ..calibration import calibrate
    from ..constraints.budget import ResourceBudget
    from ..resources import estimate

    spec: SweepSpec = shared["spec"]
    x, y, xt, yt = shared["data"]
    t0 = time.perf_counter()
    model = _model(spec, trial, shared.get("build"))
    callbacks, cb = [], None
    if trial.budget is not None:
        cb = ResourceBudget(lut=trial.budget, calibration_data=x, method=spec.method, verbose=0,
                            **spec.budget_options)
        callbacks.append(cb)
    model.fit(x, y, validation_data=(xt, yt), epochs=spec.epochs, batch_size=spec.batch_size, verbose=0,
              callbacks=callbacks)
    if cb is not None:
        report, history = cb.result.report, cb.history
        feasible, rounds = cb.result.feasible, cb.result.repair.rounds
    else:
        calibrate(model, x)
        options = {k: v for k, v in spec.budget_options.items() if k in ("strategy", "part", "cost_model")}
        report, history, feasible, rounds = estimate(model, **options), [], True, 0
    seconds = time.perf_counter() - t0
    metrics = {
        "trial": trial.key, "architecture": trial.architecture, "budget_lut": trial.budget, "seed": trial.seed,
        "lut": report.lut, "dsp": report.dsp, "carry": report.carry, "ebops": report.ebops,
        "accuracy": _accuracy(model, xt, yt), "feasible": bool(feasible), "repair_rounds": int(rounds),
        "projected_epochs": sum(h.get("projected_lut") is not None for h in history),
        "seconds": round(seconds, 3), "epochs": spec.epochs, "method": spec.method,
        "host": os.uname().nodename, "pid": os.getpid(),
    }
    sens = cb.result.sensitivities if cb is not None else None
    return {"metrics": metrics, "estimate": report.to_dict(), "history": _plain(history),
            "sensitivities": _plain([r.row() for r in sens.rows]) if sens is not None else [],
            "model": _keras_bytes(model)}


def _plain(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON-able copies of records (numpy scalars to Python numbers, inf and NaN to None)."""
    def v(x: Any) -> Any:
        x = x.item() if isinstance(x, np.generic) else x
        return None if isinstance(x, float) and not np.isfinite(x) else x  # strict JSON: no Infinity

    return [{k: v(x) for k, x in h.items()} for h in history]
