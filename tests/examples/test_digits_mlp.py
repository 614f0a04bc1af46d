"""The digits MLP example reaches the accuracy and bit targets of its README."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import hgq_fpga


@pytest.mark.slow
def test_digits_mlp_meets_targets(tmp_path, load_example):
    example = load_example("digits_mlp")
    model, results = example.train()  # the example's defaults, as `make demo` runs it
    assert results["test_accuracy"] >= 0.95, results
    assert results["mean_weight_bits"] < 6.0, results
    assert results["pruned_fraction"] >= 0.10, results
    assert hgq_fpga.is_calibrated(model)
    path = tmp_path / "digits.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = hgq_fpga.datasets.digits().x_test
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_example_cli_runs_briefly(tmp_path, capsys, load_example):
    example = load_example("digits_mlp")
    out = tmp_path / "m.keras"
    assert example.main(["--epochs", "1", "--output", str(out), "--json", str(tmp_path / "r.json")]) == 0
    assert out.exists() and (tmp_path / "r.json").exists()
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "Resource estimate" in printed
    import json

    estimate = json.loads((tmp_path / "r.json").read_text())["estimate"]
    assert estimate["lut"] > 0 and estimate["ebops"] > 0
