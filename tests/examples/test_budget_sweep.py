"""The budget sweep example: every run inside its budget, table and plot written."""

from __future__ import annotations

import csv

import keras
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the examples are tested on TensorFlow, the default backend")


@pytest.mark.slow
# the CNN under a budget: tests/examples/test_digits_cnn.py; more budgets: tests/sweeps
@pytest.mark.parametrize(("model", "fractions"), [("mlp", ["0.05"])])
def test_sweep_runs_end_inside_their_budgets(model, fractions, tmp_path, load_example):
    example = load_example("budget_sweep")
    out = tmp_path / "sweep"
    code = example.main(["--model", model, "--epochs", "2", "--fractions", *fractions, "--out", str(out)])
    assert code == 0  # the example returns 1 if any run ends outside its budget
    rows = list(csv.DictReader((tmp_path / f"sweep_{model}.csv").open()))
    assert len(rows) == len(fractions)
    for row in rows:
        assert row["feasible"] == "True" and float(row["lut"]) <= float(row["budget_lut"])
    png = tmp_path / f"sweep_{model}.png"
    assert png.exists() and png.stat().st_size > 5000
