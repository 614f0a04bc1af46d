"""The model report on the digits MLP: plots exist, are not empty, have one panel per layer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hgq_fpga.datasets import digits
from hgq_fpga.report import write_report

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_mlp.py"


def test_digits_mlp_report(tmp_path):
    spec = importlib.util.spec_from_file_location("digits_mlp_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, _ = example.train(epochs=2)
    files = write_report(model, tmp_path / "report")
    n_layers = 4  # dense_0, dense_1, dense_2, logits
    assert files.panels == {"weight_bits_hist": n_layers, "weight_bits_map": n_layers, "resources": 1}
    for path in files.plots.values():
        assert path.exists() and path.stat().st_size > 5000
    text = files.html.read_text()
    assert text.count("data:image/png;base64,") == 3
    for name in ("dense_0", "dense_1", "dense_2", "logits"):
        assert name in text
    with pytest.raises(FileExistsError, match="exists"):
        write_report(model, tmp_path / "report")


@pytest.mark.slow
def test_report_with_verification(tmp_path):
    spec = importlib.util.spec_from_file_location("digits_mlp_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, _ = example.train(epochs=1)
    files = write_report(model, tmp_path / "r", data=digits().x_test[:100])
    assert "BIT-EXACT" in files.html.read_text()
