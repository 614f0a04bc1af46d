"""One sweep of 8 trials on each runner, in one run: in this process, a local pool of
1 and of 2 processes, and Ray with 2 CPUs; plus Ray's overhead per task.

Run:  python benchmarks/sweep.py [--epochs 3] [--repeats 2] [--json out.json]

The trials: the digits MLP 64-16-10 at LUT budgets 600/900/1200/1500 with seeds
0 and 1 (``hgq_fpga.sweep``, 3 epochs each). Every runner trains the same 8
trials into its own folder, and the results must agree trial for trial
(checked). The four runs alternate, ``--repeats`` times; reported per runner:
the best wall time of the ``sweep`` call (this machine is shared: the best of
alternating runs is the least disturbed), and its speed-up over the
in-process run and over one local worker. Ray's overhead is measured apart, with
no-op tasks (``runner="ray"`` against ``runner="local"``, both with 2 workers):
the cost of starting Ray and its workers, and the cost per task once warm.

Threads: each trial's math libraries are pinned to one thread (the sweep's
``cpus_per_trial=1``); this process is pinned too (``OPENBLAS_NUM_THREADS=1``,
``OMP_NUM_THREADS=1``), so the in-process run is comparable.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from hgq_fpga.startup import import_keras_quietly  # noqa: E402

import_keras_quietly()

from hgq_fpga.sweeps import run_tasks, sweep  # noqa: E402

RUNS = (("inline", "inline", 1), ("local x1", "local", 1), ("local x2", "local", 2), ("ray x2", "ray", 2))
COMPARED = ("lut", "dsp", "ebops", "accuracy", "feasible")


def ray_overhead(n: int = 100) -> dict[str, float]:
    """Seconds for ``n`` no-op tasks, cold (starting the workers) and warm, on Ray and on the local pool."""
    import ray

    out: dict[str, float] = {}
    tasks = [(str(i), (i,)) for i in range(n)]  # pow(1, i): a no-op that pickles by reference
    t0 = time.perf_counter()
    run_tasks(pow, tasks, shared=1, on_result=lambda k, o: None, runner="local", workers=2)
    out["local_cold_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    out["ray_start_s"] = time.perf_counter() - t0
    for phase in ("cold", "warm"):
        t0 = time.perf_counter()
        run_tasks(pow, tasks, shared=1, on_result=lambda k, o: None, runner="ray")
        out[f"ray_{phase}_s"] = time.perf_counter() - t0
    ray.shutdown()
    out["ray_per_task_ms"] = 1e3 * out["ray_warm_s"] / n
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="hgq_fpga_bench_sweep_"))
    kw = dict(architectures={"mlp": {"widths": [16, 10]}}, budgets=[600, 900, 1200, 1500], seeds=[0, 1],
              epochs=args.epochs, progress=False)
    results: dict[str, list[float]] = {label: [] for label, _, _ in RUNS}
    tables = {}
    try:
        for rep in range(args.repeats):
            for label, runner, workers in RUNS:
                out = root / f"{label.replace(' ', '_')}_{rep}"
                t0 = time.perf_counter()
                r = sweep("mlp", "digits", out, runner=runner, workers=workers, **kw)
                results[label].append(time.perf_counter() - t0)
                tables[label] = {row["trial"]: tuple(row[k] for k in COMPARED) for row in r.rows}
                print(f"{label:<9} {results[label][-1]:7.1f} s  ({len(r.ran)} trials)", flush=True)
        same = all(t == tables["inline"] for t in tables.values())
        overhead = ray_overhead()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    best = {label: min(times) for label, times in results.items()}
    print(f"\n{'runner':<9} {'best s':>7} {'over inline':>11} {'over local x1':>13}")
    for label, s in best.items():
        print(f"{label:<9} {s:7.1f} {best['inline'] / s:10.2f}x {best['local x1'] / s:12.2f}x")
    print(f"results identical on every runner: {same}")
    print("Ray overhead: start {ray_start_s:.1f} s; 100 no-op tasks cold {ray_cold_s:.2f} s, warm {ray_warm_s:.2f} s "
          "({ray_per_task_ms:.1f} ms per task); local pool cold {local_cold_s:.2f} s".format(**overhead))
    if args.json:
        Path(args.json).write_text(json.dumps({"wall_s": results, "best_s": best, "identical": same, "ray": overhead,
                                               "machine": platform.platform(), "cpus": os.cpu_count()}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
