"""The digits CNN example: trains, meets its budget, and its project is bit-exact."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import keras
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_cnn.py"

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="ResourceBudget needs TensorFlow")


def load_example():
    spec = importlib.util.spec_from_file_location("digits_cnn_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_digits_cnn_under_a_budget_converts_bit_exactly(tmp_path):
    example = load_example()
    out = tmp_path / "r.json"
    code = example.main(["--epochs", "4", "--lut", "6000", "--project", str(tmp_path / "prj"), "--json", str(out)])
    results = json.loads(out.read_text())
    assert code == 0, results
    assert results["lut"] <= 6000 and results["verify"]["mismatches"] == 0
    assert results["test_accuracy"] > 0.5, results  # 4 epochs under a tight budget: well above chance
    assert (tmp_path / "prj" / "firmware").is_dir()


def test_existing_project_is_refused(tmp_path, capsys):
    (tmp_path / "prj").mkdir()
    with pytest.raises(SystemExit):
        load_example().main(["--epochs", "1", "--project", str(tmp_path / "prj")])
    assert "--overwrite" in capsys.readouterr().err
