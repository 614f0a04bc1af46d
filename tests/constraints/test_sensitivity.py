"""Layer sensitivities: what one bit less per layer saves and changes, measured on the model as it is,
which is left untouched; in the budget's result, the report and the CLI."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.constraints import layer_sensitivities
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QDense


@pytest.fixture(scope="module")
def trained():
    d = digits(seed=0)
    x, y = d.x_train[:500], d.y_train[:500]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), QDense(16, activation="relu", name="hidden"),
                              QDense(10, name="logits")])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, verbose=0)
    hgq_fpga.calibrate(model, x)
    return model, x


def test_each_layer_one_bit_shorter_as_measured_by_hand(trained):
    model, x = trained
    weights = [np.array(w) for w in model.get_weights()]
    state = [np.array(keras.ops.convert_to_numpy(v)) for v in model.non_trainable_variables]
    lut0 = hgq_fpga.estimate(model).lut
    s = layer_sensitivities(model, x)
    assert [r.layer for r in s.rows] == ["hidden", "logits"] and s.n_samples == 500
    # the model is exactly as it was: weights, bits, calibration
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert all(np.array_equal(a, keras.ops.convert_to_numpy(b)) for a, b in zip(state, model.non_trainable_variables))
    assert hgq_fpga.estimate(model).lut == lut0 and hgq_fpga.is_calibrated(model)
    # by hand, for the first layer: one bit less, calibrate, estimate, compare the predictions
    before = np.argmax(hgq_fpga.emulate(model, x), axis=1)
    kq = model.get_layer("hidden").kernel_quantizer
    f0 = np.array(keras.ops.convert_to_numpy(kq.f_value()))
    kq.set_f(f0 - 1)
    hgq_fpga.calibrate(model, x)
    lut1 = hgq_fpga.estimate(model).lut
    after = np.argmax(hgq_fpga.emulate(model, x), axis=1)
    kq.set_f(f0)
    hgq_fpga.calibrate(model, x)
    row = s.rows[0]
    assert row.lut_saved == lut0 - lut1 > 0
    assert row.changed == pytest.approx(np.mean(before != after))
    assert row.per_klut == pytest.approx(1000 * row.changed / row.lut_saved)
    assert "hidden" in str(s) and "LUT saved" in str(s)
    assert list(s.to_pandas()["layer"]) == ["hidden", "logits"] and "<table" in s._repr_html_()


def test_the_budgets_result_carries_them_when_it_has_data(trained):
    model, x = trained
    d = digits(seed=0)
    keras.utils.set_random_seed(1)
    fresh = keras.models.clone_model(model)
    fresh.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = hgq_fpga.ResourceBudget(lut=0.5 * hgq_fpga.estimate(model).lut, calibration_data=x, verbose=0)
    fresh.fit(x, d.y_train[:500], epochs=2, verbose=0, callbacks=[cb])
    sens = cb.result.sensitivities
    assert [r.layer for r in sens.rows] == ["hidden", "logits"] and all(r.lut_saved >= 0 for r in sens.rows)
    assert "layer sensitivities" in str(cb.result)
    assert hgq_fpga.estimate(fresh).lut == cb.result.report.lut  # measuring them left the result as it was


def test_the_cli_prints_them_with_data(trained, tmp_path, cli):
    model, x = trained
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    code, out, err = cli("estimate", str(tmp_path / "m.keras"), "--data", str(tmp_path / "x.npy"))
    assert code == 0, err
    assert "layer sensitivities" in out and "hidden" in out.split("layer sensitivities")[1]
