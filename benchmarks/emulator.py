"""Emulator throughput vs hls4ml C simulation vs Keras predict, and conversion times.

Run:  python benchmarks/emulator.py [--samples 20000] [--epochs 20] [--json out.json]

On the digits MLP (64-64-32-32-10) of examples/digits_mlp.py, trained for a
few epochs and calibrated, in one process: the numpy emulator, hls4ml's C
simulation (``predict`` of the g++-compiled project) and Keras ``predict``
run on the same samples; the time of IR + hls4ml conversion + project
writing and of the g++ compile are reported. Outputs are also compared
(emulator vs C simulation must be identical).

The emulator is timed as users call it, ``emulate(model, x)`` (the IR comes
from the per-model cache), with BLAS pinned to one thread (the default,
``threads=1``) and left at the library's default (``threads=None``), the
two alternating; and against a bare float64 chain of the same matrix
products in the same blocks (``x @ W + b``, no quantization), pinned to one
thread. Median of ``--repeats`` alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from digits_mlp import train

import hgq_fpga
from hgq_fpga.datasets import digits


def rate(fn, n: int, repeats: int = 3) -> float:
    """Best samples/second of ``repeats`` runs of ``fn()`` on ``n`` samples."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def alternating(fns: dict, n: int, repeats: int) -> dict:
    """Median samples/second of each ``fns[name]()``, the functions run in turn ``repeats`` times."""
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: n / float(np.median(v)) for k, v in times.items()}


def bare_chain(graph, x: np.ndarray, block: int = 2048) -> np.ndarray:
    """The same dense products as the model, in float64 blocks, without quantization."""
    from hgq_fpga.ir import Dense

    layers = [(n.kernel.values, None if n.bias is None else n.bias.values)
              for n in graph.nodes if isinstance(n, Dense)]
    out = []
    for s in range(0, len(x), block):
        h = x[s : s + block]
        for w, b in layers:
            h = h @ w if b is None else h @ w + b
        out.append(h)
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    model, _ = train(epochs=args.epochs)
    data = digits()
    reps = -(-args.samples // len(data.x_test))
    x = np.tile(data.x_test, (reps, 1))[: args.samples].astype(np.float64)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        graph = hgq_fpga.build_ir(model)
        hls_model = hgq_fpga.to_hls4ml(model, Path(tmp) / "prj", graph=graph)
        t_convert = time.perf_counter() - t0
        t0 = time.perf_counter()
        hls_model.compile()
        t_compile = time.perf_counter() - t0
        xc = np.ascontiguousarray(x)
        csim_out = hls_model.predict(xc)
        emu_out = hgq_fpga.emulate(graph, x)
        mismatches = int(np.count_nonzero(np.asarray(csim_out).reshape(emu_out.shape) != emu_out))
        from hgq_fpga.emulator.threads import blas_threads

        def chain_1thread():
            with blas_threads(1):
                bare_chain(graph, x)

        hgq_fpga.emulate(model, x[:16])  # first call builds and caches the IR
        rates = alternating({
            "model_1thread": lambda: hgq_fpga.emulate(model, x),
            "model_default_threads": lambda: hgq_fpga.emulate(model, x, threads=None),
            "graph_1thread": lambda: hgq_fpga.emulate(graph, x),
            "bare_chain_1thread": chain_1thread,
        }, len(x), args.repeats)
        r_emu = rates["model_1thread"]
        r_csim = rate(lambda: hls_model.predict(xc), len(x), repeats=1)
    x32 = x.astype(np.float32)
    model.predict(x32[:256], verbose=0)
    r_keras = rate(lambda: model.predict(x32, batch_size=1024, verbose=0), len(x))
    result = {
        "machine": f"{platform.machine()}, python {platform.python_version()}",
        "samples": len(x),
        "emulator_samples_per_s": r_emu,
        "emulate_rates": rates,
        "emulator_over_bare_chain": r_emu / rates["bare_chain_1thread"],
        "csim_samples_per_s": r_csim,
        "keras_samples_per_s": r_keras,
        "emulator_over_csim": r_emu / r_csim,
        "emulator_over_keras": r_emu / r_keras,
        "convert_and_write_s": t_convert,
        "gxx_compile_s": t_compile,
        "emulator_vs_csim_mismatches": mismatches,
    }
    print(
        f"emulate(model, x): {r_emu:,.0f}/s with 1 BLAS thread, {rates['model_default_threads']:,.0f}/s with "
        f"the default; emulate(graph, x) {rates['graph_1thread']:,.0f}/s; bare float64 chain "
        f"{rates['bare_chain_1thread']:,.0f}/s (emulator = {r_emu / rates['bare_chain_1thread']:.0%} of it)\n"
        f"emulator {r_emu:,.0f}/s, C simulation {r_csim:,.0f}/s, Keras {r_keras:,.0f}/s -> "
        f"emulator/C-sim {r_emu / r_csim:.0f}x, emulator/Keras {r_emu / r_keras:.1f}x; "
        f"convert+write {t_convert:.2f} s, g++ {t_compile:.1f} s; mismatches {mismatches}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
