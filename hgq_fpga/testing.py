"""One shared test harness for quantized layers (pytest style).

A layer's test is a subclass that names the layer, its arguments and input
shapes; it inherits checks of the output shape, a training step that moves
every trainable variable (bit-widths included), the config and ``.keras``
round trips, float equivalence with the plain Keras layer at generous bits,
calibration (no overflow on the calibration data), and every later stage:
Keras vs the emulator bit for bit with perturbed per-element bits on
overflow and tie inputs, a finite exact cost that is zero once every weight
is pruned, and (marked slow) the hls4ml C simulation.

Example (in a test module)::

    class TestQDense(LayerTestCase):
        layer_cls = QDense
        layer_kwargs = {"units": 5, "activation": "relu"}
        input_shapes = [(7,)]
        float_cls = keras.layers.Dense
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops

from .calibration import calibrate, is_calibrated
from .layers.base import QuantizedLayerMixin
from .quantizers import TRAINED

try:  # the harness runs under pytest; importing this module does not need it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]


def _slow(fn: Any) -> Any:
    """Mark a harness check ``slow`` (it compiles C++)."""
    return pytest.mark.slow(fn) if pytest is not None else fn


def _expect(ok: Any, message: str) -> None:
    """Fail the calling test with ``message``: an ``AssertionError``, raised also under ``python -O``
    (which strips ``assert`` statements, and pytest rewrites them only in test modules)."""
    if not ok:
        raise AssertionError(message)


__all__ = ["LayerTestCase", "assert_verilog_matches_emulator", "dense_layer_model", "edge_inputs", "model_outputs",
           "perturb_bits", "variable_values"]

GENEROUS_BITS = {"f0": 20.0, "f_max": 24.0}


def variable_values(layer: keras.layers.Layer) -> dict[str, np.ndarray]:
    """Numpy copies of every variable of ``layer``, keyed by position and name.

    Keys look like ``"02:input_quantizer/f"``: stable across save/load, where
    the scope prefix of ``Variable.path`` may differ.
    """
    return {
        f"{n:02d}:" + "/".join(v.path.split("/")[-2:]): np.array(ops.convert_to_numpy(v))
        for n, v in enumerate(layer.weights)
    }


def model_outputs(model: keras.Model, xs: list[np.ndarray], training: bool = False) -> np.ndarray:
    """Run ``model`` eagerly and return its output as numpy."""
    out = model(xs if len(xs) > 1 else xs[0], training=training)
    return np.asarray(ops.convert_to_numpy(out))


class StageChecks:
    """The checks of :class:`LayerTestCase` that reach the IR's consumers."""

    def _calibrated(self, seed: int = 3) -> tuple[keras.Model, list[np.ndarray]]:
        model = self.make_model()  # type: ignore[attr-defined]
        xs = self.make_data(seed)  # type: ignore[attr-defined]
        model_outputs(model, xs)
        perturb_bits(model, np.random.default_rng(seed))
        calibrate(model, xs)
        return model, xs

    def test_emulator_is_bit_exact(self) -> None:
        from .emulator import emulate
        from .emulator.keras64 import float64_outputs

        model, xs = self._calibrated()
        probe = [edge_inputs(x).astype(np.float64) for x in xs]
        twin = float64_outputs(model, probe)
        emu = emulate(model, probe if len(probe) > 1 else probe[0])
        _expect(np.array_equal(twin, emu), f"Keras and the emulator: {int(np.count_nonzero(twin != emu))} mismatches")

    def test_exact_cost_is_finite_and_zero_when_pruned(self) -> None:
        from .quantizers import WeightQuantizer
        from .resources import estimate

        model, xs = self._calibrated()
        report = estimate(model)
        _expect(np.isfinite(report.lut) and report.lut >= 0 and report.dsp >= 0,
                f"estimate(): LUT {report.lut}, DSP {report.dsp} (expected finite and >= 0)")
        layer = self._layer_of(model)  # type: ignore[attr-defined]
        weights = [q for q in layer.quantizers if isinstance(q, WeightQuantizer) and q.built]
        if not weights:
            return
        for q in weights:
            q.set_f(np.full(q.bits_shape, q.f_min, "float32"))  # the lowest bits: every weight rounds to 0
        calibrate(model, xs)
        row = next(r for r in estimate(model).layers if r.layer == layer.name)
        _expect((row.lut, row.dsp, row.ebops) == (0.0, 0, 0.0), f"every weight pruned, the layer still costs: {row}")

    #: a regex the hls4ml conversion's refusal must match, for configurations hls4ml cannot build
    hls4ml_refuses: ClassVar[str | None] = None

    @_slow
    def test_hls4ml_csim_is_bit_exact(self) -> None:
        from .backends.hls4ml import UnsupportedForHls4ml, verify

        model, xs = self._calibrated()
        if self.hls4ml_refuses is not None:
            with pytest.raises(UnsupportedForHls4ml, match=self.hls4ml_refuses):
                verify(model, xs)
            return
        result = verify(model, [edge_inputs(x).astype(np.float64) for x in xs])
        _expect(result.ok, str(result))


class LayerTestCase(StageChecks):
    """Base class; subclasses set the class attributes below."""

    layer_cls: ClassVar[type]
    layer_kwargs: ClassVar[dict[str, Any]] = {}
    input_shapes: ClassVar[list[tuple[int, ...]]] = []
    float_cls: ClassVar[type | None] = None
    batch_size: ClassVar[int] = 16
    input_scale: ClassVar[float] = 2.0
    float_atol: ClassVar[float] = 1e-4

    # -- building blocks -------------------------------------------------
    def make_layer(self, **overrides: Any) -> keras.layers.Layer:
        return self.layer_cls(**{**self.layer_kwargs, **overrides})

    def make_model(self, layer: keras.layers.Layer | None = None) -> keras.Model:
        layer = layer if layer is not None else self.make_layer()
        inputs = [keras.Input(shape) for shape in self.input_shapes]
        inputs = inputs if len(inputs) > 1 else inputs[0]
        return keras.Model(inputs, layer(inputs))

    def make_data(self, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [
            (rng.standard_normal((self.batch_size,) + s) * self.input_scale).astype("float32")
            for s in self.input_shapes
        ]

    def generous_kwargs(self) -> dict[str, Any]:
        """Every quantized layer takes ``input_quantizer``; weighted ones also kernel/bias."""
        params = inspect.signature(self.layer_cls.__init__).parameters
        keys = ["input_quantizer"] + [k for k in ("kernel_quantizer", "bias_quantizer") if k in params]
        return {k: dict(GENEROUS_BITS) for k in keys}

    def _layer_of(self, model: keras.Model) -> keras.layers.Layer:
        return next(l for l in model.layers if isinstance(l, QuantizedLayerMixin))

    # -- inherited tests -------------------------------------------------
    def test_output_shape(self) -> None:
        model = self.make_model()
        xs = self.make_data()
        y = model_outputs(model, xs)
        expected = tuple(model.output.shape[1:])
        _expect(y.shape == (self.batch_size,) + expected, f"output shape {y.shape}, expected {(self.batch_size,) + expected}")
        _expect(np.all(np.isfinite(y)), f"{int(np.sum(~np.isfinite(y)))} outputs are NaN or Inf")

    def test_training_step_moves_every_variable(self) -> None:
        # a zero bias quantizes without error and gives its bits no gradient
        probe = self.make_layer().get_config()
        extra = {"bias_initializer": "random_normal"} if "bias_initializer" in probe else {}
        model = self.make_model(self.make_layer(**extra))
        xs = self.make_data()
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        target = np.random.default_rng(1).standard_normal((self.batch_size,) + tuple(model.output.shape[1:]))
        layer = self._layer_of(model)
        before = variable_values(layer)
        model.train_on_batch(xs if len(xs) > 1 else xs[0], target.astype("float32"))
        after = variable_values(layer)
        ids = {id(v) for v in layer.trainable_weights}
        trainable = {key for key, v in zip(before, layer.weights) if id(v) in ids}
        _expect(any(p.endswith("/f") for p in trainable), f"no trainable bit-width variable among {sorted(trainable)}")
        frozen = [p for p in trainable if np.array_equal(before[p], after[p])]
        _expect(not frozen, f"training step did not change: {frozen}")
        for q in layer.input_quantizers:
            state = float(ops.convert_to_numpy(q.state))
            _expect(state == TRAINED, f"{q.name}: state {state} after a training step, expected {TRAINED} (trained)")

    def test_config_roundtrip(self) -> None:
        layer = self.make_layer()
        config = layer.get_config()
        clone = self.layer_cls.from_config(config)
        _expect(clone.get_config() == config, f"from_config(get_config()) differs: {clone.get_config()} != {config}")
        m1, m2 = self.make_model(layer), self.make_model(clone)
        m2.set_weights(m1.get_weights())
        xs = self.make_data()
        np.testing.assert_array_equal(model_outputs(m1, xs), model_outputs(m2, xs))

    def test_keras_file_roundtrip(self, tmp_path: Path) -> None:
        model = self.make_model()
        xs = self.make_data()
        model.compile(optimizer="adam", loss="mse")
        model.train_on_batch(xs if len(xs) > 1 else xs[0], model_outputs(model, xs))
        calibrate(model, xs)
        path = tmp_path / "model.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        _expect(is_calibrated(loaded), "the loaded .keras model is not calibrated (the saved one was)")
        probe = self.make_data(seed=7)
        np.testing.assert_array_equal(model_outputs(model, probe), model_outputs(loaded, probe))
        v1, v2 = variable_values(self._layer_of(model)), variable_values(self._layer_of(loaded))
        _expect(v1.keys() == v2.keys(), f"variables after loading {sorted(v2)}, before {sorted(v1)}")
        for key in v1:
            np.testing.assert_array_equal(v1[key], v2[key], err_msg=key)

    def test_float_equivalence(self) -> None:
        if self.float_cls is None:
            raise NotImplementedError("set float_cls to the plain Keras layer")
        qlayer = self.make_layer(**self.generous_kwargs())
        qmodel = self.make_model(qlayer)
        config = {k: v for k, v in qlayer.get_config().items() if k not in qlayer.quantization_config_keys}
        config.pop("name", None)
        flayer = self.float_cls.from_config(config)
        fmodel = self.make_model(flayer)
        quant = {id(v) for v in qlayer.quantizer_variables}
        own = [v for v in qlayer.weights if id(v) not in quant]
        flayer.set_weights([ops.convert_to_numpy(v) for v in own])
        xs = self.make_data()
        for training in (False, True):
            np.testing.assert_allclose(
                model_outputs(qmodel, xs, training),
                model_outputs(fmodel, xs, training),
                atol=self.float_atol,
                rtol=self.float_atol,
            )

    def test_calibration_prevents_overflow(self) -> None:
        model = self.make_model()
        xs = self.make_data()
        layer = self._layer_of(model)
        expected = model_outputs(model, xs)  # fresh: rounding only
        calibrate(model, xs)
        _expect(is_calibrated(model), "calibrate() left the model uncalibrated")
        if not getattr(layer, "uses_table", False):  # a table changes the outputs on purpose
            np.testing.assert_array_equal(model_outputs(model, xs), expected)
        # far outside the calibrated range the WRAP quantizer must wrap
        big = [x * 64.0 + 3.0 for x in xs]
        for q, x in zip(layer.input_quantizers, big):
            wrapped = ops.convert_to_numpy(q.quantize_values(x))
            _expect(np.max(np.abs(wrapped)) < np.max(np.abs(x)),
                    f"{q.name}: inputs up to {np.max(np.abs(x))} quantized to {np.max(np.abs(wrapped))}, expected them wrapped")


def perturb_bits(model: keras.Model, rng: np.random.Generator, *, prune_fraction: float = 0.2) -> None:
    """Random per-element fractional bits in ``[0, 6]``; a ``prune_fraction`` of the
    weights get ``f = -8`` so that they round to zero (zero-bit weights)."""
    from .calibration import iter_quantizers
    from .quantizers import WeightQuantizer

    for _, q in iter_quantizers(model):
        if not q.built:
            continue
        f = rng.integers(0, 7, q.bits_shape).astype("float32")
        if isinstance(q, WeightQuantizer):
            f = np.where(rng.random(q.bits_shape) < prune_fraction, -8.0, f)
        q.set_f(f)


def edge_inputs(x: np.ndarray) -> np.ndarray:
    """``x``, far out of the calibrated range both ways (overflow), and rounding ties."""
    ties = (np.round(x * 64) + 0.5) / 64
    return np.concatenate([x, x * 64.0, -x * 1000.0, ties]).astype(x.dtype)


def dense_layer_model(
    n_in: int,
    n_out: int,
    *,
    weight_bits: int = 4,
    zero_fraction: float = 0.0,
    input_bits: int = 6,
    signed_input: bool = True,
    use_bias: bool = True,
    seed: int = 0,
) -> tuple[keras.Model, np.ndarray]:
    """A calibrated one-``QDense`` model with chosen bit-widths, and its calibration data.

    Weights are random integers ``|m| < 2**(weight_bits - 1)`` on a
    ``2**-(weight_bits - 1)`` grid (so each nonzero weight has at most
    ``weight_bits`` bits, sign included); a ``zero_fraction`` of them is 0.
    Inputs are calibrated on data in ``[-1, 1)`` (``signed_input``) or
    ``[0, 2)``, with ``input_bits`` bits per element. Used by the estimator's
    tests and ``benchmarks/estimator.py``.
    """
    from .layers import QDense

    rng = np.random.default_rng(seed)
    top = 2 ** (weight_bits - 1) - 1
    m = rng.integers(-top, top + 1, size=(n_in, n_out))
    m[m == 0] = 1
    m[rng.random((n_in, n_out)) < zero_fraction] = 0
    scale = 2.0 ** -(weight_bits - 1)
    f_in = input_bits - 1  # one integer bit (sign or the [0, 2) range), the rest fraction
    layer = QDense(
        n_out, use_bias=use_bias,
        input_quantizer={"f0": float(f_in)},
        kernel_quantizer={"f0": float(weight_bits - 1)},
        bias_quantizer={"f0": float(weight_bits - 1)},
    )
    model = keras.Sequential([keras.Input((n_in,)), layer])
    layer.kernel.assign((m * scale).astype("float32"))
    if use_bias:
        layer.bias.assign((rng.integers(-top, top + 1, n_out) * scale).astype("float32"))
    x = rng.uniform(-1.0, 1.0, (512, n_in)) if signed_input else rng.uniform(0.0, 2.0 - 2.0**-f_in, (512, n_in))
    x[:2] = [[-1.0 if signed_input else 0.0] * n_in, [1.0 - 2.0**-f_in if signed_input else 2.0 - 2.0**-f_in] * n_in]
    calibrate(model, x.astype("float32"))
    return model, x.astype("float32")


def assert_verilog_matches_emulator(graph: Any, x: Any) -> str:
    """Zero mismatches between the combinational Verilog (Icarus Verilog) and the emulator's
    mantissas on ``x`` (compared as integers, output by output); returns the Verilog source.
    Needs iverilog."""
    from .backends.rtl import simulate_model, to_verilog
    from .emulator import emulate_mantissas

    module = to_verilog(graph)
    got = simulate_model(graph, x, module=module)
    want = emulate_mantissas(graph, x)
    for g, w, port in zip(got, want, module.outputs):
        _expect(port.f == w.f, f"output {port.name}: {port.f} fractional bits, the emulator's {w.f}")
        g, w = np.asarray(g, dtype=object), np.asarray(w.m, dtype=object)
        _expect(g.shape == w.shape, f"output {port.name}: shape {g.shape}, the emulator's {w.shape}")
        mismatches = int(np.sum(g != w))
        _expect(mismatches == 0, f"output {port.name}: {mismatches} of {g.size} outputs differ from the emulator's")
    return module.source
