"""The jet-tagging example, offline on the generated sample of the same schema."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from hgq_fpga.datasets import JET_CLASSES, JET_FEATURES, jets_sample


def test_sample_has_the_schema_of_the_real_data():
    d = jets_sample(500, seed=1)
    assert d.x_train.shape[1] == len(JET_FEATURES) == 16
    assert set(np.unique(d.y_train)) == set(range(len(JET_CLASSES)))
    assert abs(float(d.x_train.mean())) < 0.05 and abs(float(d.x_train.std()) - 1) < 0.05
    with pytest.raises(ValueError, match="n must be >= 50"):
        jets_sample(10)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the examples are tested on TensorFlow, the default backend")
def test_example_runs_offline_under_a_budget(tmp_path, load_example):
    example = load_example("jet_tagging")
    out = tmp_path / "r.json"
    code = example.main(["--offline", "--samples", "3000", "--epochs", "6", "--batch-size", "32", "--lut", "6000", "--json", str(out)])
    assert code == 0
    r = json.loads(out.read_text())
    # 5 classes: chance is 0.2. Six epochs at this budget reach 0.46-0.53 by seed (seeds 0-3, with and
    # without spread_whole_bits): 0.5 was the median, not a floor
    assert r["lut"] <= 6000 and r["accuracy"] > 0.4
