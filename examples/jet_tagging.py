"""Jet tagging on the hls4ml LHC jet data: a 16-64-32-32-5 MLP with per-element bits,
optionally under a LUT budget; estimate and (optionally) an hls4ml project.

Run:  python examples/jet_tagging.py [--epochs 20] [--limit 100000] [--lut 20000] [--project DIR]
      python examples/jet_tagging.py --offline     # generated stand-in data, no download

The data is OpenML's ``hls4ml_lhc_jets_hlf`` (16 high-level features, 5
classes: g, q, t, W, Z), downloaded once by scikit-learn. ``--offline`` uses
``hgq_fpga.datasets.jets_sample``: same schema, generated, not physics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hgq_fpga.startup import import_keras_quietly

import_keras_quietly()  # without TensorFlow's start-up notices (errors still show)
import keras  # noqa: E402
import numpy as np

import hgq_fpga
from hgq_fpga.datasets import jets, jets_sample
from hgq_fpga.layers import QDense


def build_model() -> keras.Model:
    model = keras.Sequential([
        keras.Input((16,)),
        QDense(64, activation="relu", name="dense_0"),
        QDense(32, activation="relu", name="dense_1"),
        QDense(32, activation="relu", name="dense_2"),
        QDense(5, name="logits"),
    ], name="jet_tagger")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--limit", type=int, default=100_000, help="samples of the real data to use")
    parser.add_argument("--offline", action="store_true", help="generated stand-in data (no download)")
    parser.add_argument("--samples", type=int, default=5000, help="size of the offline sample")
    parser.add_argument("--lut", type=float, default=None, help="train under this LUT budget")
    parser.add_argument("--project", type=Path, default=None, help="write the hls4ml project here")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = jets_sample(args.samples, seed=args.seed) if args.offline else jets(seed=args.seed, limit=args.limit)
    keras.utils.set_random_seed(args.seed)
    model = build_model()
    callbacks = []
    if args.lut is not None:
        callbacks.append(hgq_fpga.ResourceBudget(lut=args.lut, calibration_data=data.x_train[:5000], verbose=0))
    model.fit(data.x_train, data.y_train, validation_data=(data.x_test, data.y_test), epochs=args.epochs,
              batch_size=args.batch_size, verbose=2, callbacks=callbacks)
    hgq_fpga.calibrate(model, data.x_train)
    report = hgq_fpga.estimate(model)
    print(report)
    accuracy = float(np.mean(np.argmax(hgq_fpga.emulate(model, data.x_test), axis=1) == data.y_test))
    print(f"firmware (emulated) test accuracy {accuracy:.4f}, {report.lut:.0f} LUTs, {report.dsp} DSPs")
    results = {"accuracy": accuracy, "lut": report.lut, "dsp": report.dsp, "ebops": report.ebops,
               "offline": args.offline, "budget": args.lut}
    if args.project is not None:
        hgq_fpga.to_hls4ml(model, args.project, overwrite=args.overwrite)
        print(f"wrote {args.project}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if args.lut is None or report.lut <= args.lut else 1


if __name__ == "__main__":
    raise SystemExit(main())
