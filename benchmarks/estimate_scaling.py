"""How the exact estimate's time grows with the model: microseconds per multiplication.

Run:  python benchmarks/estimate_scaling.py [--repeats 3] [--json out.json]

MLPs from 16-16-5 (336 multiplications) to 64-256-256-10 (84,480), each with
random weights at 3 to 8 bits (20% zeros) and calibrated on random inputs,
are estimated with ``hgq_fpga.estimate`` (Latency strategy, as users call it;
the IR comes from the per-model cache, built once before timing). Reported per
model: multiplications, the best of ``--repeats`` times, and microseconds per
multiplication; the ratio of the largest model's figure to the smallest's
tells whether the time is linear. Each timed estimate starts from an empty
adder-tree cache (:func:`hgq_fpga.resources.circuit.clear_cache`) and is
taken twice in turns: with the dense layers' trees counted by compiled code
(:mod:`hgq_fpga.resources.tree_counts`, what users get) and with the Python
trees it stands in for (as under ``NUMBA_DISABLE_JIT``); the two reports must
be the same. "again" is the best time of an estimate of the same model right
after one (every tree from the cache), "one layer changed" of one after the
last layer's weights were all one fractional bit shorter (the model
calibrated again; what a repair round or a layer sensitivity asks). numba's
compiled functions are loaded (or compiled, the first time after an
installation: about 5 s, then cached on disk) before any timing. BLAS is
pinned to one thread (``OPENBLAS_NUM_THREADS=1``); the estimate is one thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from hgq_fpga.startup import import_keras_quietly  # noqa: E402

keras = import_keras_quietly()

import hgq_fpga  # noqa: E402
from hgq_fpga.layers import QDense  # noqa: E402
from hgq_fpga.resources import tree_counts  # noqa: E402
from hgq_fpga.resources.circuit import clear_cache  # noqa: E402

_COMPILED = tree_counts.compiled

SHAPES = [(16, 16, 5), (64, 64, 32, 32, 10), (16, 64, 32, 32, 5), (64, 128, 128, 10), (64, 256, 256, 10)]


def build(widths: tuple[int, ...], seed: int = 0) -> tuple[keras.Model, int, np.ndarray]:
    """A calibrated MLP with random weights of 3-8 bits (20% zero); its number of multiplications; the
    calibration inputs."""
    rng = np.random.default_rng(seed)
    layers = [QDense(w, activation="relu" if i < len(widths) - 2 else None) for i, w in enumerate(widths[1:])]
    model = keras.Sequential([keras.Input((widths[0],)), *layers])
    x = rng.standard_normal((256, widths[0])).astype("float32")
    model(x[:2])
    for layer in layers:
        k = layer.kernel.shape
        bits = rng.integers(3, 9, size=k)
        w = np.round(rng.uniform(-1, 1, size=k) * 2.0**bits) / 2.0**bits
        layer.kernel.assign((w * (rng.random(k) > 0.2)).astype("float32"))
    hgq_fpga.calibrate(model, x)
    return model, sum(int(np.prod(layer.kernel.shape)) for layer in layers), x


def _one_layer_changed(model: keras.Model, x: np.ndarray, repeats: int) -> float:
    """Best time of an estimate right after one of the model as it is, the last layer's weights
    one fractional bit shorter (calibrated again, untimed)."""
    kq = model.layers[-1].kernel_quantizer
    f0 = np.array(keras.ops.convert_to_numpy(kq.f_value()))
    times = []
    for _ in range(repeats):
        clear_cache()
        hgq_fpga.estimate(model)
        kq.set_f(f0 - 1.0)
        hgq_fpga.calibrate(model, x)
        t0 = time.perf_counter()
        hgq_fpga.estimate(model)
        times.append(time.perf_counter() - t0)
        kq.set_f(f0)
        hgq_fpga.calibrate(model, x)
    return min(times)


def _estimate(model: keras.Model, counted: bool) -> tuple[float, Any]:
    """One estimate from an empty cache, with the compiled tree counts or the Python trees: (seconds, report)."""
    tree_counts.compiled = (lambda: True) if counted else (lambda: False)
    try:
        clear_cache()
        t0 = time.perf_counter()
        report = hgq_fpga.estimate(model)
        return time.perf_counter() - t0, report
    finally:
        tree_counts.compiled = _COMPILED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    if not _COMPILED():
        raise SystemExit("estimate_scaling: numba does not compile here (NUMBA_DISABLE_JIT is set); unset it")
    _estimate(build((4, 4, 2))[0], True)  # (numba's compiled functions loaded, or compiled once, untimed)
    rows = []
    for widths in SHAPES:
        model, mults, x = build(widths)
        hgq_fpga.build_ir(model)  # the IR is cached per model; time the estimate itself
        times, python, again = [], [], []
        for _ in range(args.repeats):  # the two ways in turns
            t, report = _estimate(model, True)
            times.append(t)
            t0 = time.perf_counter()
            hgq_fpga.estimate(model)
            again.append(time.perf_counter() - t0)
            t, slow = _estimate(model, False)
            python.append(t)
            if slow.to_dict() != report.to_dict():
                raise SystemExit(f"estimate_scaling: {widths}: the compiled counts and the Python trees differ")
        best = min(times)
        rows.append({"model": "-".join(map(str, widths)), "mults": mults, "seconds": best,
                     "us_per_mult": 1e6 * best / mults, "python_seconds": min(python),
                     "python_us_per_mult": 1e6 * min(python) / mults, "lut": report.lut, "again": min(again),
                     "one_layer": _one_layer_changed(model, x, args.repeats)})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"best of {args.repeats}")
    print(f"{'model':<18} {'mults':>7} {'seconds':>8} {'us/mult':>8} {'Python trees, s':>16} {'us/mult':>8} "
          f"{'ratio':>6} {'LUT':>9} {'again':>8} {'one layer changed':>18}")
    for r in rows:
        print(f"{r['model']:<18} {r['mults']:>7} {r['seconds']:>8.3f} {r['us_per_mult']:>8.1f} "
              f"{r['python_seconds']:>16.3f} {r['python_us_per_mult']:>8.1f} "
              f"{r['python_seconds'] / r['seconds']:>6.1f} {r['lut']:>9.0f} {r['again']:>8.3f} {r['one_layer']:>18.3f}")
    print(f"us/mult, largest over smallest model: {rows[-1]['us_per_mult'] / rows[0]['us_per_mult']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
