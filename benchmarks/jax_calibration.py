"""Calibration on JAX: one compiled pass against eager calls, first call in a process and later ones.

Run:  python benchmarks/jax_calibration.py [--repeats 3] [--model digits|64-256-256-10]

Each run is a fresh process on the JAX backend (BLAS, OpenMP and XLA's CPU client on one
thread), in turns, each calling :func:`hgq_fpga.calibrate`: ``compiled`` as it is (on JAX
a ``jax.jit`` of the model's stateless call, every batch the same shape); ``eager`` with its
forward passes replaced by eager calls of the model on each batch of 1,024 samples, as
calibrate ran them before (JAX compiles each operation for each shape it meets; the
replaced function is the private ``hgq_fpga.calibration._record_compiled``). Both run on the digits training split
(1,257 samples: a batch of 1,024 and one of 233) and are checked to record the same
ranges. Reported per kind, the medians over the repeats of: the first call in the process
(compilation included), the median of five later calls, and the first
:func:`~hgq_fpga.constraints.repair.repair_to_budget` of the calibrated model to 20% of its
LUTs (its probe of the layers' inputs and its recalibrations).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from jax_children import parse_and_run

MODELS = {"digits": (64, 32, 32), "64-256-256-10": (256, 256)}
KINDS = ("compiled", "eager")
TAG = "@@jax_calibration"


def _child(kind: str, model_name: str) -> dict[str, Any]:
    import keras
    import numpy as np
    from keras import ops

    import hgq_fpga
    from hgq_fpga.calibration import BATCH_SIZE, iter_quantizers
    from hgq_fpga.constraints.repair import repair_to_budget
    from hgq_fpga.datasets import digits
    from hgq_fpga.layers import QDense
    from hgq_fpga.quantizers import ActivationQuantizer

    data = digits(seed=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), *[QDense(n, activation="relu") for n in MODELS[model_name]],
                              QDense(10)])
    quantizers = [q for _, q in iter_quantizers(model) if isinstance(q, ActivationQuantizer)]

    def eager_passes(model: Any, arrays: list[Any], starts: Any, size: int) -> None:
        for s in starts:
            batch = [a[s:s + BATCH_SIZE] for a in arrays]
            model(batch if len(batch) > 1 else batch[0], training=False)

    if kind == "eager":  # calibrate() as it was before: its passes eager, the rest the same
        hgq_fpga.calibration._record_compiled = eager_passes

    def run() -> None:
        hgq_fpga.calibrate(model, data.x_train)

    times = []
    for _ in range(6):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    ranges = float(sum(np.sum(ops.convert_to_numpy(v)) for q in quantizers for v in (q.vmin, q.vmax)))
    lut = hgq_fpga.estimate(model).lut
    t = time.perf_counter()
    repair_to_budget(model, data.x_train, lut=0.2 * lut)
    repair = time.perf_counter() - t
    return {"first": times[0], "later": statistics.median(times[1:]), "repair": repair, "ranges": ranges}


def main(argv: list[str] | None = None) -> int:
    done = parse_and_run(__doc__, __file__, KINDS, list(MODELS), TAG, _child, argv)
    if done is None:  # (a child)
        return 0
    args, runs = done
    ranges = {r["ranges"] for rs in runs.values() for r in rs}
    if len(ranges) != 1:
        raise SystemExit(f"jax_calibration: the two kinds recorded different ranges: {sorted(ranges)}")
    print(f"{args.model} MLP, {args.repeats} repeats in turns, medians (s):")
    print("| calibration | first call | later calls | first repair to 20% |\n|---|---|---|---|")
    for kind in KINDS:
        med = {k: statistics.median(r[k] for r in runs[kind]) for k in ("first", "later", "repair")}
        print(f"| {kind} | {med['first']:.2f} | {med['later']:.3f} | {med['repair']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
