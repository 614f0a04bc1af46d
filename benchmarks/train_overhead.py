"""Training overhead of hgq_fpga's quantized digits MLP over the same float MLP.

Run:  python benchmarks/train_overhead.py [--epochs 20] [--repeats 3] [--json out.json]

Both models (64-64-32-32-10) train on the same digits split with the same
batch size (32) and optimizer in one process, alternating float and
quantized runs so that machine load affects both alike. Reported: the
median epoch time of each, their ratio, and the ratio of the first epochs
(which include tracing and compilation).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from digits_mlp import build_model

from hgq_fpga.datasets import digits


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.times.append(time.perf_counter() - self._t0)


def float_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def time_training(model: keras.Model, data, epochs: int, batch_size: int) -> list[float]:
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[timer])
    return timer.times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--penalty", type=float, default=2e-6)
    parser.add_argument("--lut-penalty", type=float, default=0.0,
                        help="also time the model with the differentiable LUT estimate in the loss")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    data = digits(seed=0)
    runs: dict[str, list[list[float]]] = {"float": [], "hgq_fpga": []}
    if args.lut_penalty > 0:
        runs["hgq_fpga_lut"] = []
    for r in range(args.repeats):
        keras.utils.set_random_seed(r)
        runs["float"].append(time_training(float_model(), data, args.epochs, args.batch_size))
        keras.utils.set_random_seed(r)
        runs["hgq_fpga"].append(time_training(build_model(args.penalty), data, args.epochs, args.batch_size))
        if args.lut_penalty > 0:
            from hgq_fpga.quantizers.cost import set_lut_penalty

            keras.utils.set_random_seed(r)
            model = build_model(args.penalty)
            set_lut_penalty(model, args.lut_penalty)
            runs["hgq_fpga_lut"].append(time_training(model, data, args.epochs, args.batch_size))
    med = {k: statistics.median(t for run in v for t in run[1:]) for k, v in runs.items()}
    first = {k: statistics.median(run[0] for run in v) for k, v in runs.items()}
    result = {
        "backend": keras.backend.backend(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "epochs": args.epochs,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "median_epoch_s": med,
        "first_epoch_s": first,
        "median_ratio": med["hgq_fpga"] / med["float"],
        "first_epoch_ratio": first["hgq_fpga"] / first["float"],
    }
    print(
        f"backend {result['backend']}: median epoch float {med['float'] * 1e3:.1f} ms, "
        f"hgq_fpga {med['hgq_fpga'] * 1e3:.1f} ms -> ratio {result['median_ratio']:.2f}x; "
        f"first epoch {first['float']:.2f} s vs {first['hgq_fpga']:.2f} s -> "
        f"{result['first_epoch_ratio']:.2f}x"
    )
    if args.lut_penalty > 0:
        result["lut_median_ratio"] = med["hgq_fpga_lut"] / med["float"]
        result["lut_first_epoch_ratio"] = first["hgq_fpga_lut"] / first["float"]
        result["lut_vs_hgq_fpga"] = med["hgq_fpga_lut"] / med["hgq_fpga"]
        print(f"with the LUT term: median {result['lut_median_ratio']:.2f}x float "
              f"({result['lut_vs_hgq_fpga']:.2f}x without it), first epoch {result['lut_first_epoch_ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
