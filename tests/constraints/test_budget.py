"""ResourceBudget: the budget is met (exact estimate), errors, checkpoints, repair."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.constraints import ResourceBudget, minimum_cost, repair_to_budget
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QDense
from hgq_fpga.resources import CostModel, estimate

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="ResourceBudget needs TensorFlow")


@pytest.fixture(scope="module")
def data():
    d = digits(seed=0)
    return d.x_train[:600], d.y_train[:600], d.x_test[:300], d.y_test[:300]


def mlp(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), QDense(24, activation="relu"), QDense(10)])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def unconstrained_cost(data) -> float:
    x, y, _, _ = data
    model = mlp()
    model.fit(x, y, epochs=3, verbose=0)
    hgq_fpga.calibrate(model, x)
    return estimate(model).lut


@pytest.mark.parametrize("method", ["constraint", "primal_dual"])
@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_budget_is_met_by_the_exact_estimate(method, fraction, data):
    x, y, xv, yv = data
    budget = fraction * unconstrained_cost(data)
    model = mlp()
    cb = ResourceBudget(lut=budget, calibration_data=x, method=method, verbose=0)
    history = model.fit(x, y, validation_data=(xv, yv), epochs=3, verbose=0, callbacks=[cb])
    assert cb.result is not None and cb.result.feasible
    # independently: calibrate and estimate again
    hgq_fpga.calibrate(model, x)
    assert estimate(model).lut <= budget
    assert {"lut", "dsp", "budget_feasible", "feasible_val_accuracy"} <= set(history.history)
    assert all(not hasattr(layer, "_cost_hook") or "_cost_hook" not in layer.__dict__ for layer in model.layers)


def test_infeasible_budget_is_refused_before_training_with_the_minimum(data):
    x, y, _, _ = data
    model = mlp()
    floor = minimum_cost(model, x).lut
    cb = ResourceBudget(lut=max(floor - 50, 0), calibration_data=x, verbose=0)
    with pytest.raises(ValueError, match=r"below the smallest cost this architecture can reach: \d+ LUTs"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[cb])


def test_checkpoints_are_chosen_among_feasible_epochs(data, tmp_path):
    x, y, xv, yv = data
    budget = 0.3 * unconstrained_cost(data)
    model = mlp(1)
    cb = ResourceBudget(lut=budget, calibration_data=x, verbose=0, restore_best_feasible=False)
    path = tmp_path / "best.keras"
    ckpt = keras.callbacks.ModelCheckpoint(path, monitor="feasible_val_accuracy", mode="max", save_best_only=True)
    history = model.fit(x, y, validation_data=(xv, yv), epochs=4, verbose=0, callbacks=[cb, ckpt])
    feasible = history.history["budget_feasible"]
    if any(feasible):
        assert path.exists()
        import hgq_fpga.layers

        best = keras.saving.load_model(path)
        hgq_fpga.calibrate(best, x)
        assert estimate(best).lut <= budget
    scores = history.history["feasible_val_accuracy"]
    assert all((s == -np.inf) == (not f) for s, f in zip(scores, feasible))


def test_repair_brings_a_model_within_budget(data):
    x, y, _, _ = data
    model = mlp(2)
    model.fit(x, y, epochs=2, verbose=0)
    hgq_fpga.calibrate(model, x)
    before = estimate(model).lut
    result = repair_to_budget(model, x, lut=0.4 * before)
    assert result.rounds >= 1 and sum(result.lowered.values()) > 0
    assert result.after.lut <= 0.4 * before
    assert estimate(model).lut <= 0.4 * before  # the model itself was changed and calibrated
    assert "repair:" in str(result)
    assert repair_to_budget(model, x, lut=before).rounds == 0


def test_dsp_budget(data):
    x, y, _, _ = data
    model = mlp(3)
    model.fit(x, y, epochs=1, verbose=0)
    cm = CostModel(dsp_min_bits=4)  # so that this small model uses DSPs
    hgq_fpga.calibrate(model, x)
    assert estimate(model, cost_model=cm).dsp > 0
    result = repair_to_budget(model, x, dsp=0, cost_model=cm)
    assert result.after.dsp == 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "give lut=, dsp= or both"),
    ({"lut": -1}, "lut must be a number >= 0"),
    ({"lut": 100, "method": "pid"}, "method must be one of"),
    ({"lut": 100, "check_every": 0}, "check_every must be >= 1"),
    ({"lut": 100, "calibration_data": None}, "calibration_data is required"),
])
def test_bad_arguments(kwargs, match, data):
    kwargs = {"calibration_data": data[0], **kwargs}
    with pytest.raises(ValueError, match=match):
        ResourceBudget(**kwargs)


def test_wrong_calibration_shape_is_named(data):
    x, y, _, _ = data
    cb = ResourceBudget(lut=1000, calibration_data=x[:, :10], verbose=0)
    with pytest.raises(ValueError, match="calibration_data"):
        mlp().fit(x, y, epochs=1, verbose=0, callbacks=[cb])
