"""Train a small digits CNN (Conv2D-MaxPool-Dense) with per-element bits, optionally under a LUT budget.

Run:  python examples/digits_cnn.py [--epochs 30] [--lut 15000] [--output out/digits_cnn.keras]
                                    [--project out/digits_cnn_hls4ml [--overwrite]]

What it does: loads scikit-learn's 8x8 digits as images, trains
8x8x1 -> Conv2D(8, 3x3, relu) -> MaxPool 2x2 -> Dense(16, relu) -> Dense(10)
with trainable per-element bits (and, with ``--lut``, a
:class:`hgq_fpga.ResourceBudget` that guarantees the exact LUT estimate ends
within the budget), calibrates, prints accuracy, bits and the resource
estimate. With ``--project`` it writes the hls4ml project and verifies Keras =
emulator = C simulation on the test images plus images scaled far beyond the
calibrated range.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hgq_fpga.startup import import_keras_quietly

import_keras_quietly()  # without TensorFlow's start-up notices (errors still show)
import keras  # noqa: E402
import numpy as np

import hgq_fpga
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QConv2D, QDense, QMaxPooling2D


def build_model(penalty: float = 1e-6) -> keras.Model:
    """The CNN; every input, weight and bias element has its own fractional bits."""
    kw: dict[str, Any] = {"ebops_penalty": penalty}
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        QConv2D(8, 3, activation="relu", name="conv", **kw),
        QMaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flatten"),
        QDense(16, activation="relu", name="dense", **kw),
        QDense(10, name="logits", **kw),
    ], name="digits_cnn")


def train(*, epochs: int = 30, lut: float | None = None, penalty: float = 1e-6, seed: int = 0,
          verbose: int = 0) -> tuple[keras.Model, dict[str, Any]]:
    """Train (under ``lut`` if given), calibrate and evaluate; return the model and a results dict."""
    keras.utils.set_random_seed(seed)
    data = digits(seed=seed, image=True)
    model = build_model(0.0 if lut else penalty)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    callbacks = []
    if lut:
        callbacks.append(hgq_fpga.ResourceBudget(lut=lut, calibration_data=data.x_train))
    t0 = time.perf_counter()
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=verbose,
              validation_data=(data.x_test, data.y_test), callbacks=callbacks)
    seconds = time.perf_counter() - t0
    hgq_fpga.calibrate(model, data.x_train)
    accuracy = float(np.mean(np.argmax(model.predict(data.x_test, verbose=0), axis=1) == data.y_test))
    stats = hgq_fpga.bit_summary(model)
    report = hgq_fpga.estimate(model)
    return model, {
        "test_accuracy": accuracy, "mean_weight_bits": stats.mean_weight_bits,
        "pruned_fraction": stats.pruned_fraction, "n_weights": stats.n_weights,
        "lut": report.lut, "dsp": report.dsp, "budget_lut": lut, "train_seconds": seconds, "epochs": epochs,
    }


def convert_and_verify(model: keras.Model, project: Path, *, overwrite: bool, seed: int = 0) -> dict[str, Any]:
    """Write the hls4ml project; Keras, emulator and C simulation must agree bit for bit, on the test
    split of ``seed`` (the one :func:`train` held out) and inputs far outside it."""
    data = digits(seed=seed, image=True)
    rng = np.random.default_rng(1)
    far = data.x_test[:100] * rng.uniform(4, 64, (100, 1, 1, 1)).astype("float32")  # overflows on purpose
    probe = np.concatenate([data.x_test, far, -data.x_test[:50]])
    result = hgq_fpga.verify(model, probe, output_dir=project, overwrite=overwrite)
    print(result)
    return {"mismatches": result.mismatches, "samples": result.n_samples, **result.seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lut", type=float, default=None, help="LUT budget (exact estimate) to train under")
    parser.add_argument("--penalty", type=float, default=1e-6, help="EBOPs loss weight (without --lut)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="save the model (.keras)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--project", type=Path, default=None, help="write and verify an hls4ml project here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --project folder")
    args = parser.parse_args(argv)
    if args.project is not None and args.project.exists() and not args.overwrite:
        parser.error(f"{args.project} exists; pass --overwrite to replace it")
    model, results = train(epochs=args.epochs, lut=args.lut, penalty=args.penalty, seed=args.seed, verbose=2)
    print(hgq_fpga.bit_summary(model))
    print(hgq_fpga.estimate(model))
    budget = f" (budget {args.lut:.0f})" if args.lut else ""
    print(f"test accuracy {results['test_accuracy']:.4f}; {results['lut']} LUTs{budget}, {results['dsp']} DSPs; "
          f"pruned {results['pruned_fraction']:.1%} of {results['n_weights']} weights")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        model.save(args.output)
    if args.project is not None:
        results["verify"] = convert_and_verify(model, args.project, overwrite=args.overwrite, seed=args.seed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    over_budget = args.lut is not None and results["lut"] > args.lut
    return 1 if over_budget or results.get("verify", {}).get("mismatches", 0) else 0


if __name__ == "__main__":
    raise SystemExit(main())
