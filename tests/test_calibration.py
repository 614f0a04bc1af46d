"""calibrate(): ranges from data, no overflow on that data, clear errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import hgq_fpga
from hgq_fpga.layers import QActivation, QAdd, QConv2D, QDense, QMaxPooling2D
from hgq_fpga.testing import model_outputs, variable_values


def small_cnn() -> keras.Model:
    inp = keras.Input((6, 6, 1))
    x = QConv2D(3, 3, activation="relu", name="conv")(inp)
    x = QMaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten()(x)
    a = QDense(4, name="a")(x)
    b = QDense(4, name="b")(x)
    y = QAdd(name="add")([a, b])
    return keras.Model(inp, QActivation("relu", name="out")(y))


def test_calibration_sets_ranges_without_touching_weights(rng):
    model = small_cnn()
    x = (rng.standard_normal((64, 6, 6, 1)) * 3).astype("float32")
    before = {l.name: variable_values(l) for l in model.layers}
    fresh = model_outputs(model, [x])  # fresh quantizers only round
    result = hgq_fpga.calibrate(model, x, batch_size=10)
    assert hgq_fpga.is_calibrated(model)
    assert result.n_samples == 64 and len(result.rows) == 7  # conv, pool, a, b, add x2, out
    assert "calibrated on 64 samples" in str(result)
    # nothing overflows on the calibration data: identical to rounding only
    np.testing.assert_array_equal(model_outputs(model, [x]), fresh)
    for layer in model.layers:
        for key, value in variable_values(layer).items():
            if key.split("/")[-1] not in ("vmin", "vmax", "state"):
                np.testing.assert_array_equal(value, before[layer.name][key], err_msg=key)
    # the first quantizer's range is the data's per-element range
    conv_q = model.get_layer("conv").input_quantizer
    np.testing.assert_array_equal(ops.convert_to_numpy(conv_q.vmax)[0], np.maximum(x.max(0), 0))


def test_overflow_beyond_calibrated_range(rng):
    model = keras.Sequential([keras.Input((3,)), QActivation("linear")])
    x = np.array([[0.5, -1.0, 0.0], [1.5, 0.25, 0.0]], "float32")
    hgq_fpga.calibrate(model, x)
    out = model_outputs(model, [np.array([[2.0, -2.5, 5.0]], "float32")])
    # element 0: ufixed<7,1> wraps 2.0 to 0; element 1: fixed<7,1> wraps -2.5 to -0.5;
    # element 2 never saw data: zero bits, constant 0
    np.testing.assert_array_equal(out, [[0.0, -0.5, 0.0]])


def test_training_after_calibration_clears_the_flag(rng):
    model = keras.Sequential([keras.Input((4,)), QDense(2)])
    x = rng.standard_normal((8, 4)).astype("float32")
    hgq_fpga.calibrate(model, x)
    model.compile("adam", "mse")
    model.train_on_batch(x, np.zeros((8, 2), "float32"))
    assert not hgq_fpga.is_calibrated(model)


@pytest.mark.parametrize(
    "data,match",
    [
        (np.full((4, 3), np.nan, "float32"), "NaN/Inf"),
        (np.ones((4, 5), "float32"), r"shape \(batch, 3\)"),
        ([np.ones((4, 3)), np.ones((4, 3))], "has 1 input"),
        (np.ones((0, 3), "float32"), "empty"),
    ],
)
def test_bad_calibration_data(data, match):
    model = keras.Sequential([keras.Input((3,)), QDense(2)])
    with pytest.raises(ValueError, match=match):
        hgq_fpga.calibrate(model, data)
    assert not hgq_fpga.is_calibrated(model)


def test_calibrate_needs_quantizers_and_positive_batches():
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="plain Keras model .* no hgq_fpga layers.* build it with hgq_fpga.layers"):
        hgq_fpga.calibrate(plain, np.ones((2, 3)))
    model = keras.Sequential([keras.Input((3,)), QDense(2)])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        hgq_fpga.calibrate(model, np.ones((2, 3)), batch_size=0)


def test_single_sample_calibration_warns():
    """Issue 12, case 7: a budget or estimate calibrated on one sample holds for that sample only."""
    from hgq_fpga.calibration import CalibrationWarning

    model = keras.Sequential([keras.Input((3,)), QDense(2)])
    x = np.random.default_rng(0).standard_normal((64, 3))
    with pytest.warns(CalibrationWarning, match=r"1 sample only.*representative data"):
        hgq_fpga.calibrate(model, x[:1])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        hgq_fpga.calibrate(model, x)  # enough samples: silent


def _ranges(model: keras.Model) -> list[np.ndarray]:
    from hgq_fpga.calibration import iter_quantizers
    from hgq_fpga.quantizers import ActivationQuantizer

    return [np.asarray(ops.convert_to_numpy(v)) for _, q in iter_quantizers(model) if isinstance(q, ActivationQuantizer)
            for v in (q.vmin, q.vmax)]


def test_without_its_rows_a_calibration_leaves_the_model_the_same(rng):
    """``calibrate(..., rows=False)`` (the budget's checks and repairs): every variable of the model as a
    full calibration leaves it, and a result without the table."""
    x = (rng.standard_normal((64, 6, 6, 1)) * 3).astype("float32")
    states = []
    for rows in (True, False):
        keras.utils.set_random_seed(0)
        model = small_cnn()
        result = hgq_fpga.calibrate(model, x, batch_size=10, rows=rows)
        assert hgq_fpga.is_calibrated(model) and len(result.rows) == (7 if rows else 0)
        states.append([np.asarray(ops.convert_to_numpy(v)) for v in model.variables])
    for a, b in zip(*states, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_ranges_are_those_of_one_eager_pass_over_all_the_data(rng):
    """Batches of 10 over 64 samples (the last one short; on JAX a compiled pass, filled up with
    copies of a sample; on TensorFlow the same, traced, from the second calibration of the model on)
    record exactly the ranges of one eager call on all of them, and a later calibration reads the
    weights as they are then (none kept from an earlier one)."""
    from hgq_fpga.calibration import iter_quantizers
    from hgq_fpga.quantizers import ActivationQuantizer

    model = small_cnn()
    x = (rng.standard_normal((64, 6, 6, 1)) * 3).astype("float32")
    x[7, 2, 3, 0] = 40.0  # extreme samples: in the first batch, and in the short last one
    x[63] = -x[63] * 5
    seen = []
    for _ in range(2):
        hgq_fpga.calibrate(model, x, batch_size=10)
        quantizers = [q for _, q in iter_quantizers(model) if isinstance(q, ActivationQuantizer)]
        for q in quantizers:
            q.reset_ranges()
            q.calibrating = True
        try:
            model(x, training=False)  # eager, all at once
        finally:
            for q in quantizers:
                q.calibrating = False
        eager = _ranges(model)
        hgq_fpga.calibrate(model, x, batch_size=10)
        for got, want in zip(_ranges(model), eager, strict=True):
            np.testing.assert_array_equal(got, want)
        if keras.backend.backend() == "tensorflow":  # (this calibration ran the traced pass)
            assert model.__dict__["_hgq_calibration_pass"][1][0].experimental_get_tracing_count() == 1
        seen.append(eager)
        conv = model.get_layer("conv")
        conv.set_weights([w * 3.0 for w in conv.get_weights()])  # the next round's ranges are wider
    assert any(not np.array_equal(a, b) for a, b in zip(*seen))


def test_the_input_power_is_the_mean_square_of_each_layers_input(rng):
    """``input_power``: for the convolution and both dense layers, the mean square (in float64) of the
    layer's input as a probe model computes it after the calibration, per dense input element and per
    convolution channel, in batches of 10 over 64 samples (the short last one filled up on JAX and, from
    the second calibration on, on TensorFlow: the copies must not count). An unweighted layer has none."""
    model = small_cnn()
    x = (rng.standard_normal((64, 6, 6, 1)) * 3).astype("float32")
    x[63] = -x[63] * 5  # a large sample in the short last batch
    layers = [model.get_layer(n) for n in ("conv", "a", "b")]
    probe = keras.Model(model.inputs[0], [layer.input for layer in layers])
    for _ in range(2):  # (TensorFlow: eager, then traced)
        power = hgq_fpga.calibrate(model, x, batch_size=10).input_power
        assert set(power) == set(layers)
        inputs = [np.asarray(ops.convert_to_numpy(a), np.float64) for a in probe(x, training=False)]
        want = [np.mean(inputs[0] ** 2, axis=(0, 1, 2)), np.mean(inputs[1] ** 2, axis=0),
                np.mean(inputs[2] ** 2, axis=0)]
        for layer, w in zip(layers, want):
            assert power[layer].shape == w.shape and np.all(w > 0), layer.name
            np.testing.assert_allclose(power[layer], w, rtol=1e-6, err_msg=layer.name)
        conv = model.get_layer("conv")
        conv.set_weights([w * 2.0 for w in conv.get_weights()])  # the next round's inputs to a and b are larger
