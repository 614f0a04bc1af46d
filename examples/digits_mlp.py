"""Train the digits MLP (64-64-32-32-10) with per-element trainable bit-widths.

Run:  python examples/digits_mlp.py [--epochs 60] [--penalty 2e-6] [--lut-budget 20000]
                                    [--output out/digits_mlp.keras] [--project out/digits_mlp_hls4ml]
                                    [--report out/digits_mlp_report] [--overwrite]

What it does: loads scikit-learn's bundled 8x8 digits, trains an hgq_fpga MLP
whose every input, weight and bias element learns its own fractional bits
(with a small EBOPs penalty that pushes bits down and prunes weights), with
``--lut-budget`` under a LUT budget (:class:`hgq_fpga.ResourceBudget`: the exact
estimate of the trained model is within it, calibrated on the training set),
calibrates the activation ranges on the training set, and prints the test
accuracy and the bit statistics. With ``--project`` it also writes the hls4ml
project and verifies, on the test set plus inputs far outside the calibrated
range, that Keras, the numpy emulator and the g++ C simulation agree bit for bit;
with ``--report`` it writes the HTML report (bits, resources, the layers'
sensitivities, the verification on the test set). ``make demo`` runs all of it
with a budget of :data:`DEMO_LUT_BUDGET` LUTs.
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
from hgq_fpga.layers import QDense

#: the LUT budget of ``make demo`` (about 60% of what the example costs without one, 32,636)
DEMO_LUT_BUDGET = 20_000


def build_model(penalty: float = 2e-6, *, weight_f0: float = 6.0, input_f0: float = 6.0) -> keras.Model:
    """The 64-64-32-32-10 MLP with quantized inputs, weights and biases."""
    kw: dict[str, Any] = dict(
        ebops_penalty=penalty,
        kernel_quantizer={"f0": weight_f0},
        input_quantizer={"f0": input_f0},
    )
    return keras.Sequential(
        [
            keras.Input((64,)),
            QDense(64, activation="relu", name="dense_0", **kw),
            QDense(32, activation="relu", name="dense_1", **kw),
            QDense(32, activation="relu", name="dense_2", **kw),
            QDense(10, name="logits", **kw),
        ],
        name="digits_mlp",
    )


def train(
    *,
    epochs: int = 60,
    penalty: float = 2e-6,
    seed: int = 0,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    verbose: int = 0,
    lut_budget: float | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Train (under ``lut_budget`` LUTs when given), calibrate and evaluate; return the model and a
    results dict (with a budget, ``results["budget"]``: the budget, the final exact estimate, whether
    it is within, and the final guarantee's repair rounds)."""
    keras.utils.set_random_seed(seed)
    data = digits(seed=seed)
    model = build_model(penalty)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    budget = None if lut_budget is None else hgq_fpga.ResourceBudget(lut=lut_budget, calibration_data=data.x_train)
    t0 = time.perf_counter()
    model.fit(
        data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=verbose,
        callbacks=[budget] if budget is not None else None,
    )
    seconds = time.perf_counter() - t0
    hgq_fpga.calibrate(model, data.x_train)
    logits = model.predict(data.x_test, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == data.y_test))
    stats = hgq_fpga.bit_summary(model)
    results = {
        "test_accuracy": accuracy,
        "mean_weight_bits": stats.mean_weight_bits,
        "pruned_fraction": stats.pruned_fraction,
        "mean_activation_bits": stats.mean_activation_bits,
        "n_weights": stats.n_weights,
        "train_seconds": seconds,
        "epochs": epochs,
    }
    if budget is not None:
        results["budget"] = {"lut": float(lut_budget), "final_lut": budget.result.report.lut,
                             "feasible": budget.result.feasible, "repair_rounds": budget.result.repair.rounds}
    return model, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--penalty", type=float, default=2e-6, help="EBOPs loss weight")
    parser.add_argument("--lut-budget", type=float, default=None, metavar="LUTS",
                        help=f"train under this LUT budget (make demo: {DEMO_LUT_BUDGET})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="save the model (.keras)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--project", type=Path, default=None, help="write and verify an hls4ml project here")
    parser.add_argument("--report", type=Path, default=None, help="write the HTML report into this folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --project or --report folder")
    args = parser.parse_args(argv)
    for flag, folder in (("--project", args.project), ("--report", args.report)):
        if folder is not None and folder.exists() and not args.overwrite:
            parser.error(f"{flag} {folder} exists; pass --overwrite to replace it")
    if args.lut_budget is not None and not args.lut_budget > 0:
        parser.error(f"--lut-budget must be a number of LUTs > 0; received {args.lut_budget:g}")
    model, results = train(epochs=args.epochs, penalty=args.penalty, seed=args.seed, verbose=2,
                           lut_budget=args.lut_budget)
    print(hgq_fpga.bit_summary(model))
    print(
        f"test accuracy {results['test_accuracy']:.4f}, mean weight bits "
        f"{results['mean_weight_bits']:.2f}, pruned {results['pruned_fraction']:.1%} of "
        f"{results['n_weights']} weights, trained in {results['train_seconds']:.1f} s"
    )
    report = hgq_fpga.estimate(model)
    print(report)
    results["estimate"] = {"lut": report.lut, "dsp": report.dsp, "carry": report.carry, "ebops": report.ebops}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        model.save(args.output)
        print(f"saved {args.output}")
    if args.project is not None:
        results["verify"] = convert_and_verify(model, args.project, overwrite=args.overwrite, seed=args.seed)
    if args.report is not None:
        from hgq_fpga.report import write_report

        files = write_report(model, args.report, data=digits(seed=args.seed).x_test, overwrite=args.overwrite,
                             model_path=args.output)
        results["report"] = str(files.html)
        print(f"report written to {files.html}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if results.get("verify", {}).get("mismatches", 0) == 0 else 1


def convert_and_verify(model: keras.Model, project: Path, *, overwrite: bool, seed: int = 0) -> dict[str, Any]:
    """Write the hls4ml project and check Keras / emulator / C simulation agree, on the test split of
    ``seed`` (the one :func:`train` held out) and inputs far outside it."""
    data = digits(seed=seed)
    rng = np.random.default_rng(1)
    far = data.x_test[:200] * rng.uniform(4, 64, (200, 1)).astype("float32")  # overflows on purpose
    probe = np.concatenate([data.x_test, far, -data.x_test[:100]])
    result = hgq_fpga.verify(model, probe, output_dir=project, overwrite=overwrite)
    print(result)
    emulated = hgq_fpga.emulate(model, data.x_test)
    accuracy = float(np.mean(np.argmax(emulated, axis=1) == data.y_test))
    print(f"firmware (emulated) test accuracy {accuracy:.4f}; project written to {project}")
    return {"mismatches": result.mismatches, "samples": result.n_samples, "firmware_accuracy": accuracy, **result.seconds}


if __name__ == "__main__":
    raise SystemExit(main())
