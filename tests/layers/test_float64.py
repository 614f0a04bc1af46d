"""float64 quantized layers are exact on every backend (:mod:`hgq_fpga.compat.ops64`, the float64 twin)."""

import keras
import numpy as np
import pytest

from hgq_fpga.compat import ops64
from hgq_fpga.emulator.keras64 import float64_outputs, wide_types
from hgq_fpga.layers import QActivation, QDense

#: values whose float32 copies differ (more than 24 significant bits), and a second operand
A = np.array([[2.0**30 + 0.5, -(2.0**40) - 0.75], [3.0 + 2.0**-40, -7.25]])
B = np.array([[2.0**30 + 0.25, 1.5], [3.0 + 2.0**-41, -2.0**-30]])
OPS = {
    "floor": (lambda m: m.floor(A64()), lambda: np.floor(A)),
    "ceil": (lambda m: m.ceil(A64()), lambda: np.ceil(A)),
    "maximum": (lambda m: m.maximum(A64(), B64()), lambda: np.maximum(A, B)),
    "minimum": (lambda m: m.minimum(A64(), 1.0 + 2.0**-40), lambda: np.minimum(A, 1.0 + 2.0**-40)),
    "floor_divide": (lambda m: m.floor_divide(A64(), B64()), lambda: np.floor_divide(A, B)),
    "matmul": (lambda m: m.matmul(A64(), B64()), lambda: A @ B),
}
#: where Keras 3.15 computes them in float32 (the module docstring of ops64)
NARROWED = {"jax": ("floor", "ceil"), "torch": tuple(OPS)}


def A64():
    return keras.ops.convert_to_tensor(A, "float64")


def B64():
    return keras.ops.convert_to_tensor(B, "float64")


@pytest.mark.parametrize("name", list(OPS))
def test_ops64_keeps_float64_exact(name):
    run, expected = OPS[name]
    with wide_types():
        out = run(ops64)
        assert keras.backend.standardize_dtype(out.dtype) == "float64"
        np.testing.assert_array_equal(np.asarray(keras.ops.convert_to_numpy(out)), expected())
        # float32 tensors take keras.ops unchanged
        x = keras.ops.convert_to_tensor(A, "float32")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ops64.floor(x)),
                                      keras.ops.convert_to_numpy(keras.ops.floor(x)))


@pytest.mark.skipif(not keras.__version__.startswith("3.15."), reason="the narrowing was measured on Keras 3.15")
@pytest.mark.parametrize("name", list(OPS))
def test_keras_narrows_where_the_docstring_says(name):
    """What ops64 works around: on Keras 3.15 these ``keras.ops`` return float32 for float64 tensors."""
    with wide_types():
        dtype = keras.backend.standardize_dtype(OPS[name][0](keras.ops).dtype)
    narrowed = name in NARROWED.get(keras.backend.backend(), ())
    assert dtype == ("float32" if narrowed else "float64")


@pytest.fixture
def float64():
    """floatx and the dtype policy float64 (Keras then keeps float64 data float64 in predict), with JAX's
    64-bit types on; all put back after the test (the policy too: Keras fixes it from floatx when first read)."""
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        with wide_types():
            yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


def test_float64_layers_are_exact(float64):
    """Inputs wider than float32 (here quantized at f = 24 bits, each as it is: float32 copies of them
    quantize differently) go through a float64 model as the emulator takes them, exactly, after training
    (on JAX and PyTorch 149 of 384 values of the first layer were off the grid before ops64)."""
    import hgq_fpga

    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)) + 2.0**-30
    model = keras.Sequential([keras.Input((6,), dtype="float64"),
                              QActivation("linear", dtype="float64", input_quantizer={"f0": 24}),
                              QDense(3, dtype="float64", input_quantizer={"f0": 24})])
    model.compile("adam", "mse")
    model.fit(x, x[:, :3], epochs=1, verbose=0)
    hgq_fpga.calibrate(model, x)
    emulated = np.asarray(hgq_fpga.emulate(model, x), np.float64)
    assert np.sum(emulated != np.asarray(hgq_fpga.emulate(model, x.astype(np.float32)), np.float64)) > 10
    np.testing.assert_array_equal(emulated, np.asarray(model.predict(x, verbose=0), np.float64))


def test_the_float64_twin_is_exact():
    """The twin of a float32 model (what ``verify`` compares the firmware with) on inputs wider than float32:
    some were off on JAX and PyTorch before ops64."""
    import hgq_fpga
    from hgq_fpga.testing import edge_inputs

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 6)) * 300 + 2.0**-30
    model = keras.Sequential([keras.Input((6,)), QActivation("linear", input_quantizer={"f0": 24}),
                              QDense(20, input_quantizer={"f0": 24}, activation="relu"), QDense(3)])
    model.compile("adam", "mse")
    model.fit(x.astype(np.float32), x[:, :3].astype(np.float32), epochs=1, verbose=0)
    hgq_fpga.calibrate(model, x)
    x = edge_inputs(x)  # (overflow both ways and ties as well)
    emulated = np.asarray(hgq_fpga.emulate(model, x), np.float64)
    twin = float64_outputs(model, x)
    assert twin.dtype == np.float64
    np.testing.assert_array_equal(twin, emulated)


def test_verify_compares_keras_exactly():
    """``verify_rtl`` (Keras's twin, the emulator and the simulated RTL) on inputs wider than float32 finds
    no mismatch on any backend (on JAX and PyTorch it reported 282 and 315 Keras mismatches before ops64)."""
    import hgq_fpga
    from hgq_fpga.backends.rtl.verify import verify_rtl
    from hgq_fpga.testing import edge_inputs

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).normal(size=(128, 6)) * 300 + 2.0**-30
    model = keras.Sequential([keras.Input((6,)), QActivation("linear", input_quantizer={"f0": 24}),
                              QDense(8, input_quantizer={"f0": 24}, activation="relu"), QDense(3)])
    model.compile("adam", "mse")
    model.fit(x.astype(np.float32), x[:, :3].astype(np.float32), epochs=1, verbose=0)
    hgq_fpga.calibrate(model, x)
    probe = edge_inputs(x)
    assert np.any(probe != probe.astype(np.float32))
    (out,) = verify_rtl(model, probe).outputs
    assert out["size"] == 3 * len(probe)
    assert out["keras_vs_emulator"] == 0 and out["rtl_vs_emulator"] == 0, out["first_mismatch"]


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's 64-bit switch")
def test_float64_on_jax_without_64_bit_types_is_refused():
    """Without jax_enable_x64 JAX's float64 arrays are float32: the layer says so and how to switch it on."""
    import jax

    with jax.enable_x64(False), pytest.raises(ValueError, match="'wide'.*JAX_ENABLE_X64=1.*jax_enable_x64"):
        QDense(3, dtype="float64", name="wide")
    with wide_types():
        QDense(3, dtype="float64", name="wide")
