"""hgq_fpga.from_qkeras: QKeras (qkeras-v3) models rebuilt from hgq_fpga layers,
bit-identical to QKeras on random, tie, edge and overflow inputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

if keras.backend.backend() != "tensorflow":  # QKeras runs on TensorFlow only
    pytest.skip("QKeras needs KERAS_BACKEND=tensorflow", allow_module_level=True)

# not importorskip: a missing qkeras install must fail the TensorFlow run, not skip it
import qkeras
from qkeras import (
    QActivation,
    QConv2D,
    QDense,
    quantized_bits,
    quantized_po2,
    quantized_relu,
    quantized_sigmoid,
    quantized_tanh,
)

import hgq_fpga
from hgq_fpga.qkeras_import import UnsupportedQKerasModel, from_qkeras

RNG_SEED = 1234


def _randomize(model: keras.Model, seed: int = RNG_SEED, scale: float = 0.7) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.normal(0.0, scale, w.shape).astype("float32") for w in layer.get_weights()])


def _inputs(shape: tuple[int, ...], f: int, lo: float, hi: float, n_random: int = 600, seed: int = 0) -> np.ndarray:
    """Random, tie, edge and overflow inputs for a first quantizer with ``f`` bits in ``[lo, hi]``.

    Overflow values stay below ``2**(22 - f)``: beyond, QKeras's own float32
    artifact applies (see ``test_qkeras_float32_artifact_far_beyond_range``).
    """
    rng = np.random.default_rng(seed)
    lsb = 2.0**-f
    ties = (np.arange(np.floor(lo / lsb) - 4, np.ceil(hi / lsb) + 4) + 0.5) * lsb
    edges = np.array([lo, hi, lo - lsb, hi + lsb, lo - lsb / 2, hi + lsb / 2, lo + lsb / 2, hi - lsb / 2,
                      0.0, lsb / 2, -lsb / 2, 1.5 * lsb, -1.5 * lsb])
    far = np.array([3.0, -3.0, 10.0, -10.0, 100.0, -100.0, 1000.0, -1000.0, 1e4, -1e4, 12345.678, -3e4])
    far = far * max(abs(lo), abs(hi))
    far = far[np.abs(far) < 2.0 ** (22 - f)]
    n = int(np.prod(shape))
    parts = [
        rng.normal(0.0, (hi - lo) / 3, (n_random,) + shape),
        rng.choice(ties, (200,) + shape),
        rng.choice(edges, (200,) + shape),
        rng.choice(np.concatenate([edges, far]), (200,) + shape),
        np.broadcast_to(edges[:, None], (len(edges), n)).reshape((len(edges),) + shape),
        np.broadcast_to(far[:, None], (len(far), n)).reshape((len(far),) + shape),
    ]
    return np.concatenate(parts).astype(np.float32)


def _assert_bit_identical(qmodel: keras.Model, model: keras.Model, x: np.ndarray) -> None:
    for dtype in (np.float32, np.float64):
        want = np.asarray(qmodel(x.astype(dtype), training=False))
        got = np.asarray(model(x.astype(dtype), training=False))
        assert want.dtype == got.dtype
        assert np.array_equal(want, got), f"{dtype.__name__}: {int(np.sum(want != got))} of {want.size} differ"
    emulated = hgq_fpga.emulate(model, x)
    emulated = emulated[0] if isinstance(emulated, list) else emulated
    assert np.array_equal(np.asarray(emulated, np.float64), np.asarray(qmodel(x), np.float64))


def _mlp(relu: quantized_relu | None = None, kernel_alpha: float | None = 1) -> keras.Model:
    x = keras.Input((10,), name="x")
    h = QActivation(quantized_bits(8, 2, alpha=1), name="q_in")(x)  # f = 5, [-4, 4 - 2**-5]
    h = QDense(16, kernel_quantizer=quantized_bits(6, 0, alpha=kernel_alpha),
               bias_quantizer=quantized_bits(8, 2, alpha=1), name="dense1")(h)
    h = QActivation(relu or quantized_relu(6, 2), name="relu1")(h)
    h = QDense(12, kernel_quantizer=quantized_bits(8, 1), bias_quantizer=quantized_bits(8, 2, alpha=1),
               activation=quantized_relu(8, 3), name="dense2")(h)  # kernel alpha=None -> auto_po2
    out = QDense(4, kernel_quantizer=quantized_po2(5), bias_quantizer=quantized_bits(10, 3, alpha=1),
                 name="logits")(h)
    model = keras.Model(x, out, name="qmlp")
    _randomize(model)
    return model


def _cnn() -> keras.Model:
    x = keras.Input((8, 8, 2), name="img")
    h = QActivation(quantized_bits(6, 1, alpha=1), name="q_in")(x)  # f = 4, [-2, 2 - 2**-4]
    h = QConv2D(4, (3, 3), padding="same", kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(8, 3, alpha=1), name="conv1")(h)
    h = QActivation(quantized_relu(6, 2), name="relu1")(h)
    h = keras.layers.MaxPooling2D(2, name="pool1")(h)
    h = QConv2D(3, (2, 2), kernel_quantizer=quantized_bits(5, 1), bias_quantizer=quantized_bits(8, 3, alpha=1),
                activation="relu", name="conv2")(h)  # kernel alpha=None -> auto_po2, plain relu
    h = keras.layers.AveragePooling2D(2, name="pool2")(h)
    h = keras.layers.Flatten(name="flat")(h)
    out = QDense(5, kernel_quantizer=quantized_bits(7, 1, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1),
                 name="logits")(h)
    model = keras.Model(x, out, name="qcnn")
    _randomize(model)
    return model


def test_qkeras_is_importable_for_the_tests() -> None:
    assert qkeras.__version__ == "1.2.1"
    assert hgq_fpga.from_qkeras is from_qkeras


def test_mlp_bit_identical_and_bits_from_quantizers() -> None:
    qmodel = _mlp()
    model = from_qkeras(qmodel)
    assert hgq_fpga.is_calibrated(model)
    _assert_bit_identical(qmodel, model, _inputs((10,), f=5, lo=-4.0, hi=4.0 - 2**-5))

    d1 = model.get_layer("dense1")
    # quantized_bits(6, 0, alpha=1): k = 1, i = 0, f = 6 - 0 - 1 = 5 on every element
    assert np.all(np.round(np.asarray(d1.kernel_quantizer.f)) == 5)
    assert (d1.kernel_quantizer.fixed_k, d1.kernel_quantizer.fixed_i) == (1, 0)
    bits = np.asarray(d1.kernel_quantizer.bits(d1.kernel))
    qk = np.asarray(d1.qkernel)
    assert np.all(bits[qk != 0] == 6) and np.all(bits[qk == 0] == 0)
    np.testing.assert_array_equal(qk, np.asarray(qmodel.get_layer("dense1").kernel_quantizer_internal(
        qmodel.get_layer("dense1").kernel)))
    # quantized_bits(8, 2, alpha=1) on the bias: f = 5
    assert np.all(np.round(np.asarray(d1.bias_quantizer.f)) == 5)
    # each QKeras activation quantizer is the input quantizer of the next layer (one quantizer,
    # as in QKeras); q_in is signed <1, 2, 5> with ties to even and saturation
    assert [layer.name for layer in model.layers[1:]] == ["dense1", "dense2", "logits"]
    q_in = d1.input_quantizer
    assert (q_in.fixed_k, q_in.fixed_i, str(q_in.rounding), str(q_in.overflow)) == (1, 2, "RND_CONV", "SAT")
    assert np.all(np.asarray(q_in.f) == 5)
    relu = model.get_layer("dense2").input_quantizer  # quantized_relu(6, 2): k = 0, i = 2, f = 4
    assert (relu.fixed_k, relu.fixed_i, str(relu.overflow)) == (0, 2, "SAT")
    assert np.all(np.asarray(relu.f) == 4)
    act = model.get_layer("logits").input_quantizer  # dense2's activation=quantized_relu(8, 3)
    assert (act.fixed_k, act.fixed_i, str(act.overflow)) == (0, 3, "SAT")
    assert np.all(np.asarray(act.f) == 5)

    # kernel alpha=None: QKeras switches it to auto_po2, one power-of-two scale per output
    d2q = qmodel.get_layer("dense2").kernel_quantizer_internal
    assert d2q.alpha == "auto_po2"
    scale = np.asarray(d2q.scale).ravel()
    f2 = np.round(np.asarray(model.get_layer("dense2").kernel_quantizer.f))
    np.testing.assert_array_equal(f2, np.broadcast_to(8 - 1 - 1 - np.log2(scale), f2.shape))
    # quantized_po2: every weight +-2**e has f = -e
    w = np.asarray(model.get_layer("logits").qkernel)
    f3 = np.round(np.asarray(model.get_layer("logits").kernel_quantizer.f))
    np.testing.assert_array_equal(np.abs(w), np.exp2(-f3))


def test_cnn_bit_identical() -> None:
    qmodel = _cnn()
    model = from_qkeras(qmodel)
    assert [type(layer).__name__ for layer in model.layers[1:]] == [
        "QConv2D", "QMaxPooling2D", "QConv2D", "Activation", "QAveragePooling2D", "Flatten", "QDense",
    ]
    # relu1 = quantized_relu(6, 2) quantizes pool1's input; pool2 and logits get exact
    # TRN/WRAP formats that hold every value conv2 (plain relu) can produce
    pool1 = model.get_layer("pool1").input_quantizer
    assert (pool1.fixed_k, pool1.fixed_i, str(pool1.rounding), str(pool1.overflow)) == (0, 2, "RND_CONV", "SAT")
    assert str(model.get_layer("pool2").input_quantizer.overflow) == "WRAP"
    _assert_bit_identical(qmodel, model, _inputs((8, 8, 2), f=4, lo=-2.0, hi=2.0 - 2**-4, n_random=300))
    conv1 = model.get_layer("conv1")
    assert np.all(np.round(np.asarray(conv1.kernel_quantizer.f)) == 5)


def test_calibration_data_is_accepted_and_changes_nothing() -> None:
    qmodel = _mlp()
    x = _inputs((10,), f=5, lo=-4.0, hi=4.0 - 2**-5, n_random=200)
    model = from_qkeras(qmodel, calibration_data=x[:300])
    assert hgq_fpga.is_calibrated(model)
    _assert_bit_identical(qmodel, model, x)


def test_qkeras_float32_artifact_far_beyond_range() -> None:
    """QKeras's quantized_bits returns x + (q(x) - x) in float32: far outside its range
    that is not q(x). The converted model saturates exactly, as ap_fixed does."""
    x = keras.Input((1,))
    qmodel = keras.Model(x, QActivation(quantized_bits(8, 2, alpha=1), name="q")(x))
    model = from_qkeras(qmodel)
    big = np.array([[1e6], [-1e6], [1e7], [3e4]], np.float32)
    got = np.asarray(model(big)).ravel()
    np.testing.assert_array_equal(got, [127 / 32, -4.0, 127 / 32, 127 / 32])
    want = np.asarray(qmodel(big)).ravel()
    assert want[0] == 4.0  # off QKeras's own grid (its maximum is 127/32)
    assert want[3] == got[3]
    assert [type(layer).__name__ for layer in model.layers[1:]] == ["QActivation"]  # nothing follows it


def _verifiable_mlp() -> keras.Model:
    """Every quantizer after the input has at least the fractional bits of its input,
    so no tie can occur and TRN is exact: convertible to hls4ml."""
    x = keras.Input((6,), name="x")
    h = QActivation(quantized_bits(6, 2, alpha=1), name="q_in")(x)  # f = 3
    h = QDense(8, kernel_quantizer=quantized_bits(4, 0, alpha=1),  # f = 3
               bias_quantizer=quantized_bits(8, 2, alpha=1), name="dense1")(h)  # f = 5 -> sum f = 6
    h = QActivation(quantized_relu(9, 3), name="relu1")(h)  # f = 6 >= 6: no rounding
    out = QDense(3, kernel_quantizer=quantized_bits(4, 0, alpha=1),
                 bias_quantizer=quantized_bits(8, 2, alpha=1), name="logits")(h)
    model = keras.Model(x, out, name="qmlp_exact")
    _randomize(model, seed=7)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("build", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_rnd_conv_models_verify_through_the_c_simulation(build) -> None:
    """QKeras rounds half to even (RND_CONV); hls4ml's quantizer layer writes any ap_fixed mode, and the
    type check verifies what hls4ml derives: QKeras = Keras = emulator = C simulation, ties and 8x beyond
    the range included (issue 18)."""
    qmodel = build()
    model = from_qkeras(qmodel)
    assert "RND_CONV" in {str(q.rounding) for layer in model.layers for q in getattr(layer, "quantizers", [])}
    x = _inputs(tuple(qmodel.input_shape[1:]), f=3, lo=-4.0, hi=4.0, n_random=200)
    x = np.concatenate([x, 8 * x])
    _assert_bit_identical(qmodel, model, x)
    result = hgq_fpga.verify(model, x)
    assert result.ok, str(result)


def test_verify_keras_emulator_csim_on_grid_inputs() -> None:
    qmodel = _verifiable_mlp()
    model = from_qkeras(qmodel, inputs_on_grid=True)
    quantizers = [q for layer in model.layers for q in getattr(layer, "quantizers", [])
                  if isinstance(q, hgq_fpga.quantizers.ActivationQuantizer)]
    assert {str(q.rounding) for q in quantizers} == {"TRN"}
    # inputs on the first quantizer's grid (f = 3), including saturating ones
    x = np.round(_inputs((6,), f=3, lo=-4.0, hi=4.0 - 2**-3, n_random=300) * 8) / 8
    _assert_bit_identical(qmodel, model, x)
    result = hgq_fpga.verify(model, x)
    assert result.ok, str(result)


def _bn_model(seed: int, wide: bool) -> keras.Model:
    """A float BatchNormalization after a quantizer (narrow input grid) or after a QDense (wide grid)."""
    x = keras.Input((6, 6, 3) if not wide else (10,))
    h = QActivation(quantized_bits(8, 2, alpha=1) if not wide else quantized_bits(16, 5, alpha=1), name="q_in")(x)
    if wide:
        h = QDense(8, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
                   name="dense")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = QActivation(quantized_relu(6, 2), name="relu")(h)
    if not wide:
        h = QConv2D(4, 3, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
                    name="conv")(h)
        h = keras.layers.BatchNormalization(name="bn2")(h)
        h = QActivation(quantized_bits(6, 2, alpha=1), name="q2")(h)
        h = keras.layers.Flatten()(h)
    model = keras.Model(x, QDense(3, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                                  bias_quantizer=quantized_bits(6, 2, alpha=1), name="out")(h))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.normal(1, 0.3, n), rng.normal(0, 0.5, n), rng.normal(0, 1, n),
                               rng.uniform(0.3, 3, n)])
        elif layer.weights:
            layer.set_weights([rng.normal(0.0, 0.7, w.shape).astype("float32") for w in layer.get_weights()])
    return model


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 3])
def test_float_batchnorm_converts_where_its_float32_rounding_cannot_show(seed: int) -> None:
    """Keras's float32 x * inv + res, taken with the very float32 constants and computed exactly: the
    quantizers after it see the same on every input (checked near each of their rounding boundaries)."""
    qmodel = _bn_model(seed, wide=False)
    model = from_qkeras(qmodel)
    bn = model.get_layer("bn")
    np.testing.assert_array_equal(np.asarray(bn.qkernel), np.asarray(
        keras.ops.rsqrt(qmodel.get_layer("bn").moving_variance + qmodel.get_layer("bn").epsilon)
        * qmodel.get_layer("bn").gamma))
    x = _inputs((6, 6, 3), f=5, lo=-4.0, hi=4.0 - 2**-5, n_random=300)
    _assert_bit_identical(qmodel, model, x)
    result = hgq_fpga.verify(model, x)
    assert result.ok, str(result)


def test_float_batchnorm_is_refused_where_its_float32_rounding_shows() -> None:
    """After a QDense the input grid has about 10 million values per channel; QKeras's
    float32 rounding changes what the next quantizer gives on a few of them: refused, with the count."""
    with pytest.raises(UnsupportedQKerasModel, match=r"layer 'bn': QKeras computes this BatchNormalization in "
                       r"float32, and the rounding shows: .* on \d+ input values"):
        from_qkeras(_bn_model(1, wide=True))


# ---------------------------------------------------------------- refusals


def _model_with(*layers: keras.layers.Layer, shape: tuple[int, ...] = (4,)) -> keras.Model:
    x = keras.Input(shape)
    h = x
    for layer in layers:
        h = layer(h)
    return keras.Model(x, h)


def _q_in() -> QActivation:
    return QActivation(quantized_bits(8, 2, alpha=1), name="q_in")


@pytest.mark.parametrize(
    ("layers", "layer_name", "words"),
    [
        pytest.param(lambda: [_q_in(), QDense(3, kernel_quantizer=quantized_bits(8, 0, alpha="auto"),
                                              bias_quantizer=quantized_bits(8, 2), name="dense_auto")],
                     "dense_auto", ["quantized_bits(8,0,1,alpha='auto')", "alpha='auto'", "Received"], id="alpha-auto"),
        pytest.param(lambda: [QActivation(quantized_bits(8, 2, alpha=0.3), name="act_scale")],
                     "act_scale", ["quantized_bits(8,2,0,alpha=0.3)", "power of two", "Received"], id="alpha-not-po2"),
        pytest.param(lambda: [QActivation(quantized_bits(8, 2, alpha="auto_po2"), name="act_auto")],
                     "act_auto", ["quantized_bits", "alpha='auto_po2'"], id="activation-auto-po2"),
        pytest.param(lambda: [QActivation(quantized_bits(8, 2, alpha=1, use_stochastic_rounding=True),
                                          name="act_stoch")],
                     "act_stoch", ["quantized_bits", "stochastic", "use_stochastic_rounding=False"], id="stochastic"),
        pytest.param(lambda: [QActivation(quantized_bits(8, 2, alpha=1, qnoise_factor=0.5), name="act_noise")],
                     "act_noise", ["quantized_bits", "qnoise_factor=0.5"], id="qnoise"),
        pytest.param(lambda: [_q_in(), QActivation(quantized_tanh(8), name="act_tanh")],
                     "act_tanh", ["quantized_tanh"], id="quantized_tanh"),
        pytest.param(lambda: [_q_in(), QActivation(quantized_sigmoid(8), name="act_sig")],
                     "act_sig", ["quantized_sigmoid"], id="quantized_sigmoid"),
        pytest.param(lambda: [_q_in(), QActivation(quantized_relu(8, 2, negative_slope=0.25), name="act_leaky")],
                     "act_leaky", ["quantized_relu(8,2,0.25)", "negative_slope=0.25"], id="negative-slope"),
        pytest.param(lambda: [_q_in(), QActivation(quantized_relu(8, 2, use_sigmoid=1), name="act_sigrelu")],
                     "act_sigrelu", ["quantized_relu", "use_sigmoid=1"], id="relu-use-sigmoid"),
        pytest.param(lambda: [_q_in(), QActivation(quantized_po2(4), name="act_po2")],
                     "act_po2", ["quantized_po2(4)"], id="po2-activation"),
        pytest.param(lambda: [QDense(3, kernel_quantizer=quantized_bits(8, 0, alpha=1),
                                     bias_quantizer=quantized_bits(8, 2, alpha=1), name="dense_raw")],
                     "dense_raw", ["not quantized", "QActivation(quantized_bits"], id="unquantized-input"),
        pytest.param(lambda: [_q_in(), QDense(3, bias_quantizer=quantized_bits(8, 2), name="dense_float")],
                     "dense_float", ["kernel_quantizer=None"], id="float-kernel"),
        pytest.param(lambda: [_q_in(), QDense(3, kernel_quantizer=quantized_bits(8, 0, alpha=1), name="dense_fb")],
                     "dense_fb", ["bias_quantizer=None"], id="float-bias"),
        pytest.param(lambda: [_q_in(), keras.layers.BatchNormalization(name="bn")],
                     "bn", ["BatchNormalization", "fold"], id="batchnorm"),
        pytest.param(lambda: [_q_in(), QDense(3, kernel_quantizer=quantized_bits(8, 0, alpha=1),
                                              bias_quantizer=quantized_bits(8, 2, alpha=1),
                                              activation=quantized_tanh(6), name="dense_tanh")],
                     "dense_tanh_activation", ["quantized_tanh"], id="layer-activation-tanh"),
    ],
)
def test_unsupported_quantizers_and_layers_are_refused(layers, layer_name: str, words: list[str]) -> None:
    model = _model_with(*layers())
    with pytest.raises(UnsupportedQKerasModel) as info:
        from_qkeras(model)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert f"layer {layer_name!r}" in message
    for word in words:
        assert word in message, message


def test_layers_with_several_inputs_other_than_add_and_concatenate_are_refused() -> None:
    x = keras.Input((4,))
    h = QActivation(quantized_bits(8, 2, alpha=1), name="q_in")(x)
    a = QDense(3, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1))(h)
    b = QDense(3, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1))(h)
    out = keras.layers.Multiply(name="product")([a, b])
    with pytest.raises(UnsupportedQKerasModel, match="layer 'product': this layer takes several inputs"):
        from_qkeras(keras.Model(x, out))


def test_weights_far_outside_the_quantizer_range() -> None:
    """QKeras quantizes a weight w as w + (q(w) - w) in float32. For quantized_bits(8, 2)
    a weight of 1e6 gives 4.0, off the quantizer's grid: refused. quantized_po2 maps huge
    and tiny weights to its extreme exponents exactly: converted bit-exactly."""
    def dense(kernel_quantizer: object, kernel: np.ndarray) -> keras.Model:
        model = _model_with(_q_in(), QDense(2, kernel_quantizer=kernel_quantizer,
                                            bias_quantizer=quantized_bits(8, 2, alpha=1), name="dense_far"))
        model.get_layer("dense_far").set_weights([kernel, np.zeros(2, np.float32)])
        return model

    kernel = np.full((4, 2), 0.3, np.float32)
    kernel[1, 1] = 1e6
    with pytest.raises(UnsupportedQKerasModel) as info:
        from_qkeras(dense(quantized_bits(8, 2, alpha=1), kernel))
    assert "layer 'dense_far'" in str(info.value) and "quantized_bits(8,2,0,alpha=1)" in str(info.value)
    assert "value 4.0" in str(info.value)

    kernel[0, 0] = 1e-9
    kernel[1, 1] = 1e9
    qmodel = dense(quantized_po2(4), kernel)
    _assert_bit_identical(qmodel, from_qkeras(qmodel), _inputs((4,), f=5, lo=-4.0, hi=4.0 - 2**-5, n_random=50))


def _small_qkeras() -> keras.Model:
    x = keras.Input((8,))
    h = QActivation(quantized_bits(8, 2, alpha=1), name="q_in")(x)
    h = QDense(16, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1),
               name="hidden")(h)
    h = QActivation(quantized_relu(8, 3), name="relu")(h)
    out = QDense(3, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1),
                 name="head")(h)
    model = keras.Model(x, out)
    _randomize(model)
    return model


@pytest.fixture
def mixed_policy():
    """The global dtype policy mixed_float16 for one test, put back after it."""
    before = keras.config.dtype_policy()
    yield lambda: keras.config.set_dtype_policy("mixed_float16")
    keras.config.set_dtype_policy(before)


def test_a_float32_qkeras_model_imports_under_a_mixed_global_policy(mixed_policy):
    """A float32 QKeras model (built, or loaded from a file, before the global policy went mixed) imports as
    it does under float32: its hgq_fpga layers compute in float32 (they refuse a half float of their own) and
    the global policy is left as it was."""
    qmodel = _small_qkeras()
    mixed_policy()
    model = from_qkeras(qmodel)
    assert {layer.dtype_policy.compute_dtype for layer in model.layers} == {"float32"}
    assert keras.config.dtype_policy().name == "mixed_float16"
    _assert_bit_identical(qmodel, model, _inputs((8,), 5, -4.0, 4.0, n_random=100))


def test_a_half_float_qkeras_model_is_refused_naming_the_layer(mixed_policy):
    """QKeras built under mixed_float16 computes in float16: no firmware is bit-identical to it."""
    mixed_policy()
    qmodel = _small_qkeras()
    with pytest.raises(UnsupportedQKerasModel, match=r"layer 'q_in': it computes in float16 \(dtype policy "
                                                     r"'mixed_float16'\).*set_dtype_policy\('float32'\)"):
        from_qkeras(qmodel)
