"""Train the digits MLP (or a digits Conv2D model) at budgets from 5% to 100% of
its unconstrained cost; plot accuracy against LUTs.

Run:  python examples/budget_sweep.py [--model mlp|cnn] [--epochs 30] [--out out/sweep]

First the model trains without a budget; its exact LUT estimate is the 100%
point. Then each budget trains a fresh model (same seed) with
``hgq_fpga.ResourceBudget``; every run must end inside its budget by the
exact estimate. Writes ``<out>_<model>.csv`` and ``<out>_<model>.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hgq_fpga.startup import import_keras_quietly

import_keras_quietly()  # without TensorFlow's start-up notices (errors still show)
import keras  # noqa: E402
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from digits_mlp import build_model as build_mlp

import hgq_fpga
from hgq_fpga.constraints.sweep import pareto_sweep, plot_pareto, save_sweep
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QConv2D, QDense, QMaxPooling2D

FRACTIONS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


def build_cnn() -> keras.Model:
    """8x8x1 digits -> Conv2D(8, 3x3, relu) -> MaxPool 2x2 -> Dense(16, relu) -> Dense(10)."""
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        QConv2D(8, 3, activation="relu", name="conv"),
        QMaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flatten"),
        QDense(16, activation="relu", name="dense"),
        QDense(10, name="logits"),
    ], name="digits_cnn")


def compiled(kind: str) -> keras.Model:
    model = build_mlp(0.0) if kind == "mlp" else build_cnn()
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--method", choices=("constraint", "primal_dual"), default="constraint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("out/sweep"))
    args = parser.parse_args(argv)

    d = digits(seed=args.seed, image=args.model == "cnn")
    keras.utils.set_random_seed(args.seed)
    free = compiled(args.model)
    free.fit(d.x_train, d.y_train, epochs=args.epochs, batch_size=32, verbose=0)
    hgq_fpga.calibrate(free, d.x_train)
    full = hgq_fpga.estimate(free).lut
    print(f"{args.model}: unconstrained model {full:.0f} LUTs")
    budgets = [f * full for f in args.fractions]
    points = pareto_sweep(lambda: compiled(args.model), (d.x_train, d.y_train), (d.x_test, d.y_test),
                          budgets, epochs=args.epochs, method=args.method, seed=args.seed)
    print(f"{'budget':>8} {'LUT':>8} {'DSP':>4} {'accuracy':>8} {'repair':>6} {'inside':>6}")
    for p in points:
        print(f"{p.budget_lut:>8.0f} {p.lut:>8.0f} {p.dsp:>4d} {p.accuracy:>8.3f} {p.repair_rounds:>6d} "
              f"{'yes' if p.feasible else 'NO':>6}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = save_sweep(points, f"{args.out}_{args.model}.csv")
    png_path = plot_pareto(points, f"{args.out}_{args.model}.png",
                           title=f"digits {args.model}: accuracy against LUTs")
    print(f"wrote {csv_path} and {png_path}")
    inside = int(np.sum([p.feasible for p in points]))
    print(f"{inside}/{len(points)} runs inside their budget")
    return 0 if inside == len(points) else 1


if __name__ == "__main__":
    raise SystemExit(main())
