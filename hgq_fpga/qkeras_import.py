"""Import QKeras models: :func:`from_qkeras` rebuilds a QKeras (``qkeras-v3``)
model from hgq_fpga layers whose outputs are bit-identical to QKeras's.

QKeras gives one fixed-point format per tensor (``quantized_bits(8, 2)``);
hgq_fpga gives every element its own trainable fractional bits. The import
starts every element at the bits QKeras implies, copies the QKeras-quantized
weights, and maps each QKeras quantizer to an ``ap_fixed`` format with the same
rounding and saturation, so the converted model computes exactly what the QKeras
model computes. It can then be estimated, emulated, verified, converted to
hls4ml or trained further with per-element bits like any hgq_fpga model.

What cannot be represented exactly is refused with
:class:`UnsupportedQKerasModel`, naming the layer, the quantizer and what to do.

How :func:`from_qkeras` maps a model:

Every QKeras ``QDense``/``QConv`` becomes the hgq_fpga layer of the same
name. Weights are the QKeras-*quantized* weights, and each weight element
starts with the fractional bits the QKeras quantizer gives it. Each
activation quantizer becomes an ``ap_fixed`` format with the same rounding
and saturation and fixed ``k`` and ``i``; it is placed as the
``input_quantizer`` of the next quantized hgq_fpga layer (also across
``Flatten``/``Reshape``/``Dropout``), so the firmware quantizes once, as
QKeras does (hls4ml also mishandles two quantizers in a row). Where no
quantized layer follows (the model output, a plain relu), it becomes a
``QActivation`` of the QKeras layer's name (``"<layer>_activation"`` for
a layer's own ``activation=``). Inputs of hgq_fpga layers that QKeras
does not quantize (a ``QDense`` right after a ``QDense``, a pooling after a
plain relu) get a ``TRN``/``WRAP`` format that holds every value the
previous layer can produce (exact interval arithmetic), so they change
nothing.

Mapping (``k``: sign bit, ``i``: integer bits without sign, ``f``:
fractional bits, ``ap_fixed<k+i+f, k+i>``):

==========================================  =========================================================
QKeras                                      hgq_fpga
==========================================  =========================================================
``quantized_bits(bits, integer,``           ``k = keep_negative``, ``f = bits - integer - k``,
``keep_negative, alpha=None|1)``            ``i = integer``; activations: ``RND_CONV`` + ``SAT``
                                            (``SAT_SYM`` if ``symmetric``); weights: these ``f``
                                            and ``i`` with ``RND_CONV``/``SAT``
... ``alpha=2**s`` (a fixed power of two)   ``f = bits - integer - k - s``, ``i = integer + s``
... kernel with ``alpha=None`` or           QKeras turns ``alpha=None`` on a kernel into
``"auto_po2"``                              ``"auto_po2"`` (symmetric, per-channel power-of-two
                                            scale ``c``): ``f = bits - 1 - integer - log2(c)``
                                            per channel, ``i`` from the values (``i=None``)
``quantized_relu(bits, integer)``           ``QActivation("relu")`` with ``k = 0``,
                                            ``i = integer``, ``f = bits - integer``, ``RND_CONV``
                                            + ``SAT`` (negative values saturate to 0)
``quantized_po2(bits)`` (weights only)      each weight ``+-2**e`` gets its own ``f = -e``
``"relu"``, ``"linear"``, ``ReLU()``        plain ``Activation`` (exact)
``QDense``, ``QConv1D``, ``QConv2D``        ``QDense``, ``QConv1D``, ``QConv2D``
``Flatten``, ``Reshape``, ``Dropout``       the same Keras layer
``MaxPooling1D/2D``, ``AveragePooling1D``   ``QMaxPooling1D/2D``, ``QAveragePooling1D/2D``
``/2D`` (power-of-two window, ``valid``)    (exact: a power-of-two division is a shift)
==========================================  =========================================================

QKeras rounds with ``round`` (ties to even): hgq_fpga's ``RND_CONV``. Where
no rounding can happen -- the input's grid is no finer than the quantizer's,
e.g. a ``quantized_relu`` with at least as many fractional bits as the
preceding layer's products -- the quantizer uses ``TRN`` instead, which is
free in hardware and gives the same values. :func:`hgq_fpga.to_hls4ml` writes
``RND_CONV`` quantizers as they are (hls4ml's quantizer layer casts with any
``ap_fixed`` mode, and hgq_fpga checks every type hls4ml derives). The first
quantizer on the model input always rounds float data, hence ``RND_CONV``,
unless ``inputs_on_grid``.

Refused with :class:`UnsupportedQKerasModel` (the message names the layer,
the quantizer and the fix): ``alpha="auto"`` or any scale that is not a
power of two; a data-dependent scale on an activation; stochastic
rounding; ``qnoise_factor < 1``; ``quantized_relu`` with ``use_sigmoid`` or
``negative_slope``; ``quantized_tanh``, ``quantized_sigmoid``,
``quantized_po2`` activations, binary/ternary and every other quantizer;
a ``QDense``/``QConv`` without kernel or bias quantizer, or whose input is
not quantized (put a ``QActivation(quantized_bits(...))`` after the input);
batch normalization, merges, branches, nested models and any other layer.

Bit-exactness: outputs are equal to QKeras's (``np.array_equal``) on every
input, with one QKeras artifact: ``quantized_bits`` returns
``x + (q(x) - x)`` in float32, which for ``|x|`` beyond about
``2**(23 - f)`` is no longer ``q(x)`` (QKeras then gives values off its own
grid, e.g. ``4.0`` for ``quantized_bits(8, 2, alpha=1)`` at ``x = 1e6``);
the converted model saturates exactly as ``ap_fixed`` does.
``quantized_relu`` clips before that step and has no such artifact.

QKeras is needed only when this module's function is called (``pip install
--no-deps qkeras-v3==1.2.1 networkx``; see the project's Makefile). The
TensorFlow backend is required by QKeras.
"""

from __future__ import annotations

import importlib
from typing import Any

import keras
import numpy as np

from ._qkeras_formats import (
    UnsupportedQKerasModel,
    _act_quantizer,
    _activation_format,
    _fail,
    _Format,
    _Grid,
    _identity_format,
    _linear_grid,
    _log2_int,
    _weight_values,
)
from .compat.keras import qkeras_pruning_mask

__all__ = ["UnsupportedQKerasModel", "from_qkeras"]


def _check_chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in order, when they form one chain from one input to one output."""
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise UnsupportedQKerasModel(
            f"from_qkeras: expected a built Keras model with a keras.Input. Received: {model!r}"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedQKerasModel(
            f"from_qkeras: only models with one input and one output are supported. Received "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs in {model.name!r}."
        )
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    prev = model.inputs[0]
    for layer in layers:
        if isinstance(layer, keras.Model):
            raise _fail(layer.name, "nested models are not supported", type(layer).__name__,
                        "Flatten the model into one Sequential or functional chain.")
        try:
            src = layer.input
        except (AttributeError, ValueError) as err:
            raise _fail(layer.name, "layers used more than once are not supported", str(err),
                        "Use each layer once.") from None
        if isinstance(src, (list, tuple)) or src is not prev:
            raise _fail(layer.name, "only single-path models (each layer feeding the next) are "
                        "supported; merges and branches are not", type(layer).__name__,
                        "Convert a sequential model, or build the branches in hgq_fpga directly.")
        prev = layer.output
    if prev is not model.outputs[0]:
        raise UnsupportedQKerasModel(f"from_qkeras: the output of {model.name!r} is not its last layer.")
    return layers


class _Converter:
    def __init__(self, inputs_on_grid: bool) -> None:
        self.qk = importlib.import_module("qkeras")
        self.inputs_on_grid = inputs_on_grid
        self.weights: list[tuple[Any, Any, np.ndarray, np.ndarray]] = []  # (quantizer, var, values, f)
        self.pending: tuple[str, str, _Format] | None = None

    def activation(self, name: str, q: Any, x: Any, grid: _Grid | None) -> tuple[Any, _Grid | None]:
        """A QKeras activation. A quantizer is held back (``pending``) to become the
        input quantizer of the next quantized layer: hls4ml mishandles two
        quantizers in a row, and one quantizer is what QKeras computes."""
        act, fmt = _activation_format(name, q, grid, self.inputs_on_grid)
        if fmt is None:
            if act == "linear":
                return x, grid
            x = self.flush(x)
            out = keras.layers.Activation("relu", name=name)(x)
            return out, None if grid is None else _Grid(grid.f, max(grid.lo, 0), max(grid.hi, 0))
        x = self.flush(x)
        self.pending = (name, act, fmt)
        return x, fmt.grid()

    def flush(self, x: Any) -> Any:
        """Emit the held-back quantizer as an hgq_fpga ``QActivation``."""
        from .layers import QActivation

        if self.pending is None:
            return x
        name, act, fmt = self.pending
        self.pending = None
        return QActivation(act, input_quantizer=_act_quantizer(fmt, tuple(x.shape)), name=name)(x)

    def input_format(self, layer: str, grid: _Grid | None, why: str) -> _Format:
        """The held-back quantizer, or a format that changes no value the input can take."""
        if self.pending is not None:
            fmt = self.pending[2]
            self.pending = None
            return fmt
        return _identity_format(layer, grid, why)

    def weighted(self, layer: Any, x: Any, grid: _Grid | None) -> tuple[Any, _Grid | None]:
        from .layers import QConv1D, QConv2D, QDense

        qk, name = self.qk, layer.name
        cls = type(layer).__name__
        if not layer.kernel_quantizer:
            raise _fail(name, f"{cls} has no kernel_quantizer: its float kernel is not fixed point",
                        "kernel_quantizer=None", "Give it a kernel_quantizer (e.g. quantized_bits(8, 0, alpha=1)).")
        if layer.use_bias and not layer.bias_quantizer:
            raise _fail(name, f"{cls} has no bias_quantizer: its float bias is not fixed point",
                        "bias_quantizer=None", "Give it a bias_quantizer or use_bias=False.")
        kernel = keras.ops.convert_to_numpy(layer.kernel_quantizer_internal(layer.kernel))
        mask = qkeras_pruning_mask(layer)
        if mask is not None:
            kernel = kernel * keras.ops.convert_to_numpy(mask)
        f_k, opt_k = _weight_values(name, "kernel", layer.kernel_quantizer_internal, kernel)
        bias = f_b = None
        opt_b: dict[str, Any] = {}
        if layer.use_bias:
            bias = keras.ops.convert_to_numpy(layer.bias_quantizer_internal(layer.bias))
            f_b, opt_b = _weight_values(name, "bias", layer.bias_quantizer_internal, bias)
        in_fmt = self.input_format(name, grid, cls)

        def wq(f: np.ndarray, opts: dict[str, Any]) -> dict[str, Any]:
            return {"f0": 0.0, "f_min": float(min(-12, int(f.min()))),
                    "f_max": float(max(24, int(f.max()))), **opts}

        common: dict[str, Any] = {
            "use_bias": layer.use_bias, "name": name,
            "input_quantizer": _act_quantizer(in_fmt, tuple(x.shape)),
            "kernel_quantizer": wq(f_k, opt_k),
            "bias_quantizer": wq(f_b, opt_b) if f_b is not None else None,
        }
        if isinstance(layer, qk.QDense):
            new = QDense(layer.units, **common)
        else:
            if layer.data_format != "channels_last" or getattr(layer, "groups", 1) != 1 \
                    or layer.padding not in ("valid", "same"):
                raise _fail(name, f"{cls} needs channels_last data, groups=1 and padding "
                            "'valid' or 'same'", f"data_format={layer.data_format!r}, "
                            f"groups={getattr(layer, 'groups', 1)}, padding={layer.padding!r}",
                            "Change the layer and retrain.")
            conv = QConv2D if isinstance(layer, qk.QConv2D) else QConv1D
            new = conv(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                       dilation_rate=layer.dilation_rate, **common)
        out = new(x)
        self.weights.append((new.kernel_quantizer, new.kernel, kernel, f_k))
        if bias is not None:
            self.weights.append((new.bias_quantizer, new.bias, bias, f_b))
        out_grid = _linear_grid(in_fmt.grid(), kernel, bias)
        return self.activation(f"{name}_activation", layer.activation, out, out_grid)

    def plain(self, layer: Any, x: Any, grid: _Grid | None) -> tuple[Any, _Grid | None]:
        from .layers import (
            QAveragePooling1D,
            QAveragePooling2D,
            QMaxPooling1D,
            QMaxPooling2D,
        )

        name, cls = layer.name, type(layer).__name__
        if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape, keras.layers.Dropout)):
            return type(layer).from_config(layer.get_config())(x), grid
        if isinstance(layer, keras.layers.Activation):
            return self.activation(name, layer.activation, x, grid)
        if isinstance(layer, keras.layers.ReLU):
            c = layer.get_config()
            if c.get("max_value") is None and not c.get("negative_slope") and not c.get("threshold"):
                return self.activation(name, keras.activations.relu, x, grid)
        pools = {
            keras.layers.MaxPooling1D: QMaxPooling1D, keras.layers.MaxPooling2D: QMaxPooling2D,
            keras.layers.AveragePooling1D: QAveragePooling1D, keras.layers.AveragePooling2D: QAveragePooling2D,
        }
        for base, new_cls in pools.items():
            if type(layer) is not base:
                continue
            fmt = self.input_format(name, grid, cls)
            if grid is None:
                raise _fail(name, f"{cls} needs the range of its input", "an input of unknown range",
                            "Put a QActivation with a quantizer before it.")
            out_grid = grid
            if "Average" in cls:
                size = int(np.prod(layer.pool_size))
                shift = _log2_int(float(size))
                if shift is None or layer.padding != "valid":
                    raise _fail(name, f"{cls} divides by the window size, exact only for a "
                                "power-of-two window without padding",
                                f"pool_size={layer.pool_size}, padding={layer.padding!r}",
                                "Use a power-of-two window with padding='valid', or max pooling.")
                out_grid = _Grid(grid.f + shift, grid.lo << shift, grid.hi << shift)
            cfg = {k: layer.get_config()[k] for k in ("pool_size", "strides", "padding", "data_format", "name")}
            new = new_cls(input_quantizer=_act_quantizer(fmt, tuple(x.shape)), **cfg)
            return new(x), out_grid
        what = "this QKeras layer" if type(layer).__module__.startswith("qkeras") else "this layer"
        raise _fail(
            name, f"{what} ({cls}) cannot be converted exactly; supported are QDense, QConv1D, "
            "QConv2D, QActivation, Activation/ReLU (relu, linear), Flatten, Reshape, Dropout, "
            "Max/AveragePooling1D/2D", cls,
            "Remove or replace it (batch normalization: fold it into the previous layer's "
            "weights before quantizing) and retrain.",
        )


def _require_qkeras() -> None:
    """Raise unless QKeras is installed and Keras runs on the TensorFlow backend."""
    try:
        import qkeras  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "from_qkeras needs QKeras for Keras 3: pip install --no-deps qkeras-v3==1.2.1 networkx"
        ) from err
    if keras.backend.backend() != "tensorflow":
        raise UnsupportedQKerasModel(
            f"from_qkeras: QKeras models run on the TensorFlow backend. Received: "
            f"KERAS_BACKEND={keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow."
        )


def _rebuild(model: keras.Model, inputs_on_grid: bool) -> keras.Model:
    """The hgq_fpga model of a checked QKeras chain, with its weights and fractional bits set, calibrated."""
    from .calibration import iter_quantizers
    from .quantizers import CALIBRATED, ActivationQuantizer

    layers = _check_chain(model)
    conv = _Converter(inputs_on_grid)
    src = model.inputs[0]
    inp = keras.Input(shape=tuple(src.shape[1:]))
    x: Any = inp
    grid: _Grid | None = None
    qk = conv.qk
    for layer in layers:
        if isinstance(layer, qk.QActivation):
            x, grid = conv.activation(layer.name, layer.activation, x, grid)
        elif isinstance(layer, (qk.QDense, qk.QConv1D, qk.QConv2D)) and type(layer) in (
            qk.QDense, qk.QConv1D, qk.QConv2D
        ):
            x, grid = conv.weighted(layer, x, grid)
        else:
            x, grid = conv.plain(layer, x, grid)
    x = conv.flush(x)
    if x is inp:
        raise UnsupportedQKerasModel(f"from_qkeras: {model.name!r} has no layer to convert.")
    new_model = keras.Model(inp, x, name=f"{model.name}_hgq")
    for quantizer, var, values, f in conv.weights:
        var.assign(np.asarray(values, var.dtype))
        quantizer.set_f(f.astype(np.float32))
    for _, q in iter_quantizers(new_model):
        if isinstance(q, ActivationQuantizer):  # k and i are fixed: nothing to learn from data
            q.state.assign(np.float32(CALIBRATED))
    return new_model


def from_qkeras(model: keras.Model, calibration_data: Any = None, *, inputs_on_grid: bool = False) -> keras.Model:
    """Rebuild a QKeras model from hgq_fpga layers, bit-identical to QKeras.

    Every QKeras ``QDense``/``QConv`` becomes the hgq_fpga layer of the same name, with the
    QKeras-*quantized* weights; each activation quantizer becomes an ``ap_fixed`` format with the same
    rounding and saturation. The mapping table, the rounding, what is refused and the bit-exactness
    guarantee are documented in :mod:`hgq_fpga.qkeras_import`.

    Args:
        model: a built QKeras model (``qkeras-v3``, Keras 3, TensorFlow
            backend) with one input, one output and one path through its layers.
        calibration_data: optional samples. Not needed: every activation format is fixed by its
            QKeras quantizer, so the model comes back calibrated and ready for :func:`hgq_fpga.verify`,
            :func:`hgq_fpga.estimate` and :func:`hgq_fpga.to_hls4ml`. When given,
            :func:`hgq_fpga.calibrate` is run on it, which records the ranges seen (shown by
            :func:`hgq_fpga.bit_summary` and calibration reports) without changing any format.
        inputs_on_grid: promise that the model inputs are already multiples of ``2**-f`` of the
            first quantizer (the firmware receives fixed-point words). That quantizer then uses ``TRN``
            instead of ``RND_CONV``: the same values on such inputs, with no rounding logic.
            Off-grid inputs are then truncated, not rounded.

    Returns:
        a calibrated Keras model of hgq_fpga layers, named ``"<name>_hgq"``.

    Raises:
        UnsupportedQKerasModel: (a ``ValueError``) for anything not exactly representable.
        ImportError: if ``qkeras`` is not installed.

    Example::

        from qkeras import QActivation, QDense, quantized_bits, quantized_relu
        import hgq_fpga

        x = keras.Input((16,))
        h = QActivation(quantized_bits(8, 2, alpha=1))(x)
        h = QDense(32, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                   bias_quantizer=quantized_bits(8, 2, alpha=1))(h)
        h = QActivation(quantized_relu(8, 3))(h)
        qmodel = keras.Model(x, QDense(5, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                                       bias_quantizer=quantized_bits(8, 2, alpha=1))(h))

        model = hgq_fpga.from_qkeras(qmodel)
        assert np.array_equal(model.predict(data), qmodel.predict(data))
        print(hgq_fpga.estimate(model))
    """
    _require_qkeras()
    new_model = _rebuild(model, inputs_on_grid)
    if calibration_data is not None:
        from .calibration import calibrate

        calibrate(new_model, calibration_data)
    return new_model
