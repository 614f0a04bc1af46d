"""Every quantized layer through the shared harness (hgq_fpga.testing)."""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

from hgq_fpga.layers import (
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
    QSoftmax,
)
from hgq_fpga.testing import LayerTestCase


class TestQDense(LayerTestCase):
    layer_cls = QDense
    layer_kwargs = {"units": 5, "activation": "relu"}
    input_shapes = [(7,)]
    float_cls = keras.layers.Dense


class TestQDenseNoBiasChannel(LayerTestCase):
    layer_cls = QDense
    layer_kwargs = {"units": 3, "use_bias": False, "kernel_quantizer": {"granularity": "channel"}}
    input_shapes = [(4, 6)]
    float_cls = keras.layers.Dense


class TestQConv1D(LayerTestCase):
    layer_cls = QConv1D
    layer_kwargs = {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}
    input_shapes = [(9, 3)]
    float_cls = keras.layers.Conv1D


class TestQConv2D(LayerTestCase):
    layer_cls = QConv2D
    layer_kwargs = {"filters": 3, "kernel_size": (3, 2), "activation": "relu"}
    input_shapes = [(6, 5, 2)]
    float_cls = keras.layers.Conv2D


class TestQConv2DSameStrided(LayerTestCase):
    layer_cls = QConv2D
    layer_kwargs = {"filters": 2, "kernel_size": 3, "strides": (2, 2), "padding": "same"}
    input_shapes = [(7, 7, 1)]
    float_cls = keras.layers.Conv2D


class TestQActivationRelu(LayerTestCase):
    layer_cls = QActivation
    layer_kwargs = {"activation": "relu"}
    input_shapes = [(6,)]
    float_cls = keras.layers.Activation


class TestQActivationLinearTensor(LayerTestCase):
    layer_cls = QActivation
    layer_kwargs = {"activation": "linear", "input_quantizer": {"granularity": "tensor"}}
    input_shapes = [(3, 4)]
    float_cls = keras.layers.Activation


class TestQActivationSigmoidTable(LayerTestCase):
    layer_cls = QActivation
    layer_kwargs = {"activation": "sigmoid", "input_quantizer": {"f0": 4}}
    input_shapes = [(5,)]
    float_cls = keras.layers.Activation


class TestQActivationTanhTable(LayerTestCase):
    layer_cls = QActivation
    layer_kwargs = {"activation": "tanh", "table_f": 6, "input_quantizer": {"f0": 3, "granularity": "channel"}}
    input_shapes = [(2, 3)]
    float_cls = keras.layers.Activation


class TestQSoftmax(LayerTestCase):
    layer_cls = QSoftmax
    layer_kwargs = {"input_quantizer": {"f0": 3}}
    input_shapes = [(6,)]
    float_cls = keras.layers.Softmax


class TestQBatchNormalization(LayerTestCase):
    layer_cls = QBatchNormalization
    input_shapes = [(4, 3)]
    float_cls = keras.layers.BatchNormalization


def test_batchnorm_firmware_values_in_numpy_are_qkernel_and_qbias():
    """What the frontend reads of a batch normalization (numpy) is the layer's ``qkernel`` and ``qbias``
    bit for bit: trained-looking statistics, random bits, some of them pruned, on each backend."""
    import numpy as np

    from hgq_fpga.testing import perturb_bits

    rng = np.random.default_rng(5)
    model = keras.Sequential([keras.Input((4, 16)), QBatchNormalization()])
    bn = model.layers[0]
    bn.gamma.assign(rng.normal(1.0, 0.5, 16).astype("float32"))
    bn.beta.assign(rng.normal(0.0, 2.0, 16).astype("float32"))
    bn.moving_mean.assign(rng.normal(0.0, 3.0, 16).astype("float32"))
    bn.moving_variance.assign(rng.uniform(1e-4, 9.0, 16).astype("float32"))
    for seed in range(4):
        perturb_bits(model, np.random.default_rng(seed))
        scale, offset = bn.firmware_values()
        assert isinstance(scale, np.ndarray) and np.count_nonzero(scale) > 0
        assert np.array_equal(scale, np.asarray(keras.ops.convert_to_numpy(bn.qkernel)))
        assert np.array_equal(offset, np.asarray(keras.ops.convert_to_numpy(bn.qbias)))


class TestQAdd(LayerTestCase):
    layer_cls = QAdd
    input_shapes = [(5,), (5,)]
    float_cls = keras.layers.Add


class TestQConcatenate(LayerTestCase):
    layer_cls = QConcatenate
    layer_kwargs = {"axis": -1}
    input_shapes = [(2, 3), (2, 4)]
    float_cls = keras.layers.Concatenate


class TestQMaxPooling1D(LayerTestCase):
    layer_cls = QMaxPooling1D
    layer_kwargs = {"pool_size": 2}
    input_shapes = [(8, 3)]
    float_cls = keras.layers.MaxPooling1D


class TestQMaxPooling2D(LayerTestCase):
    layer_cls = QMaxPooling2D
    layer_kwargs = {"pool_size": (2, 2), "padding": "same"}
    input_shapes = [(5, 5, 2)]
    float_cls = keras.layers.MaxPooling2D


class TestQAveragePooling1D(LayerTestCase):
    layer_cls = QAveragePooling1D
    layer_kwargs = {"pool_size": 2}
    input_shapes = [(8, 3)]
    float_cls = keras.layers.AveragePooling1D


class TestQAveragePooling2D(LayerTestCase):
    layer_cls = QAveragePooling2D
    layer_kwargs = {"pool_size": (2, 2)}
    input_shapes = [(4, 4, 2)]
    float_cls = keras.layers.AveragePooling2D


@pytest.mark.slow  # (a Python process of its own, 20 s on CI; the harness is the same on every backend: the
# TensorFlow run only)
def test_the_harness_fails_a_broken_layer_also_under_python_O(tmp_path):
    """A check of the harness fails with a message that names what differs, also under ``python -O``,
    which strips ``assert`` statements (the harness raises ``AssertionError`` itself)."""
    script = tmp_path / "broken.py"
    script.write_text(textwrap.dedent("""
        from hgq_fpga.layers import QDense
        from hgq_fpga.testing import LayerTestCase

        class Broken(QDense):  # its config names one unit more than it has
            def get_config(self):
                return {**super().get_config(), "units": self.units + 1}

        class Case(LayerTestCase):
            layer_cls = Broken
            layer_kwargs = {"units": 5}
            input_shapes = [(7,)]

        Case().test_config_roundtrip()
        print("no failure")
    """))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-O", str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode != 0 and "no failure" not in out.stdout
    assert "AssertionError: from_config(get_config()) differs" in out.stderr and "'units': 7" in out.stderr
