"""What a LUT budget costs in training time: float, quantized and budgeted epochs, per Keras backend.

Run:  python benchmarks/budget_training.py [--backends tensorflow jax torch] [--epochs 10] [--repeats 3]
                                           [--models digits 64-256-256-10] [--json out.json]

For each backend (a child process each: the backend is chosen at import) and
each model, three runs alternate ``--repeats`` times, on the digits training
split (1,257 samples, batch 32, Adam 3e-3):

* ``float``: the same architecture with plain Keras ``Dense`` layers;
* ``free``: hgq_fpga's quantized model (``QDense``), no budget;
* ``budget``: the quantized model with ``ResourceBudget(lut=20% of its
  starting cost, calibration_data=x_train, check_every="auto",
  schedule=Schedule(0.1, 0.2))`` (the options that make it fast: checks take at
  most 10% of the time, and no cost is computed while the bits are frozen) and
  the default rule, sensitivities off (they run after the last epoch).

An epoch's time is taken from before every callback's ``on_epoch_begin`` to
after every callback's ``on_epoch_end``, so the budget's checks and
projections count. Reported per model, the medians over the repeats of:

* ``budget / free``: the median epoch after the first (target <= 1.2), and in
  brackets the sum of those epochs (the checks included: they run after some
  epochs only);
* ``free / float``: the median epoch of the quantized model over the float one (the
  train-step ratio; target <= 1.4 on TensorFlow);
* ``first epoch, free / float``: the first epoch, tracing included (target <= 2).

Every child computes on one thread: BLAS and OpenMP (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``), TensorFlow's op pools
(``TF_NUM_INTRAOP_THREADS``, ``TF_NUM_INTEROP_THREADS``) and XLA's CPU client on JAX
(``XLA_FLAGS``): with TensorFlow's default pools on this shared 2-core machine, one epoch
in four or so took twice as long as the others, in every kind of run alike. Before each
``fit`` the garbage of the runs before is collected (a collection inside a first epoch
took 0.16 s of it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODELS = {"digits": (64, 32, 32), "64-256-256-10": (256, 256)}
RUNS = ("float", "free", "budget")


def _pinned_env(backend: str) -> dict[str, str]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
              "TF_NUM_INTEROP_THREADS"):
        env[k] = "1"
    # (JAX: XLA's CPU client on one thread as well)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                        "intra_op_parallelism_threads=1").strip()
    return env


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every model on the current backend (in a child process)."""
    import keras

    import hgq_fpga
    from hgq_fpga.datasets import digits
    from hgq_fpga.constraints.schedule import Schedule
    from hgq_fpga.layers import QDense

    class Start(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t0 = time.perf_counter()

    class Stop(keras.callbacks.Callback):
        def __init__(self, start: Start) -> None:
            super().__init__()
            self.start, self.times = start, []

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.times.append(time.perf_counter() - self.start.t0)

    data = digits(seed=0)

    def build(hidden: tuple[int, ...], kind: str) -> keras.Model:
        keras.utils.set_random_seed(0)
        layer = (lambda n, **kw: keras.layers.Dense(n, **kw)) if kind == "float" else QDense
        body = [layer(n, activation="relu") for n in hidden]
        model = keras.Sequential([keras.Input((64,)), *body, layer(10)])
        model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def fit(model: keras.Model, extra: list) -> tuple[list[float], float]:
        start = Start()
        stop = Stop(start)
        gc.collect()  # the garbage of the runs before is not collected inside this one's first epoch
        t0 = time.perf_counter()
        model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, verbose=0,
                  callbacks=[start, *extra, stop])
        return stop.times, time.perf_counter() - t0

    out: dict[str, Any] = {}
    for name in args.models:
        hidden = MODELS[name]
        probe = build(hidden, "q")
        hgq_fpga.calibrate(probe, data.x_train)
        start_lut = hgq_fpga.estimate(probe).lut
        budget = 0.2 * start_lut
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in RUNS}
        for _ in range(args.repeats):
            for kind in RUNS:
                extra, cb = [], None
                if kind == "budget":
                    cb = hgq_fpga.ResourceBudget(lut=budget, calibration_data=data.x_train, sensitivities=False,
                                                 verbose=0, check_every="auto", schedule=Schedule(0.1, 0.2))
                    extra = [cb]
                times, wall = fit(build(hidden, kind), extra)
                run = {"epochs": times, "fit": wall}
                if cb is not None:
                    run["checks"] = len(cb.history)
                    run["projections"] = sum(h["projected_lut"] is not None for h in cb.history)
                    run["lut"] = cb.result.report.lut
                    run["steps"] = cb.steering.step.steps
                runs[kind].append(run)
        out[name] = {"start_lut": start_lut, "budget": budget, "runs": runs}
    return out


def _summary(results: dict[str, Any]) -> list[str]:
    lines = ["| backend | model | float epoch | free epoch | budget epoch | budget/free (all epochs) | free/float | "
             "first epoch free/float | checks | LUT / budget |", "|" + "---|" * 10]
    for backend, models in results.items():
        for name, m in models.items():
            runs = m["runs"]

            def steady(kind: str, i: int) -> float:
                return statistics.median(runs[kind][i]["epochs"][1:])

            def whole(kind: str, i: int) -> float:
                return sum(runs[kind][i]["epochs"][1:])

            n = len(runs["float"])
            bf = statistics.median(steady("budget", i) / steady("free", i) for i in range(n))
            bf_all = statistics.median(whole("budget", i) / whole("free", i) for i in range(n))
            ff = statistics.median(steady("free", i) / steady("float", i) for i in range(n))
            first = statistics.median(runs["free"][i]["epochs"][0] / runs["float"][i]["epochs"][0] for i in range(n))
            med = {k: statistics.median(steady(k, i) for i in range(n)) * 1e3 for k in RUNS}
            b = runs["budget"][0]
            lines.append(f"| {backend} | {name} | {med['float']:.0f} ms | {med['free']:.0f} ms | "
                         f"{med['budget']:.0f} ms | {bf:.2f} ({bf_all:.2f}) | {ff:.2f} | {first:.2f} | {b['checks']} "
                         f"({b['projections']} projected) | {b['lut']:.0f} / {m['budget']:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"],
                        choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    results = {}
    for backend in args.backends:
        cmd = [sys.executable, __file__, "--child", "--epochs", str(args.epochs), "--repeats", str(args.repeats),
               "--models", *args.models]
        done = subprocess.run(cmd, env=_pinned_env(backend), capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr[-3000:])
            return done.returncode
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{args.epochs} epochs, {args.repeats} repeats")
    print("\n".join(_summary(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
