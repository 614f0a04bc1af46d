"""The digits MLP example (``make demo``) reaches the accuracy and bit targets of its README, under
its LUT budget, and writes what it says it writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

import hgq_fpga

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_digits_mlp_meets_targets(tmp_path, load_example):
    example = load_example("digits_mlp")
    # the example's defaults and budget, as `make demo` runs it
    model, results = example.train(lut_budget=example.DEMO_LUT_BUDGET)
    budget = results["budget"]
    assert budget["feasible"] and budget["final_lut"] <= example.DEMO_LUT_BUDGET, budget
    assert hgq_fpga.estimate(model).lut == budget["final_lut"]
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
    estimate = json.loads((tmp_path / "r.json").read_text())["estimate"]
    assert estimate["lut"] > 0 and estimate["ebops"] > 0


def test_a_budgeted_run_stays_within_and_writes_its_report(tmp_path, capsys, load_example):
    """What ``make demo`` runs, in two epochs: the exact estimate of the trained model within the
    budget (the budget's result and the example's own estimate), the project verified and the HTML
    report written, both on the test split the run held out (``--seed 1``: not the default's)."""
    example = load_example("digits_mlp")
    budget = 12_000
    args = ["--epochs", "2", "--seed", "1", "--lut-budget", str(budget), "--json", str(tmp_path / "r.json"),
            "--project", str(tmp_path / "project"), "--report", str(tmp_path / "report")]
    assert example.main(args) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["budget"]["feasible"] and results["estimate"]["lut"] <= budget, results
    assert results["budget"]["final_lut"] == results["estimate"]["lut"]
    # the firmware's accuracy is taken on the held-out split, as Keras's is (bit-exact: equal)
    assert results["verify"]["mismatches"] == 0
    assert results["verify"]["firmware_accuracy"] == results["test_accuracy"], results
    html = (tmp_path / "report" / "report.html").read_text()
    assert "digits_mlp" in html and "BIT-EXACT" in html.upper()
    assert "report written to" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the folders are there now: refused before any training
        example.main(args)
    assert "--project" in capsys.readouterr().err


def test_a_budget_of_no_luts_is_refused(capsys, load_example):
    with pytest.raises(SystemExit):
        load_example("digits_mlp").main(["--lut-budget", "-5"])
    assert "--lut-budget must be a number of LUTs > 0; received -5" in capsys.readouterr().err


def test_make_demo_and_the_cli_demo_train_under_the_examples_budget(load_example):
    from hgq_fpga.cli import build_parser

    demo = load_example("digits_mlp").DEMO_LUT_BUDGET
    recipe = re.search(r"^demo:.*?(?=^\S)", (ROOT / "Makefile").read_text(), re.M | re.S).group(0)
    assert re.search(r"--lut-budget (\d+)", recipe).group(1) == str(demo)
    assert "--report" in recipe
    assert build_parser().parse_args(["demo"]).lut_budget == demo
