"""One number for EBOPs: the layers' own count (training), its differentiable
form at integer bits, the exact estimate and the HTML report agree."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import hgq_fpga
from hgq_fpga.layers import QActivation, QBatchNormalization, QConv1D, QConv2D, QDense
from hgq_fpga.testing import perturb_bits


def _mlp():
    inp = keras.Input((12,))
    h = QDense(9, activation="relu", name="d1")(inp)
    h = QBatchNormalization(name="bn")(h)
    return keras.Model(inp, QDense(4, name="d2")(h)), (12,)


def _cnn():
    inp = keras.Input((8, 8, 2))
    h = QConv2D(3, 3, padding="same", activation="relu", name="c1")(inp)
    h = QConv2D(2, 2, strides=2, name="c2")(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inp, QDense(3, name="out")(h)), (8, 8, 2)


def _conv1d():
    inp = keras.Input((10, 3))
    h = QConv1D(4, 3, dilation_rate=2, name="c")(inp)
    h = QActivation("relu", name="act")(h)
    return keras.Model(inp, h), (10, 3)


@pytest.mark.parametrize("make", [_mlp, _cnn, _conv1d], ids=["mlp_bn", "cnn", "conv1d"])
@pytest.mark.parametrize("seed", [0, 1])
def test_layer_training_estimate_and_report_ebops_agree(make, seed, tmp_path):
    rng = np.random.default_rng(seed)
    model, shape = make()
    x = (rng.standard_normal((64,) + shape) * 3).astype("float32")
    model(x[:2])
    perturb_bits(model, rng, prune_fraction=0.3)
    hgq_fpga.calibrate(model, x)
    layers = [layer for layer in model.layers if hasattr(layer, "ebops")]
    by_layer = {layer.name: float(ops.convert_to_numpy(layer.ebops())) for layer in layers}
    report = hgq_fpga.estimate(model)
    assert sum(by_layer.values()) > 0
    assert report.ebops == sum(by_layer.values())
    for row in report.layers:
        assert row.ebops == by_layer.get(row.layer, 0.0), row.layer
    from hgq_fpga.report import write_report

    files = write_report(model, tmp_path / "report")
    html = files.html.read_text()
    assert f"{report.ebops:.0f} EBOPs" in html
    if not any(isinstance(layer, QBatchNormalization) for layer in layers):  # (BN trains on batch moments);
        # last: a training step leaves the model needing calibration again
        for layer in layers:
            layer.ebops_penalty = 1.0
        model(x, training=True)  # the calibration data: the tracked ranges stay as they are
        training = sum(float(ops.convert_to_numpy(v)) for v in model.losses)
        assert training == report.ebops
