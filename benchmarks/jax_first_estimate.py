"""The first ``estimate`` in a JAX process: firmware weights read in numpy against the backend's eager operations.

Run:  python benchmarks/jax_first_estimate.py [--repeats 3] [--model digits|64-256-256-10|digits-bn]

Each run is a fresh process on the JAX backend (BLAS, OpenMP and XLA's CPU client on one
thread, no persistent compilation cache), in turns: ``numpy`` as the frontend reads a layer's
quantized weights now (:meth:`~hgq_fpga.quantizers.WeightQuantizer.firmware_values` and
``f_exact_array``, numpy); ``backend`` with those two replaced by the backend's operations,
as the frontend read them before (``quantize_values`` and ``f_exact``: on JAX eager, each
operation compiled for each shape it meets), and a batch normalization's scale and offset read
as its ``qkernel`` and ``qbias`` (each folded and quantized eagerly) instead of
:meth:`~hgq_fpga.layers.QBatchNormalization.firmware_values` (one fold, quantized in numpy).
``digits-bn`` is the digits MLP with a batch normalization after each hidden dense layer
(``QDense(64)``, ``QBatchNormalization``, ReLU, ``QDense(32)``, ``QBatchNormalization``, ReLU,
``QDense(10)``). The model (seed 0, trained one epoch on 256
digits samples) is calibrated first, so that the calibration's own compilation is not
counted; then :func:`hgq_fpga.estimate` is timed: the first call, and the median of five
later ones. Both kinds are checked to give the same LUTs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from jax_children import parse_and_run

MODELS = {"digits": (64, 32, 32), "64-256-256-10": (256, 256), "digits-bn": (64, 32)}
KINDS = ("numpy", "backend")
TAG = "@@jax_first_estimate"


def _child(kind: str, model_name: str) -> dict[str, Any]:
    import keras
    import numpy as np
    from keras import ops

    import hgq_fpga
    from hgq_fpga.datasets import digits
    from hgq_fpga.layers import QActivation, QBatchNormalization, QDense
    from hgq_fpga.quantizers import WeightQuantizer

    if kind == "backend":  # the frontend's reads as they were: the backend's operations, eagerly
        WeightQuantizer.firmware_values = lambda self, w: np.asarray(ops.convert_to_numpy(self.quantize_values(w)))
        WeightQuantizer.f_exact_array = lambda self: np.asarray(ops.convert_to_numpy(self.f_exact()), np.float64)
        QBatchNormalization.firmware_values = lambda self: tuple(
            np.asarray(ops.convert_to_numpy(v)) for v in (self.qkernel, self.qbias))
    data = digits(seed=0)
    keras.utils.set_random_seed(0)
    if model_name == "digits-bn":
        body = [layer for n in MODELS[model_name] for layer in (QDense(n), QBatchNormalization(), QActivation("relu"))]
    else:
        body = [QDense(n, activation="relu") for n in MODELS[model_name]]
    model = keras.Sequential([keras.Input((64,)), *body, QDense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train[:256], data.y_train[:256], epochs=1, batch_size=32, verbose=0)
    hgq_fpga.calibrate(model, data.x_train)
    times, luts = [], set()
    for _ in range(6):
        t = time.perf_counter()
        luts.add(hgq_fpga.estimate(model).lut)
        times.append(time.perf_counter() - t)
    return {"first": times[0], "later": statistics.median(times[1:]), "luts": sorted(luts)}


def main(argv: list[str] | None = None) -> int:
    done = parse_and_run(__doc__, __file__, KINDS, list(MODELS), TAG, _child, argv)
    if done is None:  # (a child)
        return 0
    args, runs = done
    luts = {tuple(r["luts"]) for rs in runs.values() for r in rs}
    if len(luts) != 1:
        raise SystemExit(f"jax_first_estimate: the two kinds estimated different LUTs: {sorted(luts)}")
    print(f"{args.model} model, {args.repeats} repeats in turns, medians (s); LUT {luts.pop()[0]:,.0f} in every run:")
    print("| weights read by | first estimate | later estimates |\n|---|---|---|")
    for kind in KINDS:
        med = {k: statistics.median(r[k] for r in runs[kind]) for k in ("first", "later")}
        print(f"| {kind} | {med['first']:.2f} | {med['later']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
