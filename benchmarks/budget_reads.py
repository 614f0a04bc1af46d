"""What one read of a budgeted model's cost takes (``SoftCost.luts``), per backend and model.

Run:  python benchmarks/budget_reads.py [--backends tensorflow jax] [--repeats 7] [--calls 100]

A read is what :class:`~hgq_fpga.constraints.ResourceBudget`'s training rule does between
training steps (about twelve a bits epoch near the budget): each hooked layer's differentiable
LUTs, value only, from the variables' current values, compiled (XLA on TensorFlow and JAX), and
brought back as numpy. The models of ``benchmarks/budget_training.py`` (the digits MLP
64-64-32-32-10 and a 64-256-256-10 MLP), trained one epoch on the digits split (batch 32, Adam)
so that the bits and weights are not their initial values. Reported per model: the best and the
median of ``--repeats`` blocks of ``--calls`` reads, in microseconds a read, for the unshifted
read (the bits as they are: the reads between steps) and the shifted one (bits lowered by one,
:class:`~hgq_fpga.constraints.step.BudgetStep`'s measurement), blocks alternating.

Each backend runs in its own process, with BLAS, OpenMP, TensorFlow's pools and JAX's CPU
client (``PJRT_NPROC``) pinned to one thread. Keep the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

MODELS = {"digits MLP": (64, 32, 32), "64-256-256-10": (256, 256)}
PINNED = {key: "1" for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "PJRT_NPROC")}


def _child(repeats: int, calls: int) -> dict[str, Any]:
    """In the backend's own process: the read times of each model."""
    import time

    import keras
    import numpy as np

    from hgq_fpga.constraints.hook import CostHook, attach
    from hgq_fpga.constraints.softcost import SoftCost
    from hgq_fpga.datasets import digits
    from hgq_fpga.layers import QDense

    data = digits(seed=0)
    out: dict[str, Any] = {}
    for name, hidden in MODELS.items():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), *[QDense(n, activation="relu") for n in hidden], QDense(10)])
        model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(data.x_train, data.y_train, epochs=1, batch_size=32, verbose=0)
        attach(model, CostHook(1.0, model))
        soft = SoftCost(model)
        times: dict[str, list[float]] = {"unshifted": [], "shifted by 1": []}
        for shift in (0.0, 1.0):
            soft.luts(shift)  # compiled here
        for _ in range(repeats):
            for label, shift in (("unshifted", 0.0), ("shifted by 1", 1.0)):
                start = time.perf_counter()
                for _ in range(calls):
                    soft.luts(shift)
                times[label].append((time.perf_counter() - start) / calls * 1e6)
        out[name] = {label: {"best_us": float(np.min(t)), "median_us": float(np.median(t))}
                     for label, t in times.items()}
        out[name]["luts"] = float(soft.luts(0.0).sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"], choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.repeats, args.calls)))
        return
    print("| backend | model | read, unshifted (best / median) | shifted by 1 (best / median) |")
    print("|---|---|---|---|")
    for backend in args.backends:
        env = {**os.environ, **PINNED, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run([sys.executable, __file__, "--child", "--repeats", str(args.repeats),
                               "--calls", str(args.calls)], env=env, capture_output=True, text=True, check=True)
        for name, row in json.loads(done.stdout.strip().splitlines()[-1]).items():
            cells = [f"{row[k]['best_us']:.0f} / {row[k]['median_us']:.0f} us" for k in ("unshifted", "shifted by 1")]
            print(f"| {backend} | {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
