"""The LUT estimate against open-source synthesis (yosys), layer by layer.

Run:  python benchmarks/estimator.py [--layers 32] [--epochs 30] [--jobs 2] [--json out.json]

For ``--layers`` random single dense layers (8 to 32 inputs and outputs,
weight bits 2 to 8, 0 to 70% zero weights, input widths 3 to 10 bits, signed
and unsigned inputs) and the digits MLP of ``examples/digits_mlp.py``:
``hgq_fpga.estimate`` (Latency strategy, all multiplications in LUTs) is
compared with ``yosys synth_xilinx -family xc7 -nodsp`` on the Verilog that
``hgq_fpga.backends.rtl.to_verilog`` writes for the same quantized weights and
widths (each adder its own instance, as in the estimator's circuit; the
same Verilog flattened, so that yosys may optimize across adders, is reported
alongside). Reported: the median and worst absolute relative error, Spearman's
rank correlation, and the same figures for EBOPs scaled by its best-fit
constant (the baseline to beat). Needs yosys on PATH.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import hgq_fpga
from hgq_fpga.backends.rtl import synthesize, to_verilog
from hgq_fpga.resources import estimate
from hgq_fpga.testing import dense_layer_model


def layer_configs(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` layer configurations spread over the ranges of the issue, reproducibly."""
    rng = np.random.default_rng(seed)
    sizes = [8, 12, 16, 24, 32]
    out = []
    for k in range(n):
        out.append({
            "n_in": int(rng.choice(sizes)),
            "n_out": int(rng.choice(sizes)),
            "weight_bits": int(2 + k % 7),  # 2..8, each about equally often
            "zero_fraction": float(rng.choice([0.0, 0.2, 0.4, 0.7])),
            "input_bits": int(rng.integers(3, 11)),
            "signed_input": bool(rng.random() < 0.5),
            "seed": int(seed * 1000 + k),
        })
    return out


def measure(name: str, graph: Any, config: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    report = estimate(None, graph=graph)
    est_s = time.perf_counter() - t0
    module = to_verilog(graph)
    synth = synthesize(module)
    flat = synthesize(module, flatten=True)
    return {
        "name": name, **config,
        "estimate_lut": report.lut, "estimate_carry": report.carry, "ebops": report.ebops,
        "yosys_lut": synth.lut, "yosys_carry": synth.carry, "yosys_inv": synth.inv,
        "yosys_flat_lut": flat.lut, "yosys_flat_carry": flat.carry,
        "estimate_seconds": est_s, "yosys_seconds": synth.seconds,
    }


def errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    rel = np.abs(pred / true - 1.0)
    return {
        "median_abs_rel_error": float(np.median(rel)),
        "max_abs_rel_error": float(np.max(rel)),
        "spearman": float(spearmanr(pred, true).statistic),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30, help="digits MLP training epochs (0: skip it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="parallel yosys runs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    jobs = []
    for k, cfg in enumerate(layer_configs(args.layers, args.seed)):
        model, _ = dense_layer_model(**cfg)
        jobs.append((f"layer{k:02d}", hgq_fpga.build_ir(model), cfg))
    if args.epochs > 0:
        from digits_mlp import train

        model, res = train(epochs=args.epochs)
        jobs.append(("digits_mlp", hgq_fpga.build_ir(model),
                     {"test_accuracy": res["test_accuracy"], "epochs": args.epochs}))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda j: measure(*j), jobs))
    wall = time.perf_counter() - t0

    y = np.array([r["yosys_lut"] for r in rows], float)
    est = np.array([r["estimate_lut"] for r in rows], float)
    eb = np.array([r["ebops"] for r in rows], float)
    c = float(np.sum(eb / y) / np.sum((eb / y) ** 2))  # argmin sum ((c*e - y) / y)^2
    summary = {
        "estimate": errors(est, y),
        "ebops_scaled": {**errors(c * eb, y), "lut_per_ebop": c},
        "estimate_vs_flattened": errors(est, np.array([r["yosys_flat_lut"] for r in rows], float)),
        "carry": errors(np.array([r["estimate_carry"] for r in rows], float),
                        np.array([r["yosys_carry"] for r in rows], float)),
        "n_designs": len(rows),
        "max_estimate_seconds": max(r["estimate_seconds"] for r in rows),
        "yosys_wall_seconds": wall,
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()}".strip(),
    }
    print(f"{'design':<11} {'in':>3} {'out':>3} {'wb':>2} {'zero':>4} {'xb':>2} {'sgn':>3} "
          f"{'yosys':>6} {'est':>6} {'err':>6} {'EBOPs*c':>8} {'err':>6} {'flat':>6}")
    for r in rows:
        e1 = r["estimate_lut"] / r["yosys_lut"] - 1
        e2 = c * r["ebops"] / r["yosys_lut"] - 1
        print(f"{r['name']:<11} {r.get('n_in', ''):>3} {r.get('n_out', ''):>3} {r.get('weight_bits', ''):>2} "
              f"{r.get('zero_fraction', ''):>4} {r.get('input_bits', ''):>2} {str(r.get('signed_input', ''))[:1]:>3} "
              f"{r['yosys_lut']:>6} {r['estimate_lut']:>6.0f} {e1:>+6.1%} {c * r['ebops']:>8.0f} {e2:>+6.1%} "
              f"{r['yosys_flat_lut']:>6}")
    s = summary
    print(f"\nestimate vs yosys LUT: median |err| {s['estimate']['median_abs_rel_error']:.1%}, "
          f"worst {s['estimate']['max_abs_rel_error']:.1%}, Spearman {s['estimate']['spearman']:.4f}")
    print(f"EBOPs x {c:.3f}:        median |err| {s['ebops_scaled']['median_abs_rel_error']:.1%}, "
          f"worst {s['ebops_scaled']['max_abs_rel_error']:.1%}, Spearman {s['ebops_scaled']['spearman']:.4f}")
    print(f"estimate vs flattened: median |err| {s['estimate_vs_flattened']['median_abs_rel_error']:.1%}, "
          f"worst {s['estimate_vs_flattened']['max_abs_rel_error']:.1%}, "
          f"Spearman {s['estimate_vs_flattened']['spearman']:.4f}")
    print(f"carry chains:          median |err| {s['carry']['median_abs_rel_error']:.1%}, "
          f"worst {s['carry']['max_abs_rel_error']:.1%}")
    print(f"slowest estimate {s['max_estimate_seconds'] * 1e3:.1f} ms; yosys wall {wall:.0f} s "
          f"({args.jobs} jobs); {len(rows)} designs")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
