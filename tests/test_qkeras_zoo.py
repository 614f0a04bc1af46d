"""A zoo of QKeras models (issue 18): the layer and quantizer combinations of hls4ml's own QKeras
tests (test/pytest/test_qkeras.py: exactly representable ones) and the architectures hls4ml's
documentation uses (jet tagger 16-64-32-32-5, MNIST MLP with power-of-two weights, MNIST CNN in
io_stream with reuse factor 16), weights random at the same quantizers.

Each model is rebuilt with ``from_qkeras`` and compared with QKeras (float32 and float64) and the
emulator, bit for bit, on random, tie, edge and 8x-beyond-range inputs; then saved, and in a
**fresh process that imports only hgq_fpga** (one for the whole zoo) loaded with ``keras.models.load_model``, converted
with the hls4ml settings its authors use and verified three ways (Keras = emulator = C simulation),
its outputs compared with the emulator's in the first process. A softmax is the one layer QKeras
computes in float: hgq_fpga's table softmax (as in hls4ml) is checked three ways, its input bit for
bit against QKeras, and its output against QKeras's float softmax within 2**-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

if keras.backend.backend() != "tensorflow":  # QKeras runs on TensorFlow only
    pytest.skip("QKeras needs KERAS_BACKEND=tensorflow", allow_module_level=True)

import qkeras  # noqa: E402
from qkeras import (  # noqa: E402
    QActivation,
    QConv2D,
    QConv2DBatchnorm,
    QDense,
    QDenseBatchnorm,
    quantized_bits,
    quantized_po2,
    quantized_relu,
)

import hgq_fpga  # noqa: E402

#: hls4ml's default input type ap_fixed<16,6>, as a QKeras quantizer: the zoo's models read it
HLS4ML_INPUT = quantized_bits(16, 5, alpha=1)
Q_IN_F = 10


def _seeded(model: keras.Model, seed: int, scale: float = 0.6) -> keras.Model:
    """Random float weights (batch-norm variances positive); counters and other integers kept."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            if "float" not in str(w.dtype):
                values.append(np.asarray(w))
            elif "variance" in w.name:
                values.append(rng.uniform(0.2, 2.0, w.shape).astype(w.dtype))
            else:
                values.append(rng.normal(0.0, scale, w.shape).astype(w.dtype))
        if values:
            layer.set_weights(values)
    return model


def _inputs(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Random values, ties of every input grid from 2**-2 to 2**-10, edges of ap_fixed<16,6> and 8x beyond."""
    rng = np.random.default_rng(seed)
    lsb, top = 2.0**-Q_IN_F, 32.0
    steps = 2.0 ** -rng.integers(2, Q_IN_F + 1, (n // 2,) + shape)
    parts = [rng.normal(0.0, 2.0, (n,) + shape),
             (rng.integers(-500, 500, (n // 2,) + shape) + 0.5) * steps,
             rng.choice([-top, top - lsb, -top - lsb, top, 0.0, lsb / 2, -lsb / 2], (n // 4,) + shape),
             rng.uniform(-8 * top, 8 * top, (n // 4,) + shape)]
    return np.concatenate(parts)


def dense_relu(alpha: object) -> Callable[[], keras.Model]:
    """hls4ml test_single_dense_activation_exact: 16 -> QDense(16, 4-bit) -> quantized_relu(4, 0)."""
    def build() -> keras.Model:
        x = keras.Input((16,))
        h = QActivation(HLS4ML_INPUT, name="q_in")(x)
        h = QDense(16, kernel_quantizer=quantized_bits(4, 0, alpha=alpha), bias_quantizer=quantized_bits(4, 0, alpha=1),
                   name="fc1")(h)
        return keras.Model(x, QActivation(quantized_relu(4, 0), name="relu1")(h))
    return build


def quantizers() -> keras.Model:
    """hls4ml test_quantizer: each quantizer alone on one input, side by side (one C simulation)."""
    x = keras.Input((1,))
    qs = [quantized_bits(8, 0), quantized_bits(8, 4), quantized_bits(4, 2), quantized_bits(4, 0),
          quantized_bits(10, 0), quantized_relu(4), quantized_relu(4, 2), quantized_relu(8), quantized_relu(8, 4),
          quantized_relu(10), quantized_relu(10, 5)]
    outs = [QActivation(q, name=f"quantizer{n}")(x) for n, q in enumerate(qs)]
    return keras.Model(x, keras.layers.Concatenate(name="side_by_side")(outs))


def dense_activation_kwarg() -> keras.Model:
    """hls4ml test_qactivation_kwarg: QDense(10, activation=quantized_relu(n, 0)) with 4-bit weights."""
    x = keras.Input((10,))
    h = QActivation(HLS4ML_INPUT, name="q_in")(x)
    outs = [QDense(10, activation=f"quantized_relu({bits}, 0)", kernel_quantizer="quantized_bits(4, 0, alpha=1)",
                   bias_quantizer="quantized_bits(4, 0, alpha=1)", name=f"qdense{bits}")(h) for bits in (2, 4, 8)]
    return keras.Model(x, keras.layers.Concatenate(name="cat")(outs))


def conv_batchnorm() -> keras.Model:
    """hls4ml test_qconv2dbn (QConv2DBatchnorm), and QDenseBatchnorm after it."""
    x = keras.Input((8, 8, 1))
    h = QActivation(HLS4ML_INPUT, name="q_in")(x)
    h = QConv2DBatchnorm(4, kernel_size=(3, 3), kernel_quantizer="quantized_bits(8, 0, alpha=1)",
                         bias_quantizer="quantized_bits(8, 0, alpha=1)", activation="quantized_relu(8, 0)",
                         name="convbn")(h)
    h = keras.layers.Flatten()(h)
    out = QDenseBatchnorm(3, kernel_quantizer=quantized_bits(8, 1, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1),
                          name="densebn")(h)
    return keras.Model(x, out)


def po2_dense() -> keras.Model:
    """hls4ml test_quantised_po2_bit_width, at weights whose sums float32 holds exactly."""
    x = keras.Input((26,))
    h = QActivation(quantized_bits(6, 2, alpha=1), name="q_in")(x)
    return keras.Model(x, QDense(6, kernel_quantizer=quantized_po2(5, max_value=4), use_bias=False, name="dense")(h))


def residual() -> keras.Model:
    """A functional model: a skip connection (Add) and a concatenation of two branches."""
    x = keras.Input((12,))
    h = QActivation(HLS4ML_INPUT, name="q_in")(x)
    a = QDense(8, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
               activation=quantized_relu(6, 2), name="a")(h)
    b = QDense(8, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
               activation=quantized_relu(6, 2), name="b")(a)
    s = keras.layers.Add(name="skip")([a, b])
    c = keras.layers.Concatenate(name="cat")([s, QActivation(quantized_relu(4, 1), name="side")(a)])
    return keras.Model(x, QDense(4, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                                 bias_quantizer=quantized_bits(8, 3, alpha=1), name="out")(c))


def jet_tagger(softmax: bool = True) -> keras.Model:
    """hls4ml's QKeras jet tagger: 16-64-32-32-5, quantized_bits(6, 0) weights, quantized_relu(6, 0)."""
    x = keras.Input((16,))
    h = QActivation(HLS4ML_INPUT, name="q_in")(x)
    for n, units in enumerate((64, 32, 32)):
        h = QDense(units, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1),
                   name=f"fc{n + 1}")(h)
        h = QActivation(quantized_relu(6, 0), name=f"relu{n + 1}")(h)
    h = QDense(5, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1),
               name="output")(h)
    return keras.Model(x, keras.layers.Activation("softmax", name="softmax")(h) if softmax else h)


def mnist_mlp() -> keras.Model:
    """An MNIST MLP with power-of-two weights (its authors ship it as Resource, reuse factor 112)."""
    x = keras.Input((784,))
    h = QActivation(quantized_bits(8, 0, alpha=1), name="q_in")(x)
    h = QDense(16, kernel_quantizer=quantized_po2(4, max_value=1), bias_quantizer=quantized_bits(8, 3, alpha=1),
               name="fc1")(h)
    h = QActivation(quantized_relu(8, 3), name="relu1")(h)
    return keras.Model(x, QDense(10, kernel_quantizer=quantized_po2(4, max_value=1),
                                 bias_quantizer=quantized_bits(8, 3, alpha=1), name="fc2")(h))


def mnist_cnn() -> keras.Model:
    """An MNIST CNN (its authors: io_stream, reuse factor 16)."""
    x = keras.Input((28, 28, 1))
    h = QActivation(quantized_bits(8, 0, alpha=1), name="q_in")(x)
    h = QConv2D(16, (3, 3), kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
                name="conv1")(h)
    h = QActivation(quantized_relu(6, 2), name="relu1")(h)
    h = keras.layers.MaxPooling2D(2, name="pool1")(h)
    h = QConv2D(4, (3, 3), kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
                name="conv2")(h)
    h = QActivation(quantized_relu(6, 2), name="relu2")(h)
    h = keras.layers.MaxPooling2D(2, name="pool2")(h)
    h = keras.layers.Flatten(name="flat")(h)
    return keras.Model(x, QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                                 bias_quantizer=quantized_bits(8, 3, alpha=1), name="logits")(h))


#: name -> (builder, verify options, samples)
ZOO: dict[str, tuple[Callable[[], keras.Model], dict[str, object], int]] = {
    "dense_relu_4bit": (dense_relu(1), {}, 400),
    "dense_relu_4bit_auto_po2": (dense_relu("auto_po2"), {"io_type": "io_stream"}, 400),
    "quantizers": (quantizers, {}, 800),
    "dense_activation_kwarg": (dense_activation_kwarg, {}, 400),
    "conv_batchnorm": (conv_batchnorm, {"io_type": "io_stream"}, 200),
    "po2_dense": (po2_dense, {"strategy": "Resource", "reuse_factor": 2}, 400),
    "residual": (residual, {}, 400),
    "jet_tagger": (jet_tagger, {"strategy": "Resource", "reuse_factor": 4}, 400),
    "mnist_mlp": (mnist_mlp, {"strategy": "Resource", "reuse_factor": 16, "layer_config": {"fc1": {"ReuseFactor": 112}}},
                  100),
    "mnist_cnn": (mnist_cnn, {"io_type": "io_stream", "strategy": "Resource", "reuse_factor": 16,  # where it divides
                              "layer_config": {"conv1": {"ReuseFactor": 9}, "logits": {"ReuseFactor": 20}}}, 40),
}

CHILD = textwrap.dedent("""
    import json, sys, traceback
    import numpy as np
    import keras
    import hgq_fpga  # the only import that makes the models loadable

    folder, options = sys.argv[1], json.loads(sys.argv[2])
    for name, kw in options.items():  # one line per model; a model that fails does not stop the others
        try:
            model = keras.models.load_model(f"{folder}/{name}.keras")
            x = np.load(f"{folder}/{name}.x.npy")
            result = hgq_fpga.verify(model, x, **kw)
            emulated = hgq_fpga.emulate(model, x)
            line = {"ok": bool(result.ok), "text": str(result), "values": sum(o["size"] for o in result.outputs),
                    "same_as_saved": bool(np.array_equal(emulated, np.load(f"{folder}/{name}.y.npy")))}
        except Exception:
            line = {"ok": False, "text": traceback.format_exc(), "values": 0, "same_as_saved": False}
        print("ZOO", name, json.dumps(line), flush=True)
""")


def _compare(qmodel: keras.Model, model: keras.Model, x: np.ndarray, softmax: bool) -> np.ndarray:
    """Bit-identical to QKeras (float32 and float64 inputs) and to the emulator; the emulator's outputs."""
    emulated = np.asarray(hgq_fpga.emulate(model, x), np.float64)
    for dtype in (np.float32, np.float64):
        want = np.asarray(qmodel(x.astype(dtype), training=False), np.float64)
        got = np.asarray(model(x.astype(dtype), training=False), np.float64)
        if softmax:  # QKeras's float softmax: hgq_fpga's tables (8 fractional bits out) stay within 2**-5
            assert np.max(np.abs(want - got)) <= 2.0**-5, np.max(np.abs(want - got))
        else:
            assert np.array_equal(want, got), f"{dtype.__name__}: {int(np.sum(want != got))} of {want.size} differ"
    np.testing.assert_array_equal(emulated, np.asarray(model(x, training=False), np.float64))
    return emulated


def _zoo_model(name: str) -> tuple[keras.Model, keras.Model, np.ndarray]:
    """The QKeras model ``name`` with its seeded weights, hgq_fpga's from it, and its inputs."""
    build, _, n = ZOO[name]
    qmodel = _seeded(build(), seed=sum(map(ord, name)))
    return qmodel, hgq_fpga.from_qkeras(qmodel), _inputs(tuple(qmodel.input_shape[1:]), n, seed=len(name))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every zoo model built (:func:`_zoo_model`) and saved with its inputs and emulated outputs, then
    loaded, converted and verified in **one** fresh process (a process a model cost CI about 7 s each of
    imports). ``"built"``: the models and inputs by name; ``"reports"``: the fresh process's line per
    model by name; its ``"stderr"`` and ``"returncode"``; the ``"folder"``."""
    folder = tmp_path_factory.mktemp("zoo")
    built = {name: _zoo_model(name) for name in ZOO}
    for name, (_, model, x) in built.items():
        model.save(folder / f"{name}.keras")
        np.save(folder / f"{name}.x.npy", x)
        np.save(folder / f"{name}.y.npy", np.asarray(hgq_fpga.emulate(model, x), np.float64))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    options = json.dumps({name: kw for name, (_, kw, _) in ZOO.items()})
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), options], capture_output=True, text=True,
                          env=env, timeout=1800)
    reports = {}
    for line in done.stdout.splitlines():
        if line.startswith("ZOO "):
            _, name, report = line.split(" ", 2)
            reports[name] = json.loads(report)
    return {"built": built, "reports": reports, "stderr": done.stderr, "returncode": done.returncode,
            "folder": folder}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_from_qkeras_saved_loaded_fresh_and_verified(name: str, fresh: dict[str, Any], tally) -> None:
    qmodel, model, x = fresh["built"][name]
    softmax = name == "jet_tagger"
    if softmax:  # everything before the float softmax is bit-identical
        logits = keras.Model(qmodel.inputs[0], qmodel.get_layer("output").output)
        ours = keras.Model(model.inputs[0], model.get_layer("softmax").input)
        np.testing.assert_array_equal(np.asarray(logits(x)), np.asarray(ours(x)))
    y = _compare(qmodel, model, x, softmax)
    assert fresh["returncode"] == 0 and name in fresh["reports"], fresh["stderr"][-3000:]
    report = fresh["reports"][name]
    assert report["ok"], report["text"]
    np.testing.assert_array_equal(np.load(fresh["folder"] / f"{name}.y.npy"), y)  # what the fixture saved
    assert report["same_as_saved"] and report["values"] == y.size  # ... the fresh process's emulator gives
    assert "qkeras" not in fresh["stderr"].lower()
    tally["QKeras zoo: models verified through the C simulation in a fresh process"] += 1
    tally["QKeras zoo: values compared (Keras = emulator = C simulation; = QKeras but after a softmax)"] += y.size


def test_zoo_covers_hls4ml_qkeras_layers() -> None:
    """Every QKeras layer class the zoo builds is one hls4ml's QKeras tests build (exactly representable)."""
    used = {type(layer).__name__ for build, _, _ in ZOO.values() for layer in build().layers}
    assert {"QDense", "QConv2D", "QActivation", "QConv2DBatchnorm", "QDenseBatchnorm"} <= used
    assert {"Add", "Concatenate", "Activation", "MaxPooling2D", "Flatten"} <= used
    assert qkeras.__version__ == "1.2.1"


@pytest.mark.slow
def test_guide_example_runs(tmp_path: Path) -> None:
    """The guide's QKeras example, as written, on a saved jet tagger (docs/guide.md, section 7)."""
    guide = (Path(__file__).parents[1] / "docs" / "guide.md").read_text()
    block = guide.split("<!-- qkeras-example")[1].split("```python\n")[1].split("```")[0]
    qmodel = _seeded(jet_tagger(softmax=False), seed=5)
    qmodel.save(tmp_path / "jet_tagger.keras")
    np.save(tmp_path / "x_test.npy", _inputs((16,), 200, seed=5))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BIT-EXACT" in done.stdout
    assert (tmp_path / "jet_tagger_prj" / "hls4ml_config.yml").is_file()
    reloaded = subprocess.run([sys.executable, "-c", "import keras, hgq_fpga; "
                               "print(keras.models.load_model('jet_tagger_hgq.keras').name)"],
                              cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert reloaded.returncode == 0 and "_hgq" in reloaded.stdout, reloaded.stderr[-2000:]
