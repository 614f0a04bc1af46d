"""The distributed-arithmetic estimate against flattened yosys on the adder graph it counts.

Run:  python benchmarks/da_yosys.py [--layers 30] [--seed 0] [--jobs 2] [--json out.json]

For the random dense layers of ``benchmarks/rtl.py`` (same configurations),
``estimate(strategy="distributed_arithmetic")`` counts da4ml's cost of the
graph hls4ml 1.3.0's pass builds: ``comb_trace`` of ``x @ kernel + bias`` with
the pass's solver options (``hgq_fpga.resources.da``). Here the very same traced
graph is written as Verilog by da4ml's own RTL code generator
(``da4ml.codegen.VerilogModel``, combinational) and synthesized by yosys
(``synth_xilinx -flatten -nodsp -family xcup``). hls4ml's project itself is HLS
C++ that yosys cannot read; da4ml's Verilog of the same graph is the closest
design that open-source synthesis can check (HGQ2's RTL path writes it).

Printed: per layer the estimate (the layer's ``da`` row), yosys's LUTs and the
error; median and worst |error|. BLAS and numba pinned to one thread; yosys runs
``--jobs`` at a time. Needs yosys and da4ml.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
           "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from rtl import layer_configs  # noqa: E402

import hgq_fpga  # noqa: E402
from hgq_fpga.ir import ops as ir  # noqa: E402
from hgq_fpga.resources.analysis import analyze  # noqa: E402
from hgq_fpga.resources.costs import CostModel  # noqa: E402
from hgq_fpga.resources.da import _matmul, kernel_input_kif  # noqa: E402
from hgq_fpga.testing import dense_layer_model  # noqa: E402


def traced(model: Any) -> tuple[Any, float]:
    """The traced graph of the model's dense layer as hls4ml's pass builds it, and the estimate's
    ``da`` count for it."""
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace

    graph = hgq_fpga.build_ir(model)
    a = analyze(graph, strategy="distributed_arithmetic", cost_model=CostModel())
    op = next(n for n in graph.nodes if isinstance(n, ir.Linear))
    k, i, f = kernel_input_kif(a, op)
    kernel = np.asarray(op.kernel.values, np.float64).reshape(-1, op.kernel.m.shape[-1])
    inp = FixedVariableArray.from_kif(k, i, f, HWConfig(1, -1, -1),
                                      solver_options={"hard_dc": 2, "search_all_decompose_dc": True})
    out = _matmul(inp, kernel)
    if op.bias is not None:
        out = out + np.asarray(op.bias.values, np.float64).reshape(-1)
    return comb_trace(inp, out), float(a.costs[op.name].counts["da"])


def yosys_da4ml(comb: Any, path: Path) -> int:
    """da4ml's Verilog of ``comb``, synthesized flattened: its LUTs."""
    from da4ml.codegen import VerilogModel

    VerilogModel(comb, "da_top", path, latency_cutoff=-1).write()
    # the top and the static modules it instantiates (the lookup-table module reads a placeholder
    # memory file and the I/O wrapper is not synthesized: a CMVM has no tables)
    sources = [str(path / "src" / "da_top.v")] + sorted(
        str(p) for p in (path / "src" / "static").glob("*.v") if p.name != "lookup_table.v")
    script = (f"read_verilog -sv {' '.join(sources)}; synth_xilinx -flatten -nodsp -family xcup -top da_top; "
              "tee -o stat.txt stat")
    subprocess.run(["yosys", "-q", "-p", script], cwd=path, check=True, capture_output=True)
    stat = (path / "stat.txt").read_text()
    return sum(int(v) for k, v in re.findall(r"^\s+(LUT\d)\s+(\d+)\s*$", stat, re.MULTILINE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as d, ThreadPoolExecutor(args.jobs) as pool:
        jobs = []
        for n, cfg in enumerate(layer_configs(args.layers, args.seed)):
            model, _ = dense_layer_model(cfg["n_in"], cfg["n_out"], weight_bits=cfg["weight_bits"],
                                         zero_fraction=cfg["zero_fraction"], input_bits=cfg["input_bits"],
                                         signed_input=cfg["signed_input"], seed=cfg["seed"])
            comb, estimate = traced(model)
            jobs.append((f"layer{n:02d}", cfg, estimate, pool.submit(yosys_da4ml, comb, Path(d) / f"l{n}")))
        for name, cfg, estimate, job in jobs:
            rows.append({"name": name, **cfg, "da_estimate": estimate, "yosys_lut": job.result()})
    err = np.array([r["da_estimate"] / r["yosys_lut"] - 1 for r in rows])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(rows)} layers in {time.perf_counter() - t0:.0f} s")
    print(f"{'layer':<8} {'in':>3} {'out':>3} {'w bits':>6} {'zeros':>5} {'estimate':>8} {'yosys':>7} {'err':>7}")
    for r, e in zip(rows, err):
        print(f"{r['name']:<8} {r['n_in']:>3} {r['n_out']:>3} {r['weight_bits']:>6} {r['zero_fraction']:>5.1f} "
              f"{r['da_estimate']:>8.0f} {r['yosys_lut']:>7} {e:>+7.1%}")
    summary = {"median_abs_rel_error": float(np.median(np.abs(err))), "max_abs_rel_error": float(np.max(np.abs(err))),
               "median_rel_error": float(np.median(err))}
    print(f"\nDA estimate vs flattened yosys on da4ml's Verilog of the same graph: median |err| "
          f"{summary['median_abs_rel_error']:.1%}, worst {summary['max_abs_rel_error']:.1%}, "
          f"median signed {summary['median_rel_error']:+.1%}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
