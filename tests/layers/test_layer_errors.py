"""Bad layer arguments get errors that name what was received."""

import keras
import numpy as np
import pytest

from hgq_fpga.layers import QActivation, QBatchNormalization, QConv2D, QDense, QMaxPooling2D


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: QDense(4, activation="tanh"), "activation 'tanh' is not supported"),
        (lambda: QActivation("softmax"), "activation 'softmax' is not supported"),
        (lambda: QActivation("tanh", table_bits=20), "table_bits"),
        (lambda: QDense(4, ebops_penalty=-1.0), "ebops_penalty must be >= 0"),
        (lambda: QConv2D(2, 3, data_format="channels_first"), "channels_last"),
        (lambda: QMaxPooling2D(2, data_format="channels_first"), "channels_last"),
        (lambda: QBatchNormalization(renorm=True), "renorm=True is not supported"),
        (lambda: QDense(4, kernel_quantizer={"granularity": "row"}), "granularity must be"),
        (lambda: QDense(4, input_quantizer={"k": 3}), "k must be 0, 1 or None"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_keras_validation_still_applies():
    with pytest.raises(ValueError, match="units"):
        QDense(0)


def test_batchnorm_only_on_last_axis():
    layer = QBatchNormalization(axis=1)
    with pytest.raises(ValueError, match="only the last"):
        layer(np.ones((2, 3, 4), "float32"))


def test_element_granularity_needs_static_shape():
    model_in = keras.Input((None, 3))
    with pytest.raises(ValueError, match="needs every non-batch dimension known"):
        QDense(2)(model_in)
    QDense(2, input_quantizer={"granularity": "channel"})(model_in)  # fine


def test_table_too_large_for_its_index_is_refused_at_calibration():
    import hgq_fpga

    model = keras.Sequential([keras.Input((3,)), QActivation("sigmoid", table_bits=4, input_quantizer={"f0": 6})])
    with pytest.raises(ValueError, match="needs a .*-bit index.*table_bits=4"):
        hgq_fpga.calibrate(model, np.array([[3.0, -2.0, 0.5]], "float32"))
    assert not hgq_fpga.is_calibrated(model)


def test_softmax_needs_vectors_and_sane_table_sizes():
    from hgq_fpga.layers import QSoftmax

    with pytest.raises(ValueError, match=r"shape \(batch, n\)"):
        QSoftmax()(np.ones((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match="inv_bits"):
        QSoftmax(inv_bits=30)


def _switched(get, put, value):
    """A global Keras setting at ``value`` for one test, put back after it."""
    before = get()
    put(value)
    try:
        yield
    finally:
        put(before)


@pytest.fixture
def mixed_precision():
    """The global dtype policy mixed_float16."""
    yield from _switched(keras.config.dtype_policy, keras.config.set_dtype_policy, "mixed_float16")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "float16", "bfloat16"])
def test_a_half_float_policy_is_refused_naming_the_layer_and_the_fix(policy):
    from hgq_fpga.layers import QAdd, QAveragePooling2D, QSoftmax

    for make in (lambda: QDense(4, dtype=policy, name="head"), lambda: QConv2D(2, 3, dtype=policy, name="head"),
                 lambda: QActivation("relu", dtype=policy, name="head"), lambda: QAdd(dtype=policy, name="head"),
                 lambda: QBatchNormalization(dtype=policy, name="head"), lambda: QSoftmax(dtype=policy, name="head"),
                 lambda: QAveragePooling2D(2, dtype=policy, name="head")):
        with pytest.raises(ValueError, match=f"'head'.*policy is '{policy}'.*Pass dtype='float32'"):
            make()


def test_under_a_mixed_global_policy_float32_quantized_layers_train_beside_mixed_ones_and_emulate_exactly(
        mixed_precision):
    """What the refusal tells the user to do works: the quantized layers in float32 (the first quantized
    layer takes the float16 output of a plain mixed-precision layer), the same numbers as the emulator's."""
    import hgq_fpga

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)
    with pytest.raises(ValueError, match="mixed_float16"):
        QDense(4)
    mixed = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6), QDense(5, activation="relu", dtype="float32"),
                              QDense(3, dtype="float32")])
    assert mixed.layers[0].compute_dtype == "float16"
    mixed.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    mixed.fit(x, y, epochs=1, verbose=0)
    # the calibration's input power of the first quantized layer: its float16 input (beyond 256: a square
    # over float16's 65,504) squared and summed as the float32 layer takes it
    power = hgq_fpga.calibrate(mixed, x * 300).input_power[mixed.layers[1]]
    half = np.asarray(keras.ops.convert_to_numpy(mixed.layers[0](x * 300)))
    assert half.dtype == np.float16 and np.abs(half).max() > 256
    np.testing.assert_allclose(power, np.mean(half.astype(np.float64) ** 2, axis=0), rtol=1e-5)
    model = keras.Sequential([keras.Input((6,)), QDense(5, activation="relu", dtype="float32"),
                              QDense(3, dtype="float32")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    hgq_fpga.calibrate(model, x)
    np.testing.assert_array_equal(np.asarray(hgq_fpga.emulate(model, x), np.float64),
                                  np.asarray(model.predict(x, verbose=0), np.float64))
