"""What frozen bits would save if the training step left them out: epochs with the bits untrainable.

Run:  python benchmarks/frozen_bits.py [--models digits 64-256-256-10] [--rounds 3] [--epochs 8]

``ResourceBudget`` freezes the fractional bits in its warm-up and fine-tune
phases (``Schedule``): the training step it traced for the bits phase goes on,
with the bits' gradient scaled by 0 and their optimizer slots zeroed, so that
their update is exactly 0 (``BitFreeze``). A step that left them out (the bits
untrainable) would not compute that gradient nor the optimizer's update of
them, but it is another trace: Keras traces a new step when the trainable
variables change, and on JAX its optimizer's stateless update takes every
variable it was built with (it cannot be given fewer).

For each model, in one process (the backend from ``KERAS_BACKEND``; BLAS,
OpenMP, TensorFlow's op pools and XLA's CPU client on one thread, as
``budget_training.py`` pins them), two quantized models (``QDense``, digits
training split, batch 32, Adam 3e-3): ``trainable`` (the bits learn) and
``frozen`` (each layer's packed bits made untrainable before ``compile``).
``--rounds`` rounds of one ``fit`` of ``--epochs`` epochs each, in turns.
Printed per model: the median epoch after the first of each (medians over the
rounds), their ratio ``frozen / trainable``, and the first epoch's excess over
the median (the trace and compile) of the ``frozen`` model: what switching to
such a step would cost once a fit; ``break-even`` is the number of frozen
epochs after which the saving would pay for it.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
           "TF_NUM_INTEROP_THREADS"):
    os.environ[_v] = "1"
os.environ["PJRT_NPROC"] = "1"  # XLA's CPU pool on one thread (see budget_training.py)
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import keras  # noqa: E402
from train_overhead import EpochTimer  # noqa: E402  (each epoch's wall time)

from hgq_fpga.datasets import digits  # noqa: E402
from hgq_fpga.layers import QDense  # noqa: E402

MODELS = {"digits": (64, 32, 32), "64-256-256-10": (256, 256)}
KINDS = ("trainable", "frozen")


def build(hidden: tuple[int, ...], frozen: bool) -> keras.Model:
    """The quantized MLP; ``frozen``: its layers' packed bits untrainable."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), *[QDense(n, activation="relu") for n in hidden], QDense(10)])
    if frozen:
        for layer in model.layers:
            if getattr(layer, "bits_pack", None) is not None:
                layer.bits_pack.trainable = False
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def measure(hidden: tuple[int, ...], rounds: int, epochs: int) -> dict[str, dict[str, float]]:
    """Per kind: the median epoch after the first and the first epoch's excess over it (medians over rounds)."""
    data = digits(seed=0)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
    for _ in range(rounds):
        for kind in KINDS:
            model = build(hidden, kind == "frozen")  # (a fresh model: its first epoch traces the step)
            clock = EpochTimer()
            gc.collect()
            model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=[clock])
            steady = statistics.median(clock.times[1:])
            runs[kind].append((steady, clock.times[0] - steady))
    return {k: {"epoch": statistics.median(s for s, _ in v), "trace": statistics.median(t for _, t in v)}
            for k, v in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.epochs < 3:
        parser.error(f"--rounds must be >= 1 and --epochs >= 3; received --rounds {args.rounds} "
                     f"--epochs {args.epochs}")
    print(f"backend {keras.backend.backend()}, {args.rounds} rounds of {args.epochs} epochs, one thread")
    for name in args.models:
        r = measure(MODELS[name], args.rounds, args.epochs)
        t, f = r["trainable"], r["frozen"]
        saving = t["epoch"] - f["epoch"]
        even = f"{f['trace'] / saving:.0f} epochs" if saving > 0 else "never (no saving)"
        print(f"{name}: epoch trainable {t['epoch'] * 1e3:.1f} ms, frozen {f['epoch'] * 1e3:.1f} ms "
              f"(frozen / trainable {f['epoch'] / t['epoch']:.2f}); frozen step's trace {f['trace']:.2f} s; "
              f"break-even {even}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
