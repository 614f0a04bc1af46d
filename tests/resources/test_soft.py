"""The differentiable LUT form: agreement with the exact form, gradients, the loss term."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.layers import QConv2D, QDense
from hgq_fpga.quantizers.cost import csd_count_ops, model_luts, set_lut_penalty
from hgq_fpga.resources import estimate
from hgq_fpga.resources.rules import csd_count
from hgq_fpga.testing import dense_layer_model


def layer_configs(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{
        "n_in": int(rng.choice([8, 16, 32])), "n_out": int(rng.choice([8, 16, 32])),
        "weight_bits": int(rng.integers(2, 9)), "zero_fraction": float(rng.choice([0.0, 0.3, 0.7])),
        "input_bits": int(rng.integers(3, 11)), "signed_input": bool(rng.random() < 0.5), "seed": k,
    } for k in range(n)]


def test_csd_count_ops_matches_the_exact_rule(rng):
    f = rng.integers(0, 9, 500).astype("float32")
    q = (rng.integers(-(2**12), 2**12, 500) * 2.0 ** -f).astype("float32")
    got = keras.ops.convert_to_numpy(csd_count_ops(keras.ops.convert_to_tensor(q), keras.ops.convert_to_tensor(f)))
    want = csd_count((q * 2.0**f).astype(np.int64))
    assert np.array_equal(got.astype(np.int64), want)


def test_differentiable_form_agrees_with_the_exact_form_within_the_documented_bound():
    """Held-out layers (not those the coefficients were fitted on): |err| <= 25%, median <= 8%."""
    errors = []
    for cfg in layer_configs(24, seed=3):
        model, _ = dense_layer_model(**cfg)
        exact = estimate(model).counts()["adder"]
        soft = float(keras.ops.convert_to_numpy(model_luts(model)))
        errors.append(soft / exact - 1)
    errors = np.abs(errors)
    assert np.max(errors) <= 0.25, errors
    assert np.median(errors) <= 0.08, errors


def test_lut_estimate_has_gradients_towards_fewer_bits(rng):
    model, _ = dense_layer_model(8, 4, weight_bits=5, input_bits=6, seed=1)
    layer = model.layers[-1]
    import tensorflow as tf  # the gradient tape of the default test backend

    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check written with tf.GradientTape")
    with tf.GradientTape() as tape:
        cost = layer.lut_estimate()
    pack = layer.bits_pack.weights[0]
    grad = tape.gradient(cost, pack)
    assert grad is not None
    g = keras.ops.convert_to_numpy(grad)
    assert np.all(g >= -1e-6) and np.sum(g) > 0  # more bits never cost fewer LUTs


def test_lut_penalty_trains_bits_down(rng):
    """The same training with and without the LUT term: the term lowers the exact estimate."""
    x = rng.standard_normal((512, 16)).astype("float32")
    y = rng.standard_normal((512, 4)).astype("float32")
    luts = []
    for penalty in (0.0, 0.05):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((16,)), QDense(16, activation="relu"), QDense(4)])
        model(x[:2])
        set_lut_penalty(model, penalty)
        model.compile(keras.optimizers.Adam(5e-2), "mse")
        model.fit(x, y, epochs=6, batch_size=64, verbose=0)
        hgq_fpga.calibrate(model, x)
        luts.append(estimate(model).lut)
    assert luts[1] < 0.7 * luts[0], luts
    with pytest.raises(ValueError, match="must be >= 0"):
        set_lut_penalty(model, -1.0)


def test_conv_layers_have_a_differentiable_estimate(rng):
    model = keras.Sequential([keras.Input((8, 8, 2)), QConv2D(3, 3), keras.layers.Flatten(), QDense(2)])
    x = rng.standard_normal((64, 8, 8, 2)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    soft = float(keras.ops.convert_to_numpy(model.layers[0].lut_estimate()))
    exact = next(r for r in estimate(model).layers if r.layer == model.layers[0].name).counts["adder"]
    assert exact > 0 and 0.5 < soft / exact < 2.0


@pytest.mark.parametrize("shift", [0.0, 1.0, -2.0])
def test_the_reads_value_only_form_is_the_training_forms_value(rng, shift):
    """``luts_for(..., value_only=True)`` (what :class:`SoftCost` reads: no gradient trick, and
    elementwise sums instead of the dense layer's matmuls) computes the number the training
    step's form does: a dense layer, a dense layer on sequences (its own ``linear``) and a
    convolution, with the bits as they are and shifted. A read of shifted bits is the training
    form's value once the bits are shifted (the kernel quantized at the lowered bits, as a step
    leaves it), not of the kernel at its own bits."""
    model = keras.Sequential([keras.Input((8, 8, 2)), QConv2D(3, 3), keras.layers.Reshape((12, 9)),
                              QDense(6), keras.layers.Flatten(), QDense(4)])
    x = rng.standard_normal((64, 8, 8, 2)).astype("float32")
    model(x[:2])
    for layer in model.layers:  # bits apart from their initial values, some weights zero
        if hasattr(layer, "bits_pack"):
            f = keras.ops.convert_to_numpy(layer.bits_pack.f)
            layer.bits_pack.f.assign((f + rng.uniform(-2.0, 3.0, f.shape)).astype("float32"))
    hgq_fpga.calibrate(model, x)
    for layer in (model.layers[0], model.layers[2], model.layers[4]):
        fs = {k: v - shift for k, v in layer.bits_pack.values().items()}
        read = float(keras.ops.convert_to_numpy(layer.luts_for(fs, value_only=True)))
        own = np.array(keras.ops.convert_to_numpy(layer.bits_pack.f))
        layer.bits_pack.f.assign(own - np.float32(shift))  # the step, made
        trained = float(keras.ops.convert_to_numpy(layer.luts_for(layer.bits_pack.values())))
        layer.bits_pack.f.assign(own)
        assert trained != 0.0
        np.testing.assert_allclose(read, trained, rtol=1e-6, err_msg=layer.name)


def test_a_dense_layer_on_sequences_has_a_differentiable_estimate(rng):
    """``QDense`` on ``(steps, features)`` inputs: one adder tree per step and output (its
    widest live input counted per step; this raised a shape error before)."""
    model = keras.Sequential([keras.Input((5, 8)), QDense(4), keras.layers.Flatten(), QDense(2)])
    x = rng.standard_normal((64, 5, 8)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    soft = float(keras.ops.convert_to_numpy(model.layers[0].lut_estimate()))
    exact = next(r for r in estimate(model).layers if r.layer == model.layers[0].name).counts["adder"]
    assert exact > 0 and 0.5 < soft / exact < 2.0


@pytest.mark.parametrize("rounding", ["RND", "TRN", "RND_CONV", "RND_ZERO", "TRN_ZERO"])
def test_a_kernels_digits_and_bits_from_its_mantissas_are_the_exact_rules(rng, rounding):
    """:meth:`WeightQuantizer.digits_and_bits` (the reads' shortcut) against the exact rules in
    numpy: CSD digits of the integer mantissa, and the width ``k + i + f`` of
    :meth:`format_of`; weights on ties, at 0 and +-1 LSB, at powers of two (``-2**n`` takes one
    bit fewer than ``+2**n``), and mantissas up to ``2**30``, with ``f`` from -3 to 24."""
    from hgq_fpga.quantizers import WeightQuantizer

    n = 4000
    f = rng.integers(-3, 25, n).astype("float32")
    mant = np.concatenate([rng.integers(-(2**12), 2**12, n // 2),
                           np.sign(rng.standard_normal(n // 4)) * 2.0 ** rng.integers(0, 30, n // 4),
                           rng.choice([0, 1, -1, 2, -2, 3, -3], n // 4)]).astype(np.float64)
    nudge = rng.choice([0.0, 0.5, -0.5, 0.25, -0.7], n)  # ties and values between the grid points
    w = ((mant + np.where(np.abs(mant) < 2**23, nudge, 0.0)) * 2.0 ** -f).astype("float32")
    q = WeightQuantizer(rounding=rounding, f0=0.0, f_min=-3.0, f_max=24.0)
    q.build((n,))
    q.set_f(f)
    digits, bits = (keras.ops.convert_to_numpy(t) for t in q.digits_and_bits(w))
    qv = np.asarray(keras.ops.convert_to_numpy(q.quantize_values(w)), np.float64)
    m = (qv * 2.0 ** f).astype(np.int64)
    assert np.array_equal(digits.astype(np.int64), csd_count(m))
    assert np.array_equal(bits.astype(np.int64), q.format_of(qv).width)
    assert np.any(m == -1) and np.any(np.abs(m) >= 2**29)


@pytest.mark.parametrize("shift", [0.0, 0.375, 1.0, 2.5])
def test_a_read_takes_the_mantissas_and_computes_the_same_luts(rng, monkeypatch, shift):
    """A read (``luts_for(fs, value_only=True)``: the kernel's digits and bits from its mantissas) of
    the layers' own bits, and of their bits lowered by ``shift`` (the step's evaluations), equals,
    exactly, the general value-only form given the same bits and the kernel quantized at them."""
    from hgq_fpga.quantizers import WeightQuantizer

    shortcut, taken = WeightQuantizer.digits_and_bits, []
    monkeypatch.setattr(WeightQuantizer, "digits_and_bits",
                        lambda self, w, f=None: taken.append(1) or shortcut(self, w, f))
    model = keras.Sequential([keras.Input((8, 8, 2)), QConv2D(3, 3), keras.layers.Flatten(), QDense(6), QDense(4)])
    x = rng.standard_normal((64, 8, 8, 2)).astype("float32")
    model(x[:2])
    for layer in (model.layers[0], model.layers[2], model.layers[3]):
        f = keras.ops.convert_to_numpy(layer.bits_pack.f)
        layer.bits_pack.f.assign((f + rng.uniform(-6.0, 6.0, f.shape)).astype("float32"))
    hgq_fpga.calibrate(model, x)
    for layer in (model.layers[0], model.layers[2], model.layers[3]):
        kq = layer.kernel_quantizer
        fs = {k: v - shift for k, v in layer.bits_pack.values().items()}
        qkernel = kq.quantize_with(keras.ops.convert_to_tensor(layer.kernel), keras.ops.round(fs[id(kq)]))
        general = keras.ops.convert_to_numpy(layer.luts_for(fs, qkernel, value_only=True))
        assert not taken
        read = keras.ops.convert_to_numpy(layer.luts_for(fs if shift else {}, value_only=True))
        assert taken and float(general) > 0.0
        taken.clear()
        assert float(read) == float(general), layer.name
