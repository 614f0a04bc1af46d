"""What a LUT budget costs in training time: float, quantized and budgeted epochs, per Keras backend.

Run:  python benchmarks/budget_training.py [--backends tensorflow jax torch] [--epochs 10] [--repeats 3]
                                           [--models digits 64-256-256-10] [--json out.json]

For each backend, model and repeat, four runs train in four processes, in
turns (the backend is chosen at import), on the digits training split
(1,257 samples, batch 32, Adam 3e-3):

* ``float``: the same architecture with plain Keras ``Dense`` layers;
* ``free``: hgq_fpga's quantized model (``QDense``), no budget;
* ``control``: the same as ``free``, in its own process: ``control / free`` is the
  noise floor of the ratios (two identical runs; on this VM it has been as far as 1.35
  from 1, where processes settle into faster and slower states that last the whole run);
* ``budget``: the quantized model with ``ResourceBudget(lut=20% of its
  starting cost, calibration_data=x_train, check_every="auto",
  schedule=Schedule(0.1, 0.2))`` (the options that make it fast: checks take at
  most 10% of the time, and no cost is computed while the bits are frozen) and
  the default rule, sensitivities off (they run after the last epoch).

**In lockstep**: the four processes take turns, one epoch each (float, free,
control, budget, then the next epoch), and only the one whose turn it is computes; the
others wait on a pipe. Everything between two turns (model building, the
budget's checks, its final repair after the last epoch) runs alone as well.
The speed of this shared 2-core VM drifts: the same free epoch of the
64-256-256-10 MLP took 110 ms for a whole run and 200 ms for the next two
(2026-12-03; CPU time alike, so not the threads' scheduling), and runs one
after the other put that drift into the ratios (a budget/free of 1.07 in one
run, 1.37 in the next). Epochs a third of a second apart see the same machine.

An epoch's time is taken from before every callback's ``on_epoch_begin`` to
after every callback's ``on_epoch_end``, so the budget's checks and
projections count. Reported per model, the medians over the repeats of:

* ``budget / free``: the median epoch after the first (target <= 1.2), and in
  brackets the sum of those epochs (the checks included: they run after some
  epochs only);
* ``batches: budget / free``: the same for the epochs' batches alone (from the first batch's
  start to the first ``on_epoch_end``: the budget's per-batch rule in, its checks, projections
  and epoch-boundary work out);
* ``fine-tune: budget / free``: the median of the fine-tune epochs' batches alone (the bits frozen,
  the budget's callback idle between the epochs' ends; the checks at those ends, the last epoch's and
  any that ``check_every="auto"`` allows, left out: with them in, two checks among four fine-tune
  epochs put TensorFlow's digits MLP at 2.15);
* ``whole fit: budget / free``: ``fit`` from its call to its return, the turns' waits left out:
  the first epoch, the budget's ``on_train_begin`` (compiling its reads) and ``on_train_end``
  (the final check, the kept epoch's weights) as well: what a user waits for;
* ``control / free``: the same for two identical runs (the noise floor);
* ``free / float``: the median epoch of the quantized model over the float one (the
  train-step ratio; target <= 1.4 on TensorFlow);
* ``first epoch, free / float``: the first epoch, tracing included (target <= 2).

Every child computes on one thread: BLAS and OpenMP (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``), TensorFlow's op pools
(``TF_NUM_INTRAOP_THREADS``, ``TF_NUM_INTEROP_THREADS``) and XLA's CPU client on JAX
(``PJRT_NPROC=1``: the size of its pool; ``XLA_FLAGS``): with TensorFlow's default pools on
this shared 2-core machine, one epoch in four or so took twice as long as the others, in
every kind of run alike; with JAX's (two threads here), the quantized 64-256-256-10 MLP's
epoch took 23 ms to 135 ms from one process to the next (its two pool threads ran the
step's independent kernels side by side and spun while waiting; the CPU time was 1.6x the
wall time), 20-25 ms in every process with one. Before each
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
import tempfile
import time
from pathlib import Path
from typing import Any

MODELS = {"digits": (64, 32, 32), "64-256-256-10": (256, 256)}
RUNS = ("float", "free", "control", "budget")
#: a child's lines to the parent: "<TAG> wait" before each turn, "<TAG> result <json>" at the end
TAG = "@@budget_training"


def _pinned_env(backend: str) -> dict[str, str]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
              "TF_NUM_INTEROP_THREADS"):
        env[k] = "1"
    # JAX: XLA's CPU client on one thread as well. Its pool of threads is sized by PJRT_NPROC (by
    # default one a core); XLA_FLAGS's --xla_cpu_multi_thread_eigen=false alone leaves two threads that
    # run the step's independent kernels side by side and spin while they wait
    env["PJRT_NPROC"] = "1"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


#: seconds this child spent waiting for its turns (:func:`_turn`)
WAITED = [0.0]


def _turn() -> None:
    """Wait for this child's turn (the parent's ``go`` on stdin)."""
    t0 = time.perf_counter()
    print(f"{TAG} wait", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("budget_training: the parent went away")
    WAITED[0] += time.perf_counter() - t0


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """One run (``args.kind``) of one model on the current backend, in turns with its siblings."""
    _turn()  # (building, calibrating and estimating run alone too)
    import keras

    import hgq_fpga
    from hgq_fpga.constraints.schedule import Schedule
    from hgq_fpga.datasets import digits
    from hgq_fpga.layers import QDense

    class Turns(keras.callbacks.Callback):
        """First callback: waits for the turn, then starts the epoch's clock; times each epoch's
        batches (from the first one's start to the first ``on_epoch_end``: the other callbacks'
        epoch-boundary work, a budget's checks and projections, left out)."""

        def __init__(self) -> None:
            super().__init__()
            self.batches: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            _turn()
            self.t0 = time.perf_counter()
            self.batch0: float | None = None

        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            if self.batch0 is None:
                self.batch0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.batches.append(time.perf_counter() - (self.batch0 or self.t0))

    class Stop(keras.callbacks.Callback):
        def __init__(self, start: Turns) -> None:
            super().__init__()
            self.start, self.times = start, []

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.times.append(time.perf_counter() - self.start.t0)

    data = digits(seed=0)
    hidden = MODELS[args.model]

    def build(kind: str) -> keras.Model:
        keras.utils.set_random_seed(0)
        layer = (lambda n, **kw: keras.layers.Dense(n, **kw)) if kind == "float" else QDense
        body = [layer(n, activation="relu") for n in hidden]
        model = keras.Sequential([keras.Input((64,)), *body, layer(10)])
        model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    extra: list[Any] = []
    run: dict[str, Any] = {}
    if args.kind == "budget":
        probe = build("q")
        hgq_fpga.calibrate(probe, data.x_train)
        run["start_lut"] = hgq_fpga.estimate(probe).lut
        run["budget"] = 0.2 * run["start_lut"]
        extra = [hgq_fpga.ResourceBudget(lut=run["budget"], calibration_data=data.x_train, sensitivities=False,
                                         verbose=0, check_every="auto", schedule=Schedule(0.1, 0.2))]
    model = build(args.kind)
    start = Turns()
    stop = Stop(start)
    gc.collect()  # the garbage of building is not collected inside the first epoch
    t0, waited = time.perf_counter(), WAITED[0]
    model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, verbose=0,
              callbacks=[start, *extra, stop])
    run["fit"] = time.perf_counter() - t0 - (WAITED[0] - waited)  # (the turns' waits out)
    run["epochs"] = stop.times
    run["batches"] = start.batches
    if extra:
        cb = extra[0]
        run["checks"] = len(cb.history)
        run["projections"] = sum(h["projected_lut"] is not None for h in cb.history)
        run["lut"] = cb.result.report.lut
        run["steps"] = cb.steering.step.steps
        run["phases"] = [cb.phase(e) for e in range(args.epochs)]  # each epoch's phase of the schedule
    return run


def _lockstep(backend: str, model: str, epochs: int) -> dict[str, dict[str, Any]]:
    """The runs of ``model``, in turns (:func:`_turn`); their results by kind."""
    cmd = [sys.executable, __file__, "--model", model, "--epochs", str(epochs), "--kind"]
    logs = {kind: tempfile.TemporaryFile("w+") for kind in RUNS}  # (a full stderr pipe would block a child)
    procs = {kind: subprocess.Popen([*cmd, kind], env=_pinned_env(backend), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=logs[kind], text=True) for kind in RUNS}
    results: dict[str, dict[str, Any]] = {}
    try:
        for kind, p in procs.items():  # each one to its first turn (its imports run side by side)
            _until_turn(kind, p, logs[kind])
        while len(results) < len(procs):
            for kind, p in procs.items():
                if kind in results:
                    continue
                p.stdin.write("go\n")
                p.stdin.flush()
                done = _until_turn(kind, p, logs[kind])
                if done is not None:
                    results[kind] = done
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        for log in logs.values():
            log.close()
    return results


def _until_turn(kind: str, p: subprocess.Popen, log: Any) -> dict[str, Any] | None:
    """Read ``p``'s lines until it waits for a turn (None) or gives its result."""
    for line in p.stdout:
        if line.startswith(f"{TAG} wait"):
            return None
        if line.startswith(f"{TAG} result "):
            return json.loads(line[len(TAG) + 8:])
    p.wait()
    log.seek(0)
    raise RuntimeError(f"budget_training: the {kind} run failed (exit {p.returncode}):\n{log.read()[-3000:]}")


def _summary(results: dict[str, Any]) -> list[str]:
    lines = ["| backend | model | float epoch | free epoch | budget epoch | budget/free (all epochs) | batches: "
             "budget/free | fine-tune: budget/free | whole fit: budget/free | control/free | free/float | "
             "first epoch free/float | checks | LUT / budget |",
             "|" + "---|" * 14]
    for backend, models in results.items():
        for name, repeats in models.items():
            def steady(kind: str, i: int, key: str = "epochs", phase: str | None = None) -> float:
                run = repeats[i][kind]
                phases = repeats[i]["budget"]["phases"]
                return statistics.median(t for e, t in enumerate(run[key]) if e > 0 and phase in (None, phases[e]))

            def whole(kind: str, i: int) -> float:
                return sum(repeats[i][kind]["epochs"][1:])

            def ratio(a: str, b: str, **kw: Any) -> float:
                return statistics.median(steady(a, i, **kw) / steady(b, i, **kw) for i in range(len(repeats)))

            n = len(repeats)
            bf_all = statistics.median(whole("budget", i) / whole("free", i) for i in range(n))
            fit = statistics.median(repeats[i]["budget"]["fit"] / repeats[i]["free"]["fit"] for i in range(n))
            first = statistics.median(repeats[i]["free"]["epochs"][0] / repeats[i]["float"]["epochs"][0]
                                      for i in range(n))
            med = {k: statistics.median(steady(k, i) for i in range(n)) * 1e3 for k in RUNS}
            b = repeats[0]["budget"]
            lines.append(f"| {backend} | {name} | {med['float']:.0f} ms | {med['free']:.0f} ms | "
                         f"{med['budget']:.0f} ms | {ratio('budget', 'free'):.2f} ({bf_all:.2f}) | "
                         f"{ratio('budget', 'free', key='batches'):.2f} | "
                         f"{ratio('budget', 'free', key='batches', phase='fine-tune'):.2f} | {fit:.2f} | "
                         f"{ratio('control', 'free'):.2f} | {ratio('free', 'float'):.2f} | {first:.2f} | "
                         f"{b['checks']} ({b['projections']} projected) | {b['lut']:.0f} / {b['budget']:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"],
                        choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--kind", choices=RUNS, help=argparse.SUPPRESS)  # (a child: one run)
    parser.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.kind:
        print(f"{TAG} result {json.dumps(_child(args))}", flush=True)
        return 0
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for backend in args.backends:
        results[backend] = {name: [_lockstep(backend, name, args.epochs) for _ in range(args.repeats)]
                            for name in args.models}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{args.epochs} epochs, {args.repeats} repeats, in lockstep")
    print("\n".join(_summary(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
