"""io_stream projects (issue 18): hgq_fpga's own stream C++ for per-element quantizers, the layers
hls4ml adds for streams (zero padding, clones, repacking) under the type check, and three-way
bit-exactness through the g++ C simulation."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.backends.hls4ml import to_hls4ml
from hgq_fpga.backends.hls4ml.stream import stream_mask_function
from hgq_fpga.backends.hls4ml.typewalk import check_types
from hgq_fpga.frontend.keras import build_ir
from hgq_fpga.layers import QAdd, QConv1D, QConv2D, QDense, QMaxPooling2D
from hgq_fpga.testing import edge_inputs, perturb_bits


def calibrated(model: keras.Model, x: np.ndarray, seed: int = 0) -> keras.Model:
    perturb_bits(model, np.random.default_rng(seed), prune_fraction=0.2)
    hgq_fpga.calibrate(model, x)
    return model


def conv1d_reshape_model(rng: np.random.Generator) -> tuple[keras.Model, np.ndarray]:
    """Conv2D -> a reshape that repacks the stream -> Conv1D ('same': hls4ml adds zero padding) -> dense."""
    inp = keras.Input((6, 6, 2))
    x = QConv2D(4, 3, activation="relu", name="c2")(inp)
    x = keras.layers.Reshape((4, 16))(x)
    x = QConv1D(3, 2, padding="same", name="c1")(x)
    out = QDense(2, name="d")(keras.layers.Flatten()(x))
    data = rng.standard_normal((200, 6, 6, 2))
    return calibrated(keras.Model(inp, out), data), data


def test_stream_quantizer_cases_cover_every_element():
    shape = (3, 2)
    k = np.ones((1, *shape), int)
    b = np.array([[[4, 0], [4, 2], [4, 4]]])
    i = np.array([[[1, 0], [1, 1], [1, 2]]])
    code = stream_mask_function("q7", shape, (k, b, i), "RND_CONV", "SAT_ZERO")
    assert "default: out_data[n % OUT] = ap_fixed<4,1,AP_RND_CONV,AP_SAT_ZERO>(in_data[j]); break;" in code
    assert "case 1: out_data[n % OUT] = 0; break;" in code
    assert "case 3: out_data[n % OUT] = ap_fixed<2,1,AP_RND_CONV,AP_SAT_ZERO>(in_data[j]); break;" in code
    assert "case 5: out_data[n % OUT] = ap_fixed<4,2,AP_RND_CONV,AP_SAT_ZERO>(in_data[j]); break;" in code
    assert "6 % IN == 0" in code and "void q7(hls::stream<input_t> &inp" in code


@pytest.mark.slow
def test_cnn_with_clones_and_padding_verifies_in_io_stream(rng, tmp_path):
    inp = keras.Input((8, 8, 2))
    x = QConv2D(3, 3, activation="relu", padding="same", name="a")(inp)
    x = QMaxPooling2D(2)(x)
    y = QConv2D(3, 3, padding="same", name="b")(x)
    y = QAdd()([x, y])  # x is read twice: hls4ml clones its stream
    out = QDense(4, name="d")(keras.layers.Flatten()(y))
    data = rng.standard_normal((200, 8, 8, 2))
    model = calibrated(keras.Model(inp, out), data)
    result = hgq_fpga.verify(model, edge_inputs(data), tmp_path / "p", io_type="io_stream")
    assert result.ok, str(result)
    cpp = (tmp_path / "p" / "firmware" / "hgq_fpga_prj.cpp").read_text()
    assert "hls::stream<" in cpp and "clone_stream" in cpp and "zeropad2d_cl" in cpp
    assert "IOType: io_stream" in (tmp_path / "p" / "hls4ml_config.yml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("options", [{}, {"strategy": "Resource", "reuse_factor": 2}],
                         ids=["latency", "resource-rf2"])
def test_conv1d_and_repacked_reshape_verify_in_io_stream(options, rng):
    model, data = conv1d_reshape_model(rng)
    result = hgq_fpga.verify(model, edge_inputs(data), io_type="io_stream", **options)
    assert result.ok, str(result)


def test_a_layer_hls4ml_adds_must_keep_the_type(rng, tmp_path):
    """Narrow the type of the zero padding hls4ml put before the 'same' Conv1D: the check names it."""
    from hls4ml.model.types import FixedPrecisionType

    model, _ = conv1d_reshape_model(rng)
    graph = build_ir(model)
    hls_model = to_hls4ml(model, tmp_path / "p", graph=graph, io_type="io_stream")
    origin = json.loads((tmp_path / "p" / "hgq_fpga_layers.json").read_text())
    assert check_types(hls_model, graph, origin) == []
    padding = [layer for name, layer in hls_model.graph.items() if "ZeroPadding" in type(layer).__name__]
    assert padding, "hls4ml added no zero padding"
    padding[0].get_output_variable().type.precision = FixedPrecisionType(3, 1, True)
    problems = check_types(hls_model, graph, origin)
    assert problems and "ZeroPadding" in str(problems[0]) and "changes the type" in str(problems[0])
