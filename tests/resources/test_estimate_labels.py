"""Every estimate says what it counts and how that was checked, per strategy (issue 16: honest labels)."""

from __future__ import annotations

import pytest

from hgq_fpga.resources import CostModel, ResourceReport
from hgq_fpga.resources.estimate import COUNTS, FITTED, NOT_MODELLED, STRATEGIES


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_label_follows_the_strategy(strategy):
    report = ResourceReport([], strategy, "xcvu13p-flga2577-2-e", CostModel.for_part("xcvu13p-flga2577-2-e"))
    text = " ".join(str(report).split())  # unwrapped
    assert report.what_it_counts == COUNTS[strategy]
    assert f"counts: {COUNTS[strategy]}" in text and NOT_MODELLED in text


def test_the_latency_label_names_its_checks_and_the_vendor_gap():
    label = COUNTS["Latency"]
    assert "each adder kept as an instance" in label and "flattened" in label and "fit_cost_model" in label
    assert "da4ml" in COUNTS["distributed_arithmetic"] and "yosys" in COUNTS["distributed_arithmetic"]


def test_fitted_coefficients_are_labelled_as_such():
    report = ResourceReport([], "Latency", "xcvu13p-flga2577-2-e", CostModel(adder=0.8))
    assert report.what_it_counts == FITTED and "fitted CostModel" in str(report)
