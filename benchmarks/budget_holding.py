"""Does the training rule hold the budget by itself? Digits MLP and CNN at fixed LUT budgets, several seeds.

Run:  python benchmarks/budget_holding.py [--models mlp cnn] [--seeds 0 1 2] [--epochs 30]
                                          [--fractions 0.05 0.1 0.2 0.35 0.5] [--method step]
                                          [--schedule WARMUP FINETUNE [ANNEAL] | none]
                                          [--check-every N | auto] [--json out.json]

The budgets are fractions of the unconstrained models of BENCHMARKS.md's
budget table (MLP 85,616 LUTs, CNN 72,426: 30 epochs, seed 0), so that the
accuracies compare with that table's. Each run trains the model of
``examples/budget_sweep.py`` from its seed (the digits split is seed 0's for
every run) with ``ResourceBudget(lut=..., calibration_data=x_train,
check_every=1, method=--method, schedule=--schedule)`` (without ``--schedule``: the
callback's default schedule), 30 epochs,
batch 32, Adam 3e-3, and ``validation_data`` the test split (as the table's).
``check_every=1`` takes the exact estimate after every epoch, so every epoch
that ends over the budget is seen (and projected); ``--check-every auto`` (or
N) runs the callback as a user who asks for fewer checks would (the epochs
"over" are then those of the checks made).

Reported per model and budget: final LUTs (exact, calibrated on the training
inputs) against the budget, the mean emulated-firmware accuracy on the 540
test samples over the seeds, and the epochs after the first quarter that
ended over the budget (and so were projected), out of all such epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
for _v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # BLAS on one thread (the machine is shared); TensorFlow's pools at their defaults
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from budget_sweep import compiled  # noqa: E402

import hgq_fpga  # noqa: E402
from hgq_fpga.constraints.options import METHODS  # noqa: E402
from hgq_fpga.constraints.schedule import Schedule  # noqa: E402
from hgq_fpga.datasets import digits  # noqa: E402

#: the unconstrained models of BENCHMARKS.md's budget table (their 100%)
FULL = {"mlp": 85_616, "cnn": 72_426}
#: mean accuracy at each budget in that table (constraint rule, seed 0, no schedule)
TABLE = {"mlp": {0.05: 0.889, 0.1: 0.948, 0.2: 0.976, 0.35: 0.970, 0.5: 0.970},
         "cnn": {0.05: 0.724, 0.1: 0.852, 0.2: 0.911, 0.35: 0.948, 0.5: 0.963}}


#: ``run``'s schedule when none is given: ResourceBudget's default
DEFAULT = "default"


def run(model_kind: str, fraction: float, seed: int, epochs: int, method: str = METHODS[0],
        schedule: Schedule | str | None = DEFAULT, check_every: int | str = 1) -> dict:
    d = digits(seed=0, image=model_kind == "cnn")
    keras.utils.set_random_seed(seed)
    model = compiled(model_kind)
    budget = fraction * FULL[model_kind]
    chosen = {} if schedule == DEFAULT else {"schedule": schedule}
    cb = hgq_fpga.ResourceBudget(lut=budget, calibration_data=d.x_train, check_every=check_every, sensitivities=False,
                                 verbose=0, method=method, **chosen)
    t0 = time.perf_counter()
    model.fit(d.x_train, d.y_train, validation_data=(d.x_test, d.y_test), epochs=epochs, batch_size=32, verbose=0,
              callbacks=[cb])
    seconds = time.perf_counter() - t0
    out = np.asarray(hgq_fpga.emulate(model, d.x_test))
    accuracy = float(np.mean(np.argmax(out.reshape(len(out), -1), axis=1) == d.y_test))
    late = [h for h in cb.history if h["epoch"] >= epochs / 4]
    return {"model": model_kind, "fraction": fraction, "seed": seed, "budget": budget, "method": method,
            "schedule": dataclasses.astuple(cb.schedule),
            "lut": cb.result.report.lut, "feasible": cb.result.feasible, "accuracy": accuracy,
            "late_epochs": len(late), "late_over": sum(not h["feasible"] for h in late),
            "over": sum(not h["feasible"] for h in cb.history), "repair_rounds": cb.result.repair.rounds,
            "steps": cb.steering.step.steps, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=list(FULL))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.35, 0.5])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--method", choices=METHODS, default=METHODS[0])
    parser.add_argument("--schedule", nargs="+", default=None, metavar="WARMUP FINETUNE [ANNEAL] | none",
                        help="fractions of the epochs, or none (default: ResourceBudget's default schedule)")
    parser.add_argument("--check-every", default="1", metavar="N | auto",
                        help="ResourceBudget's check_every (default 1: an exact check after every epoch)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    check_every = args.check_every if args.check_every == "auto" else int(args.check_every)
    if args.schedule is None:
        schedule = DEFAULT
    elif args.schedule == ["none"]:
        schedule = None
    elif len(args.schedule) in (2, 3):
        schedule = Schedule(*map(float, args.schedule))
    else:
        parser.error(f"--schedule takes WARMUP FINETUNE [ANNEAL] or none; received {' '.join(args.schedule)}")
    rows = []
    for kind in args.models:
        for fraction in args.fractions:
            for seed in args.seeds:
                rows.append(run(kind, fraction, seed, args.epochs, args.method, schedule, check_every))
                r = rows[-1]
                print(f"{kind} {fraction:.2f} seed {seed}: LUT {r['lut']:.0f} / {r['budget']:.0f} "
                      f"accuracy {r['accuracy']:.3f}, over after the first quarter {r['late_over']}/"
                      f"{r['late_epochs']}, {r['seconds']:.0f} s", flush=True)
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1))
    print("| model | budget | LUT (max over seeds) | inside | accuracy (mean) | table | epochs over after "
          "the first quarter |\n|---|---|---|---|---|---|---|")
    for kind in args.models:
        for fraction in args.fractions:
            rs = [r for r in rows if r["model"] == kind and r["fraction"] == fraction]
            print(f"| {kind} | {fraction:.0%} ({rs[0]['budget']:,.0f}) | {max(r['lut'] for r in rs):,.0f} | "
                  f"{sum(r['feasible'] for r in rs)}/{len(rs)} | {statistics.fmean(r['accuracy'] for r in rs):.3f} | "
                  f"{TABLE[kind].get(fraction, float('nan')):.3f} | {sum(r['late_over'] for r in rs)}/"
                  f"{sum(r['late_epochs'] for r in rs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
