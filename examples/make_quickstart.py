"""Write ``examples/quickstart.ipynb`` from the cells below (outputs stripped).

Run:  python examples/make_quickstart.py [--output examples/quickstart.ipynb]

The notebook is generated so that its source can be reviewed here, as plain
Python strings; edit this file, not the notebook, and run it again.
``tests/examples/test_notebook.py`` checks that the committed notebook matches
this script and runs it (about a minute on two cores; the last step needs g++).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

#: ``(id, kind, source)``: the cell ids are fixed, so that regenerating changes nothing
CELLS: list[tuple[str, str, str]] = [
    ("intro", "md", """\
# hgq_fpga quickstart: a classifier in FPGA firmware, under a LUT budget

This notebook goes from a Keras model to an FPGA project in a few steps, on the
8x8 handwritten digits that ship with scikit-learn (1,797 images, 10 classes):

1. build a small network of **quantized** layers: every input, weight and bias
   carries its own number of bits, learned during training;
2. train it **under a budget** of look-up tables (LUTs), the FPGA's logic cells;
3. **estimate** the firmware's resources and write an HTML **report**;
4. **save** and **load** the model;
5. write the **hls4ml** project (C++ for high-level synthesis) and **verify** that
   the Keras model, a numpy emulation of the firmware and the compiled C++
   simulation give the same numbers, bit for bit.

Everything runs on a laptop CPU in about a minute; step 5 needs `g++`.
Files are written under `out/` in the current folder."""),
    ("setup", "code", """\
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up

import keras
import numpy as np

import hgq_fpga
from hgq_fpga.layers import QDense

keras.utils.set_random_seed(0)
data = hgq_fpga.datasets.digits()  # pixels scaled to [0, 1]
print("train", data.x_train.shape, "test", data.x_test.shape, "backend", keras.backend.backend())"""),
    ("model-md", "md", """\
## 1. A network with trainable bit-widths

`QDense` is a Keras `Dense` layer whose inputs, weights and biases are fixed-point
numbers. Each element has its own number of *fractional bits* (the bits after
the binary point), a trainable variable like the weights: training can lower
it where precision is not needed, and a weight whose bits all go is pruned.
The *integer* bits of the activations are not trained; they are set later from
the range of the data (calibration). Otherwise it is an ordinary Keras model."""),
    ("model", "code", """\
model = keras.Sequential(
    [
        keras.Input((64,)),
        QDense(32, activation="relu", name="dense_0"),
        QDense(16, activation="relu", name="dense_1"),
        QDense(10, name="logits"),
    ],
    name="quickstart_mlp",
)
model.compile(
    optimizer=keras.optimizers.Adam(3e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.summary()"""),
    ("budget-md", "md", """\
## 2. Training under a LUT budget

`hgq_fpga.ResourceBudget` is a Keras callback. During training it steers the
bit-widths towards the budget: when a differentiable estimate of the LUTs
(calibrated to the exact one) is over the budget after a batch, every layer's
bits step down by what the excess needs; while it is within, they follow the
task loss. After every epoch it computes the **exact** estimate of
the firmware (on the calibrated model); an epoch that ends over the budget is
followed by a *projection* that lowers the cheapest bits into the budget. At
the end the model is calibrated on `calibration_data` and, if still over,
repaired; so the budget is always met by the exact estimate.

The training `loss` is the classification loss alone: the budget reads the
model's cost outside the training step (one batch in 4, in 8 far below the budget, every batch while
over), so a budgeted epoch costs about what an unbudgeted one does. The callback prints one line per epoch, after
Keras's own line, and the result at the end. Lines such as `over by 1141 LUTs
after epoch 5; bits projected into the budget` are normal: training pulls the
LUT count up during an epoch and the projection brings it back; the final
check repairs the last epoch. More epochs (30 or so) give a more accurate
model at the same cost."""),
    ("budget", "code", """\
LUT_BUDGET = 4000

budget = hgq_fpga.ResourceBudget(lut=LUT_BUDGET, calibration_data=data.x_train)
history = model.fit(
    data.x_train,
    data.y_train,
    validation_data=(data.x_test, data.y_test),
    epochs=6,
    batch_size=32,
    verbose=2,
    callbacks=[budget],
)"""),
    ("result-md", "md", """\
`budget.result` holds the final exact estimate and what the repair step did;
`budget.result.to_pandas()` has one row per epoch (LUTs, DSPs, whether it was
within the budget, the LUTs after a projection, the validation accuracy)."""),
    ("result", "code", """\
budget.result"""),
    ("history", "code", """\
budget.result.to_pandas()"""),
    ("estimate-md", "md", """\
## 3. Resource estimate and report

The callback has already *calibrated* the model: the integer bits of every
activation are set from the range of `calibration_data`, so that the firmware
does not overflow on data like it. (A model trained without the callback needs
`hgq_fpga.calibrate(model, data.x_train)` before the next steps.)

`hgq_fpga.estimate` counts the firmware's LUTs and DSPs layer by layer, from the
bit-widths and the weights themselves (a multiplication by a weight that is a
power of two, or zero, costs nothing). `hgq_fpga.emulate` runs a bit-exact numpy
model of the firmware: its accuracy is the one the FPGA will have."""),
    ("estimate", "code", """\
firmware = hgq_fpga.emulate(model, data.x_test)
print(f"firmware (emulated) test accuracy: {np.mean(np.argmax(firmware, axis=1) == data.y_test):.3f}")
report = hgq_fpga.estimate(model)
report"""),
    ("report-md", "md", """\
`write_report` writes an HTML page with the estimate, the bit-widths of every
layer and plots, to open in a browser (`out/report/`)."""),
    ("report", "code", """\
from hgq_fpga.report import write_report

files = write_report(model, "out/report", overwrite=True)
print("report:", files.html)"""),
    ("save-md", "md", """\
## 4. Save and load

`model.save` writes a standard `.keras` file, bit-widths and calibration
included. `hgq_fpga.load_model` checks the archive before loading it in Keras's
safe mode; the loaded model gives the same firmware outputs."""),
    ("save", "code", """\
os.makedirs("out", exist_ok=True)
model.save("out/quickstart.keras")
loaded = hgq_fpga.load_model("out/quickstart.keras")
same = np.array_equal(hgq_fpga.emulate(loaded, data.x_test), firmware)
print("loaded model: same firmware outputs" if same else "loaded model DIFFERS")"""),
    ("hls4ml-md", "md", """\
## 5. The hls4ml project, verified bit for bit

`hgq_fpga.to_hls4ml` writes an hls4ml project: C++ firmware with one fixed-point
type per element, ready for Vitis HLS (`out/hls4ml_prj/`).

`hgq_fpga.verify` compiles the project's C++ simulation with `g++` (10-20 s)
and runs the Keras model, the numpy emulator and the C simulation on the same
inputs. Besides the test set, the inputs include values far outside the
calibrated range, which overflow on purpose: the three must agree there too.
**BIT-EXACT** means zero differing bits in every output."""),
    ("hls4ml", "code", """\
project = hgq_fpga.to_hls4ml(model, "out/hls4ml_prj", overwrite=True)
print(sorted(p.name for p in Path("out/hls4ml_prj").iterdir()))"""),
    ("verify", "code", """\
rng = np.random.default_rng(1)
far = data.x_test[:100] * rng.uniform(4, 64, (100, 1)).astype("float32")  # overflows on purpose
probe = np.concatenate([data.x_test, far, -data.x_test[:100]])
result = hgq_fpga.verify(model, probe)
print(result)"""),
    ("next-md", "md", """\
## Next steps

* Synthesize the project with Vitis HLS (`out/hls4ml_prj/build_prj.tcl`) for the
  vendor's own resource and latency report.
* `python examples/budget_sweep.py` trains one model at budgets from 5% to 100%
  of its cost and plots accuracy against LUTs.
* The command line: `hgq-fpga --help` (estimate, report, convert, verify a saved
  `.keras` model).
* `docs/guide.md` explains the concepts; `docs/api.md` lists the API."""),
]


def build() -> nbformat.NotebookNode:
    """The notebook, without outputs."""
    cells = []
    for cell_id, kind, source in CELLS:
        make = new_markdown_cell if kind == "md" else new_code_cell
        cell = make(source=source, id=cell_id)
        if kind == "code":
            cell.metadata["tags"] = [cell_id]
        cells.append(cell)
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(argv: list[str] | None = None) -> int:
    """Write the notebook (default: next to this script)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "quickstart.ipynb")
    args = parser.parse_args(argv)
    nb = build()
    nbformat.validate(nb)
    args.output.write_text(nbformat.writes(nb) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
