"""Keras (float64 twin) and the numpy emulator agree bit for bit, overflow included."""

from __future__ import annotations

from fractions import Fraction

import keras
import numpy as np
import pytest
from keras import ops

import hgq_fpga
from hgq_fpga.emulator.keras64 import float64_outputs
from hgq_fpga.fixed import quantize
from hgq_fpga.frontend import UnsupportedLayerError, build_ir
from hgq_fpga.layers import (  # noqa: F401
    QActivation,
    QAdd,
    QAveragePooling1D,
    QAveragePooling2D,
    QBatchNormalization,
    QConcatenate,
    QConv1D,
    QConv2D,
    QDense,
    QMaxPooling1D,
    QMaxPooling2D,
)
from hgq_fpga.testing import edge_inputs, perturb_bits


def check_bit_exact(model: keras.Model, x: np.ndarray, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    model.compile("adam", "mse")
    y = model.predict(x, verbose=0)
    model.fit(x, rng.standard_normal(y.shape), epochs=1, verbose=0)
    perturb_bits(model, rng)
    hgq_fpga.calibrate(model, x)
    probe = np.concatenate([edge_inputs(x), np.zeros_like(x[:2])])
    emulated = hgq_fpga.emulate(model, probe)
    np.testing.assert_array_equal(hgq_fpga.emulate(model, probe, path="int"), emulated)
    keras64 = float64_outputs(model, probe)
    assert emulated.dtype == np.float64
    mismatches = int(np.count_nonzero(emulated != keras64))
    assert mismatches == 0, f"{mismatches} of {emulated.size} outputs differ"
    assert np.any(emulated != 0)


def mlp(overflow: str) -> keras.Model:
    iq = {"overflow": overflow}
    return keras.Sequential(
        [
            keras.Input((12,)),
            QDense(10, activation="relu", input_quantizer=iq),
            QDense(6, activation="relu", input_quantizer=iq),
            QDense(3, input_quantizer=iq),
        ]
    )


@pytest.mark.parametrize("overflow", ["WRAP", "SAT", "SAT_SYM", "SAT_ZERO"])
def test_mlp(overflow, rng):
    check_bit_exact(mlp(overflow), rng.standard_normal((200, 12)).astype("float32"))


def test_mlp_fixed_integer_bits_saturate(rng):
    model = keras.Sequential(
        [
            keras.Input((8,)),
            QDense(6, activation="relu", input_quantizer={"i": 1, "k": 1, "overflow": "SAT", "rounding": "RND"},
                   kernel_quantizer={"i": 0, "overflow": "SAT_SYM"}),
            QDense(2, input_quantizer={"i": 2, "k": 0, "overflow": "SAT"}),
        ]
    )
    check_bit_exact(model, rng.standard_normal((150, 8)).astype("float32"))


def test_conv1d_with_pooling(rng):
    inp = keras.Input((16, 3))
    x = QConv1D(4, 3, activation="relu", padding="same")(inp)
    x = QMaxPooling1D(2)(x)
    x = QConv1D(4, 3, strides=2)(x)
    x = QAveragePooling1D(2)(x)
    out = QDense(3)(keras.layers.Flatten()(x))
    check_bit_exact(keras.Model(inp, out), rng.standard_normal((120, 16, 3)).astype("float32"))


def test_conv2d_with_pooling(rng):
    inp = keras.Input((8, 8, 2))
    x = QConv2D(3, (3, 3), activation="relu", padding="same", strides=1)(inp)
    x = QMaxPooling2D(2, padding="same")(x)
    x = QConv2D(4, (2, 2), strides=(2, 2))(x)
    x = QAveragePooling2D(2)(x)
    out = QDense(3)(keras.layers.Reshape((4,))(x))
    check_bit_exact(keras.Model(inp, out), rng.standard_normal((100, 8, 8, 2)).astype("float32"))


def test_residual_add_and_batchnorm(rng):
    inp = keras.Input((10,))
    a = QDense(10, activation="relu")(inp)
    b = QDense(10)(a)
    s = QAdd()([a, b])
    s = QBatchNormalization()(s)
    out = QActivation("relu")(s)
    check_bit_exact(keras.Model(inp, out), rng.standard_normal((150, 10)).astype("float32"))


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_lookup_table_activations(function, rng):
    model = keras.Sequential([
        keras.Input((6,)),
        QDense(5),
        QActivation(function, input_quantizer={"f0": 3}, table_f=7),
        QDense(3),
        QActivation(function, input_quantizer={"granularity": "tensor", "f0": 2}),
    ])
    check_bit_exact(model, rng.standard_normal((150, 6)).astype("float32"))


def test_softmax(rng):
    from hgq_fpga.layers import QSoftmax

    model = keras.Sequential([keras.Input((7,)), QDense(5), QSoftmax(input_quantizer={"f0": 3}, inv_bits=10)])
    check_bit_exact(model, rng.standard_normal((150, 7)).astype("float32"))


def test_concatenate_two_inputs(rng):
    in1, in2 = keras.Input((5,)), keras.Input((3,))
    c = QConcatenate()([QDense(4)(in1), QDense(2, activation="relu")(in2)])
    out = QDense(2)(c)
    model = keras.Model([in1, in2], out)
    model.compile("adam", "mse")
    x = [rng.standard_normal((80, 5)).astype("float32"), rng.standard_normal((80, 3)).astype("float32")]
    hgq_fpga.calibrate(model, x)
    probe = [np.concatenate([a, a * 100]) for a in x]
    emulated = hgq_fpga.emulate(model, probe)
    keras64 = float64_outputs(model, probe)
    assert np.count_nonzero(emulated != keras64) == 0


def test_wide_accumulator_is_exact_beyond_int64():
    """Inputs and weights with 40 fractional bits: products need > 64 bits."""
    model = keras.Sequential(
        [keras.Input((4,)), QDense(1, input_quantizer={"f0": 40, "f_max": 48},
                                   kernel_quantizer={"f0": 40, "f_max": 48},
                                   bias_quantizer={"f0": 40, "f_max": 48})]
    )
    # fixed weights: the bound below depends on them (a random draw put it at 0.98 * 2**62
    # once, when pytest-xdist ran the file in a worker whose random state differed)
    model.layers[0].kernel.assign(np.array([[0.9], [-0.7], [0.8], [0.6]], "float32"))
    x = np.array([[1.0 / 3, -2.0 / 7, 5.5, 1e-9]], "float32")
    hgq_fpga.calibrate(model, x)
    graph = build_ir(model)
    assert graph.tensors[graph.outputs[0]].abs_bound >= 2.0**62  # beyond int64 arithmetic
    with pytest.raises(ValueError, match="use path='int'"):
        hgq_fpga.emulate(graph, x, path="float")
    (out,) = hgq_fpga.emulate_mantissas(graph, x)
    qnode = next(n for n in graph.nodes if n.op == "quantize")
    dnode = next(n for n in graph.nodes if n.op == "dense")
    qx = quantize(x.astype(np.float64), qnode.k, qnode.i, qnode.f, qnode.rounding, qnode.overflow)[0]
    (km, kf), (bm, bf) = (dnode.kernel.m, dnode.kernel.f), (dnode.bias.m, dnode.bias.f)
    exact = sum(Fraction(float(v)) * Fraction(int(w), 2**kf) for v, w in zip(qx, km[:, 0]))
    exact += Fraction(int(bm[0]), 2**bf)
    assert Fraction(int(out.m[0, 0]), 2**out.f) == exact
    # the weights in the IR are the layer's qkernel, exactly
    qk = np.asarray(ops.convert_to_numpy(model.layers[0].qkernel), np.float64)[:, 0]
    assert [Fraction(int(w), 2**kf) for w in km[:, 0]] == [Fraction(float(v)) for v in qk]


def test_errors_name_the_problem(rng):
    plain = keras.Sequential([keras.Input((3,)), QDense(2), keras.layers.Dense(2, name="plain_dense")])
    hgq_fpga.calibrate(plain, np.ones((2, 3), "float32"))
    with pytest.raises(UnsupportedLayerError, match=r"plain_dense \(Dense: use hgq_fpga.layers.QDense\)"):
        build_ir(plain)
    fresh = keras.Sequential([keras.Input((3,)), QDense(2)])
    with pytest.raises(ValueError, match="not calibrated.*hgq_fpga.calibrate"):
        hgq_fpga.emulate(fresh, np.ones((1, 3)))
    hgq_fpga.calibrate(fresh, np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        hgq_fpga.emulate(fresh, np.ones((1, 4)))
    with pytest.raises(ValueError, match="NaN/Inf"):
        hgq_fpga.emulate(fresh, np.full((1, 3), np.nan))
    odd = keras.Sequential([keras.Input((6, 2)), QAveragePooling1D(3), keras.layers.Flatten(), QDense(1)])
    hgq_fpga.calibrate(odd, np.ones((2, 6, 2), "float32"))
    with pytest.raises(UnsupportedLayerError, match="2\\*\\*n elements"):
        build_ir(odd)
