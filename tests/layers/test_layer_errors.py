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
