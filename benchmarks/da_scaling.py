"""How long ``estimate(strategy="distributed_arithmetic")`` takes on one dense layer.

Run:  python benchmarks/da_scaling.py [--sizes 64 196 392 784] [--outputs 20] [--reference 196]

Each layer is one calibrated ``QDense`` (``n_in`` x ``--outputs``) with random
weights of 3 to 8 fractional bits (a ``--zeros`` fraction of them 0), input
quantized to 6 bits in [-1, 1), calibrated on random data as
``hgq_fpga.testing.dense_layer_model`` does. The cost is the LUT count of the
adder graph hls4ml 1.3.0's distributed_arithmetic pass builds (da4ml 0.5.2's
solver; :mod:`hgq_fpga.resources.da`).

Reported per layer: the first estimate (the solver runs), the same estimate
again (pipeline and cost cached), the LUTs, the CMVM stages run and reused (da4ml
asks for a stage once per decomposition depth falling back to it), and the
process's peak RSS so far (Keras and TensorFlow included, about 0.9 GB). Before
the table a 16x4 layer is estimated once: numba compiles the solver there on a
machine's first run (half a minute; cached on disk after). ``--reference N`` also
runs hls4ml's own path (da4ml's ``solve`` through ``FixedVariableArray @
kernel``, then ``comb_trace``) for layers with ``n_in <= N`` and checks that its
cost is the estimate's.

BLAS and numba are pinned to one thread (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS`` set to 1
before any import unless already set), so the decomposition depths that da4ml
(and the estimate) solve in parallel run one after the other; run with
``NUMBA_NUM_THREADS=2`` to see two threads.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from hgq_fpga.startup import import_keras_quietly  # noqa: E402

keras = import_keras_quietly()

import hgq_fpga  # noqa: E402
from hgq_fpga.calibration import calibrate  # noqa: E402
from hgq_fpga.layers import QDense  # noqa: E402
from hgq_fpga.resources import da  # noqa: E402


def build(n_in: int, n_out: int, zeros: float, seed: int = 0) -> keras.Model:
    """A calibrated one-``QDense`` model: weights of 3-8 fractional bits, ``zeros`` of them 0."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(3, 9, size=(n_in, n_out))
    w = np.round(rng.uniform(-1, 1, size=(n_in, n_out)) * 2.0**bits) / 2.0**bits
    w[rng.random((n_in, n_out)) < zeros] = 0
    layer = QDense(n_out, input_quantizer={"f0": 5.0}, kernel_quantizer={"f0": 8.0}, bias_quantizer={"f0": 8.0})
    model = keras.Sequential([keras.Input((n_in,)), layer])
    layer.kernel.assign(w.astype("float32"))
    layer.bias.assign((np.round(rng.uniform(-1, 1, n_out) * 256) / 256).astype("float32"))
    x = rng.uniform(-1.0, 1.0, (512, n_in))
    x[:2] = [[-1.0] * n_in, [1.0 - 2.0**-5] * n_in]
    calibrate(model, x.astype("float32"))
    return model


def reference_cost(model: keras.Model) -> float:
    """hls4ml's own computation: da4ml's solver through ``FixedVariableArray @ kernel``."""
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace

    from hgq_fpga.ir import ops as ir
    from hgq_fpga.resources.analysis import analyze

    a = analyze(hgq_fpga.build_ir(model))
    op = next(n for n in a.graph.nodes if isinstance(n, ir.Dense))
    k, i, f = da.kernel_input_kif(a, op)
    options = {"hard_dc": int(os.environ.get("DA_HARD_DC", 2)), "search_all_decompose_dc": True}
    inp = FixedVariableArray.from_kif(k, i, f, HWConfig(1, -1, -1), solver_options=options)
    out = inp @ np.asarray(op.kernel.values, np.float64) + np.asarray(op.bias.values, np.float64)
    return float(comb_trace(inp, out).cost)


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def row(n_in: int, args: argparse.Namespace) -> dict:
    model = build(n_in, args.outputs, args.zeros)
    hgq_fpga.build_ir(model)  # the IR is cached per model: time the estimate itself
    da.STATS.clear()
    first, t1 = timed(lambda: hgq_fpga.estimate(model, strategy="distributed_arithmetic"))
    stats = dict(da.STATS)
    second, t2 = timed(lambda: hgq_fpga.estimate(model, strategy="distributed_arithmetic"))
    assert second.lut == first.lut
    return {"n_in": n_in, "layer": f"{n_in}x{args.outputs}", "first_s": t1, "again_s": t2, "lut": first.lut,
            "da": first.counts()["da"], "stages": stats.get("stages", 0), "reused": stats.get("stage_reuses", 0),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ref_s": None, "model": model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 196, 392, 784], help="inputs per layer")
    parser.add_argument("--outputs", type=int, default=20, help="outputs per layer")
    parser.add_argument("--zeros", type=float, default=0.2, help="fraction of zero weights")
    parser.add_argument("--reference", type=int, default=0, metavar="N",
                        help="also time hls4ml's own path (da4ml's solver) for n_in <= N, after the table's own "
                             "runs (its memory is not in their peak RSS), and check the costs agree")
    args = parser.parse_args()
    _, warm = timed(lambda: hgq_fpga.estimate(build(16, 4, args.zeros, seed=1), strategy="distributed_arithmetic"))
    rows = [row(n, args) for n in args.sizes]
    for r in rows:
        if r["n_in"] <= args.reference:
            ref, r["ref_s"] = timed(lambda: reference_cost(r["model"]))
            assert ref == r["da"], (ref, r["da"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numba threads {os.environ['NUMBA_NUM_THREADS']}; warm-up (16x4; numba compiles on a first run): "
          f"{warm:.1f} s")
    print(f"{'layer':<9} {'first s':>8} {'again s':>8} {'LUT':>8} {'stages':>7} {'reused':>7} {'peak RSS MB':>12} "
          f"{'hls4ml path s':>14}")
    for r in rows:
        ref = f"{r['ref_s']:.1f}" if r["ref_s"] is not None else "-"
        print(f"{r['layer']:<9} {r['first_s']:>8.2f} {r['again_s']:>8.2f} {r['lut']:>8.0f} {r['stages']:>7} "
              f"{r['reused']:>7} {r['rss_mb']:>12.0f} {ref:>14}")


if __name__ == "__main__":
    main()
