"""Keras's asynchronous batch end and the budget on JAX: epochs with the batch end on its own thread and on the main one.

Run:  python benchmarks/batch_end.py [--models digits 64-256-256-10] [--rounds 2] [--epochs 20] [--hooked]

With no callback overriding ``on_train_batch_end``, Keras's JAX (and torch)
``fit`` hands each step's logs to a thread of its own, which turns them into
floats (waiting for the step) and calls the callbacks' batch ends there, so
that Python dispatches the next step meanwhile. A callback that overrides
``on_train_batch_end`` turns that off for the whole ``fit``: every batch end,
and the wait for the step's logs, then runs on the main thread.
``ResourceBudget`` runs its rule in ``on_train_batch_begin`` to keep the thread.

For each model, in one process (JAX, everything on one thread: BLAS, OpenMP and
XLA's CPU client, as ``budget_training.py`` pins them), ``--rounds`` rounds of
four ``fit`` calls of ``--epochs`` epochs, in turns: the free quantized model and
the budgeted one (``ResourceBudget(lut=20% of its starting cost,
calibration_data=x_train, check_every="auto", schedule=Schedule(0.1, 0.2))``),
each with Keras's batch-end thread (``async``) and with a callback that only
overrides ``on_train_batch_end`` (``main``). ``--hooked`` adds the same budget with its
per-batch rule switched off (``hooked``: the hook attached and the training step traced with
it, no reads, no steps; what the hook costs in the step and in Keras's loop around it).
Printed: the median of the
bits-phase epochs (3 to 14 of 20; the same epochs of the free runs), per round,
in ms. Model building, calibration and the budget's probe estimate are outside
the timed epochs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
os.environ["PJRT_NPROC"] = "1"  # XLA's CPU pool on one thread (see budget_training.py)
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import keras  # noqa: E402

import hgq_fpga  # noqa: E402
from hgq_fpga.constraints.schedule import Schedule  # noqa: E402
from hgq_fpga.datasets import digits  # noqa: E402
from hgq_fpga.layers import QDense  # noqa: E402

MODELS = {"digits": (64, 32, 32), "64-256-256-10": (256, 256)}
KINDS = (("free", "async"), ("free", "main"), ("budget", "async"), ("budget", "main"))


class Clock(keras.callbacks.Callback):
    """Each epoch's time, from before every callback's ``on_epoch_begin`` (first in the list) ..."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.t0 = time.perf_counter()


class Stop(keras.callbacks.Callback):
    """... to after every callback's ``on_epoch_end`` (last in the list), in ms."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock, self.times = clock, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.times.append(1e3 * (time.perf_counter() - self.clock.t0))


class MainThreadBatchEnd(keras.callbacks.Callback):
    """Overrides ``on_train_batch_end`` (and does nothing): Keras then runs every batch end on the main thread."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass


def build(hidden: tuple[int, ...]) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), *[QDense(n, activation="relu") for n in hidden], QDense(10)])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class Hooked(hgq_fpga.ResourceBudget):
    """The budget with its per-batch rule switched off (no reads, no steps; the hook stays on)."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.steering.after_batch = lambda *args, **kwargs: None


def one_fit(hidden: tuple[int, ...], kind: str, batch_end: str, epochs: int, data, budget: float) -> list[float]:
    """The epoch times (ms) of one ``fit``."""
    model = build(hidden)
    clock = Clock()
    stop = Stop(clock)
    callbacks: list[keras.callbacks.Callback] = [clock]
    if kind in ("budget", "hooked"):
        kind_class = hgq_fpga.ResourceBudget if kind == "budget" else Hooked
        callbacks.append(kind_class(lut=budget, calibration_data=data.x_train, sensitivities=False,
                                    verbose=0, check_every="auto", schedule=Schedule(0.1, 0.2)))
    callbacks.append(stop)
    if batch_end == "main":
        callbacks.append(MainThreadBatchEnd())
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    return stop.times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hooked", action="store_true", help="also the budget with its per-batch rule off")
    args = parser.parse_args(argv)
    kinds = KINDS + ((("hooked", "async"), ("hooked", "main")) if args.hooked else ())
    if keras.backend.backend() != "jax":
        raise SystemExit(f"batch_end: measures JAX's fit; KERAS_BACKEND is {keras.backend.backend()!r}")
    data = digits(seed=0)
    warm, bits, _ = Schedule(0.1, 0.2).phases(args.epochs)
    span = slice(warm + 1, warm + bits - 1)  # the bits epochs, less the first (a compile) and the last (a check)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; JAX on one thread; {args.epochs} epochs, "
          f"epochs {span.start + 1}-{span.stop} (the bits phase's) timed, {args.rounds} rounds")
    print("| model | " + " | ".join(f"{k}, {b}" for k, b in kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for name in args.models:
        hidden = MODELS[name]
        probe = build(hidden)
        hgq_fpga.calibrate(probe, data.x_train)
        budget = 0.2 * hgq_fpga.estimate(probe).lut
        medians: dict[tuple[str, str], list[float]] = {k: [] for k in kinds}
        for r in range(args.rounds):
            order = kinds if r % 2 == 0 else tuple(reversed(kinds))  # (each kind first in turn)
            for kind, batch_end in order:
                times = one_fit(hidden, kind, batch_end, args.epochs, data, budget)
                medians[(kind, batch_end)].append(statistics.median(times[span]))
        print(f"| {name} | " + " | ".join(", ".join(f"{m:.1f}" for m in medians[k]) for k in kinds) + " |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
