"""The RTL backend against flattened open-source synthesis of the sources it ships.

Run:  python benchmarks/rtl.py [--layers 30] [--epochs 10] [--jobs 2] [--da] [--prefer latency|luts]
                              [--build-times] [--big] [--json out.json]

For ``--layers`` random dense layers (8 to 64 inputs and outputs, weight bits
2-8, 0-70% zero weights, input widths 3-10 bits, signed and unsigned inputs)
and three models (the digits MLP and CNN of ``examples/``, trained for
``--epochs``, and a jet-tagging-shaped MLP 16-64-32-32-5 with random 3-8 bit
weights), each design is written with ``hgq_fpga.to_rtl`` (5 ns clock) and
synthesized by the project's own ``build_yosys.ys`` (``synth_xilinx -flatten
-family xcup``, as synthesis tools run by default). Compared:

* ``estimate(backend="rtl")`` LUTs and flip-flops against yosys's
  (median and worst |error|, Spearman);
* the RTL LUTs against the hls4ml Latency estimate of the same model, and
  (``--da``) against da4ml's cost of its adder graphs on the same weights
  (``estimate(strategy="distributed_arithmetic")``, HGQ2's path).

``--prefer luts``: every design written and estimated with ``prefer="luts"`` (the
fewest LUTs whatever the depth, da4ml's own choice) instead of the default ``"latency"``.

``--build-times``: the digits MLP's ``to_rtl`` + Icarus Verilog build and run
against ``to_hls4ml`` + the g++ C-simulation build, alternating, ``--rounds`` rounds
(with ``--layers 0 --epochs 0``, nothing else is measured).

``--big`` (alone with ``--layers 0``): the 64-128-128-10 MLP (16,384 multiplications in
its largest layer) written, estimated and simulated, each step timed.

BLAS is pinned to one thread (set below, before numpy loads); yosys runs
``--jobs`` at a time. Needs yosys and iverilog (and g++ for --build-times).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "examples")]

import hgq_fpga  # noqa: E402
from hgq_fpga.testing import dense_layer_model  # noqa: E402


def layer_configs(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` layer configurations spread over the issue's ranges, reproducibly."""
    rng = np.random.default_rng(seed)
    sizes = [8, 12, 16, 24, 32, 48, 64]
    return [{"n_in": int(rng.choice(sizes)), "n_out": int(rng.choice(sizes)), "weight_bits": int(2 + k % 7),
             "zero_fraction": float(rng.choice([0.0, 0.2, 0.4, 0.7])), "input_bits": int(rng.integers(3, 11)),
             "signed_input": bool(rng.random() < 0.5), "seed": int(seed * 1000 + k)} for k in range(n)]


def models(epochs: int) -> list[tuple[str, Any]]:
    """The three whole models."""
    from estimate_scaling import build

    out = [("jet_mlp_16-64-32-32-5", build((16, 64, 32, 32, 5))[0])]
    if epochs > 0:
        from digits_cnn import train as train_cnn
        from digits_mlp import train as train_mlp

        out.insert(0, ("digits_mlp", train_mlp(epochs=epochs)[0]))
        out.insert(1, ("digits_cnn", train_cnn(epochs=epochs)[0]))
    return out


def yosys_project(path: Path) -> dict[str, int]:
    """The project's own yosys script (flattened); its cell counts."""
    from hgq_fpga.backends.rtl.build import synthesize_project

    r = synthesize_project(path)
    return {"lut": r.lut, "ff": r.ff, "carry": r.carry}


def measure(name: str, model: Any, config: dict[str, Any], work: Path, da: bool,
            prefer: str = "latency") -> dict[str, Any]:
    t0 = time.perf_counter()
    rtl = hgq_fpga.estimate(model, backend="rtl", prefer=prefer)
    est_s = time.perf_counter() - t0
    row = {"name": name, **config, "rtl_lut": rtl.lut, "rtl_ff": rtl.ff, "rtl_carry": rtl.carry,
           "latency": rtl.latency_cycles, "latency_lut": hgq_fpga.estimate(model).lut, "estimate_seconds": est_s}
    if da:
        t0 = time.perf_counter()
        row["da_lut"] = hgq_fpga.estimate(model, strategy="distributed_arithmetic").lut
        row["da_seconds"] = time.perf_counter() - t0
    project = hgq_fpga.to_rtl(model, work / name, prefer=prefer)
    t0 = time.perf_counter()
    y = yosys_project(project.path)
    row.update({"yosys_lut": y["lut"], "yosys_ff": y["ff"], "yosys_carry": y["carry"],
                "yosys_seconds": time.perf_counter() - t0})
    return row


def errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    rel = np.abs(pred / true - 1.0)
    return {"median_abs_rel_error": float(np.median(rel)), "max_abs_rel_error": float(np.max(rel)),
            "spearman": float(spearmanr(pred, true)[0])}


def build_times(rounds: int = 3) -> list[dict[str, float]]:
    """The digits MLP: ``to_rtl`` + the Icarus Verilog build (and its testbench run) against
    ``to_hls4ml`` + the g++ C-simulation build (and ``predict`` on the same inputs), alternating."""
    import subprocess

    from digits_mlp import train

    from hgq_fpga.backends.hls4ml.project import compile_csim

    model = train(epochs=2)[0]
    out = []
    with tempfile.TemporaryDirectory() as d:
        for k in range(rounds):
            t0 = time.perf_counter()
            project = hgq_fpga.to_rtl(model, Path(d) / f"rtl{k}")
            t1 = time.perf_counter()
            sim = Path(d) / f"sim{k}"
            subprocess.run(["iverilog", "-g2005", "-o", str(sim), "tb/tb_model.v", "src/model.v"],
                           cwd=project.path, check=True)
            t2 = time.perf_counter()
            log = subprocess.run(["vvp", "-n", str(sim), f"+out0={Path(d) / f'out{k}.hex'}"], cwd=project.path,
                                 check=True, capture_output=True, text=True).stdout
            t3 = time.perf_counter()
            hls = hgq_fpga.to_hls4ml(model, Path(d) / f"hls{k}")
            t4 = time.perf_counter()
            compile_csim(hls)
            t5 = time.perf_counter()
            n = len((project.path / "tb_data" / "in0.hex").read_text().split())  # the testbench's vectors
            hls.predict(np.random.default_rng(k).uniform(0, 16, (n, 64)))
            t6 = time.perf_counter()
            out.append({"to_rtl": t1 - t0, "iverilog": t2 - t1, "vvp": t3 - t2, "rtl_passed": "PASS" in log,
                        "to_hls4ml": t4 - t3, "gxx": t5 - t4, "csim_predict": t6 - t5,
                        "rtl_seconds": t2 - t0, "hls4ml_seconds": t5 - t3})
    return out


def big_mlp(widths: tuple[int, ...] = (64, 128, 128, 10)) -> dict[str, float]:
    """The 64-128-128-10 MLP: ``to_rtl``, ``estimate(backend="rtl")`` and the testbench (Icarus
    Verilog compile and run), each timed."""
    from estimate_scaling import build

    model, mults = build(widths)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        project = hgq_fpga.to_rtl(model, Path(d) / "big")
        t1 = time.perf_counter()
        report = hgq_fpga.estimate(model, backend="rtl")
        t2 = time.perf_counter()
        passed, _, _ = hgq_fpga.backends.rtl.run_testbench(project)
        t3 = time.perf_counter()
        size = (project.path / "src" / "model.v").stat().st_size
    return {"multiplications": mults, "to_rtl_seconds": t1 - t0, "estimate_seconds": t2 - t1,
            "simulation_seconds": t3 - t2, "total_seconds": t3 - t0, "passed": passed, "lut": report.lut,
            "ff": report.ff, "latency": report.latency_cycles, "source_bytes": size}


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    y = np.array([r["yosys_lut"] for r in rows], float)
    est = np.array([r["rtl_lut"] for r in rows], float)
    s = {"lut": errors(est, y),
         "ff_exact": int(sum(r["rtl_ff"] == r["yosys_ff"] for r in rows)),
         "ff": errors(np.array([r["rtl_ff"] for r in rows], float), np.array([r["yosys_ff"] for r in rows], float)),
         "rtl_over_latency_estimate_median": float(np.median(est / np.array([r["latency_lut"] for r in rows])))}
    if "da_lut" in rows[0]:
        da = np.array([r["da_lut"] for r in rows])
        s["rtl_over_da4ml_median"] = float(np.median(est / da))
        s["rtl_at_most_da4ml"] = int(np.sum(est <= da))
    print(f"{'design':<22} {'yosys':>7} {'rtl est':>7} {'err':>7} {'yosys FF':>8} {'est FF':>7} {'lat':>3} "
          f"{'Latency':>7}" + (f" {'da4ml':>7}" if "da_lut" in rows[0] else ""))
    for r in rows:
        print(f"{r['name']:<22} {r['yosys_lut']:>7} {r['rtl_lut']:>7.0f} {r['rtl_lut'] / r['yosys_lut'] - 1:>+7.1%} "
              f"{r['yosys_ff']:>8} {r['rtl_ff']:>7} {r['latency']:>3} {r['latency_lut']:>7.0f}"
              + (f" {r['da_lut']:>7.0f}" if "da_lut" in r else ""))
    print(f"\nRTL estimate vs flattened yosys, LUT: median |err| {s['lut']['median_abs_rel_error']:.1%}, worst "
          f"{s['lut']['max_abs_rel_error']:.1%}, Spearman {s['lut']['spearman']:.4f}; flip-flops exact in "
          f"{s['ff_exact']} of {len(rows)} (median |err| {s['ff']['median_abs_rel_error']:.1%})")
    print(f"RTL LUTs over the hls4ml Latency estimate (median): {s['rtl_over_latency_estimate_median']:.3f}"
          + (f"; over da4ml's: {s['rtl_over_da4ml_median']:.3f} (at most da4ml's on {s['rtl_at_most_da4ml']} of "
             f"{len(rows)})" if "rtl_over_da4ml_median" in s else ""))
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10, help="digits models' training epochs (0: skip them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="parallel yosys runs")
    parser.add_argument("--da", action="store_true", help="also da4ml's cost of the same weights (slow)")
    parser.add_argument("--prefer", choices=("latency", "luts"), default="latency",
                        help="to_rtl's choice of adder graphs for every design")
    parser.add_argument("--build-times", action="store_true", help="time to_rtl+iverilog against to_hls4ml+g++")
    parser.add_argument("--rounds", type=int, default=3, help="--build-times: alternating rounds")
    parser.add_argument("--big", action="store_true", help="time the 64-128-128-10 MLP: to_rtl, estimate, simulation")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.big:
        big = big_mlp()
        print("64-128-128-10 MLP: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in big.items()))
        if args.layers == 0:
            return 0
    rows, summary = [], {}
    if args.layers or args.epochs:  # (--layers 0 --epochs 0: only --build-times)
        designs = [(f"layer{k:02d}", dense_layer_model(**cfg)[0], cfg)
                   for k, cfg in enumerate(layer_configs(args.layers, args.seed))]
        designs += [(name, model, {}) for name, model in models(args.epochs)]
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d, ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda j: measure(*j, Path(d), args.da, args.prefer), designs))
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"{len(rows)} designs in {time.perf_counter() - t0:.0f} s")
        summary = report(rows)
    if args.build_times:
        summary["build_times"] = build_times(args.rounds)
        for r in summary["build_times"]:
            print(f"digits MLP: to_rtl {r['to_rtl']:.2f} s + iverilog {r['iverilog']:.2f} s (then vvp "
                  f"{r['vvp']:.2f} s, PASS {r['rtl_passed']}); to_hls4ml {r['to_hls4ml']:.2f} s + g++ "
                  f"{r['gxx']:.2f} s (then predict {r['csim_predict']:.2f} s)")
        bt = summary["build_times"]
        summary["build_time_ratio_median"] = float(np.median([r["rtl_seconds"] / r["hls4ml_seconds"] for r in bt]))
        summary["build_and_run_ratio_median"] = float(np.median(
            [(r["rtl_seconds"] + r["vvp"]) / (r["hls4ml_seconds"] + r["csim_predict"]) for r in bt]))
        print(f"RTL over hls4ml, median of the rounds: build {summary['build_time_ratio_median']:.2f}, "
              f"build and run {summary['build_and_run_ratio_median']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
