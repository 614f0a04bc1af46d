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

QKeras is needed only when this module's function is called (``pip install
--no-deps qkeras-v3==1.2.1 networkx``; see the project's Makefile). The
TensorFlow backend is required by QKeras.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

__all__ = ["UnsupportedQKerasModel", "from_qkeras"]


class UnsupportedQKerasModel(ValueError):
    """A QKeras model, layer or quantizer that hgq_fpga cannot reproduce bit for bit."""


@dataclass(frozen=True)
class _Grid:
    """What is known of a tensor: its values are multiples of ``2**-f`` in ``[lo, hi]``.

    ``lo`` and ``hi`` are integer mantissas (Python ints) at ``f``.
    """

    f: int
    lo: int
    hi: int

    def kif(self) -> tuple[int, int, int]:
        """The smallest ``(k, i, f)`` format that holds every value of the grid."""
        k = 1 if self.lo < 0 else 0
        need = max(int(self.hi).bit_length() if self.hi > 0 else 0,
                   int(-self.lo - 1).bit_length() if self.lo < 0 else 0)
        return k, need - self.f, self.f


@dataclass(frozen=True)
class _Format:
    """An ``ap_fixed`` format with its modes, as the hgq_fpga quantizers take it."""

    k: int
    i: int
    f: int
    rounding: str
    overflow: str

    def grid(self) -> _Grid:
        top = 1 << max(self.i + self.f, 0)
        lo = -top if self.k else 0
        if self.k and self.overflow == "SAT_SYM" and self.k + self.i + self.f > 1:
            lo += 1
        return _Grid(self.f, lo if self.k + self.i + self.f > 0 else 0, top - 1 if self.k + self.i + self.f > 0 else 0)


def _fail(layer: str, what: str, received: str, fix: str) -> UnsupportedQKerasModel:
    return UnsupportedQKerasModel(f"layer {layer!r}: {what}. Received: {received}. {fix}")


def _log2_int(value: float) -> int | None:
    """``log2(value)`` when ``value`` is a positive power of two, else ``None``."""
    if not (value > 0.0 and math.isfinite(value)):
        return None
    mant, exp = math.frexp(value)
    return exp - 1 if mant == 0.5 else None


def _int_param(layer: str, q: Any, name: str) -> int:
    value = getattr(q, name)
    try:
        as_float = float(np.asarray(keras.ops.convert_to_numpy(value)).item())
    except (TypeError, ValueError):
        as_float = float("nan")
    if not as_float == round(as_float):
        raise _fail(layer, f"quantizer {q} needs an integer {name}", f"{name}={value!r}",
                    f"Use an integer {name}.")
    return round(as_float)


def _common_checks(layer: str, role: str, q: Any) -> None:
    if getattr(q, "use_stochastic_rounding", False):
        raise _fail(
            layer, f"{role} quantizer {q} uses stochastic rounding, which no fixed-point "
            "firmware reproduces", "use_stochastic_rounding=True",
            "Set use_stochastic_rounding=False (in qkeras-v3 1.2.1 quantized_bits and "
            "quantized_relu round to nearest-even in inference either way) and convert again.",
        )
    noise = float(np.asarray(keras.ops.convert_to_numpy(getattr(q, "qnoise_factor", 1.0))))
    if noise != 1.0:
        raise _fail(
            layer, f"{role} quantizer {q} mixes float and quantized values (qnoise_factor < 1)",
            f"qnoise_factor={noise}", "Set qnoise_factor=1.0 (the end of QKeras's noise schedule).",
        )


def _qb_base(layer: str, role: str, q: Any) -> tuple[int, int, int]:
    """``(bits, k, integer)`` of a quantized_bits after the common checks."""
    _common_checks(layer, role, q)
    bits, integer = _int_param(layer, q, "bits"), _int_param(layer, q, "integer")
    k = int(bool(q.keep_negative))
    if bits - k < 1:
        raise _fail(
            layer, f"{role} quantizer {q} has no magnitude bits: QKeras makes it a binary "
            "sign quantizer, not a fixed-point rounding", f"bits={bits}, keep_negative={bool(k)}",
            "Use at least 2 bits with keep_negative=True (1 without).",
        )
    return bits, k, integer


def _activation_format(
    layer: str, q: Any, in_grid: _Grid | None, inputs_on_grid: bool
) -> tuple[str, _Format | None]:
    """``(activation name, format)`` of a QKeras activation; format ``None`` for plain ones.

    The format's rounding is ``TRN`` where no rounding can happen (the input
    grid is at least as coarse), else ``RND_CONV`` (QKeras's ``round``, half to even).
    """
    qk = importlib.import_module("qkeras")
    base = importlib.import_module("qkeras.base_quantizer").BaseQuantizer
    if q is None:
        return "linear", None
    name = getattr(q, "__name__", None)
    if callable(q) and name in ("linear", "relu") and not isinstance(q, base):
        return name, None
    cls = type(q).__name__
    if isinstance(q, qk.quantized_relu):
        _common_checks(layer, "activation", q)
        bits, integer = _int_param(layer, q, "bits"), _int_param(layer, q, "integer")
        if q.use_sigmoid:
            raise _fail(layer, f"activation quantizer {q} applies a sigmoid first, which is not "
                        "exact in fixed point", f"use_sigmoid={q.use_sigmoid}",
                        "Use use_sigmoid=0.")
        if q.negative_slope != 0.0:
            raise _fail(layer, f"activation quantizer {q} is a leaky ReLU; hgq_fpga has no exact "
                        "leaky ReLU layer", f"negative_slope={q.negative_slope}",
                        "Use negative_slope=0.0 and retrain.")
        if not q.is_quantized_clip and q.relu_upper_bound is not None:
            raise _fail(layer, f"activation quantizer {q} clips to a float relu_upper_bound after "
                        "quantizing", f"relu_upper_bound={q.relu_upper_bound}, is_quantized_clip=False",
                        "Use is_quantized_clip=True (the default) or relu_upper_bound=None.")
        if bits < 1:
            raise _fail(layer, f"activation quantizer {q} needs bits >= 1", f"bits={bits}", "")
        k, f, act, overflow = 0, bits - integer, "relu", "SAT"
    elif isinstance(q, qk.quantized_bits):
        bits, k, integer = _qb_base(layer, "activation", q)
        alpha = q.alpha
        shift = 0
        if alpha is not None:
            scalar = None
            if not isinstance(alpha, str) and np.size(alpha) == 1:
                scalar = float(np.asarray(alpha, np.float64).reshape(()))
            shift = _log2_int(scalar) if scalar is not None else None
            if shift is None:
                raise _fail(
                    layer, f"activation quantizer {q} scales by alpha={alpha!r}, which is not one "
                    "fixed power of two (a data-dependent or non-power-of-two scale is not fixed point)",
                    f"alpha={alpha!r}", "Use alpha=None or alpha=1 on activations.",
                )
        f = bits - k - integer - shift
        act = "linear"
        overflow = "SAT_SYM" if (k and q.symmetric) else "SAT"
    else:
        raise _fail(
            layer, f"activation {q} ({cls}) is not a fixed-point rounding hgq_fpga can reproduce "
            "exactly: supported are quantized_bits, quantized_relu and plain relu/linear",
            f"{cls}", "Replace it (e.g. quantized_tanh/quantized_sigmoid by quantized_bits "
            "followed by hgq_fpga's table QActivation after import) and retrain.",
        )
    i = bits - k - f
    if in_grid is not None:
        rounding = "TRN" if in_grid.f <= f else "RND_CONV"
    else:
        rounding = "TRN" if inputs_on_grid else "RND_CONV"
    return act, _Format(k, i, f, rounding, overflow)


def _weight_values(
    layer: str, role: str, q: Any, values: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-element fractional bits of QKeras-quantized ``values`` and the WeightQuantizer options.

    Checks that every value is exactly ``m * 2**-f`` inside the quantizer's range.
    """
    qk = importlib.import_module("qkeras")
    cls = type(q).__name__
    v = np.asarray(values, np.float64)
    opts: dict[str, Any] = {"rounding": "RND_CONV"}
    if isinstance(q, qk.quantized_bits):
        bits, k, integer = _qb_base(layer, role, q)
        alpha = q.alpha
        if isinstance(alpha, str) and alpha != "auto_po2":
            raise _fail(layer, f"{role} quantizer {q} uses a float scale (alpha={alpha!r}) that is "
                        "not a power of two", f"alpha={alpha!r}",
                        "Use alpha=1 (one fixed format) or alpha='auto_po2' (per-channel powers "
                        "of two) and retrain.")
        scale = np.asarray(keras.ops.convert_to_numpy(q.scale), np.float64) if q.scale is not None else np.ones(())
        logs = [_log2_int(float(s)) for s in scale.ravel()]
        if any(s is None for s in logs):
            raise _fail(layer, f"{role} quantizer {q} has a scale that is not a power of two",
                        f"alpha={alpha!r}, scale={scale.ravel()[:8].tolist()}",
                        "Use alpha=1 or alpha='auto_po2' and retrain.")
        log_scale = np.asarray(logs, np.int64).reshape(scale.shape)
        f = np.broadcast_to((bits - k - integer) - log_scale, v.shape).astype(np.int64)
        symmetric = bool(q.symmetric) or isinstance(alpha, str)
        lo_m = (-(2 ** (bits - 1)) + int(symmetric)) if k else 0
        hi_m = 2 ** (bits - k) - 1 if not k else 2 ** (bits - 1) - 1
        if np.all(f == f.flat[0]):  # one format: keep QKeras's saturation for further training
            opts.update(k=k, i=bits - k - int(f.flat[0]), overflow="SAT_SYM" if (k and symmetric) else "SAT")
        m = v * np.exp2(f.astype(np.float64))
        ok = (m == np.round(m)) & (m >= lo_m) & (m <= hi_m)
    elif isinstance(q, qk.quantized_po2):
        _common_checks(layer, role, q)
        mag = np.abs(v)
        exp = np.zeros(v.shape, np.int64)
        nz = mag > 0
        if np.any(nz):
            exp[nz] = np.floor(np.log2(mag[nz])).astype(np.int64)
        f = -exp
        ok = ~nz | (mag == np.exp2(exp.astype(np.float64)))
    else:
        raise _fail(layer, f"{role} quantizer {q} ({cls}) is not supported: weights take "
                    "quantized_bits or quantized_po2", cls,
                    "Use quantized_bits(bits, integer, alpha=1) or quantized_po2(bits) and retrain.")
    if not np.all(ok):
        bad = int(np.flatnonzero(~ok.ravel())[0])
        raise _fail(
            layer, f"the {role} that QKeras's {q} produces is not on the quantizer's grid (QKeras "
            "computes x + (q(x) - x) in float32, which leaves the grid for weights far outside the "
            "quantizer's range)", f"value {float(v.ravel()[bad])!r} at flat index {bad}, f={int(f.ravel()[bad])}",
            "Clip the float weights to the quantizer's range (e.g. with a kernel_constraint) and convert again.",
        )
    return f, opts


def _act_quantizer(fmt: _Format, shape: tuple[int | None, ...]) -> dict[str, Any]:
    known = all(d is not None for d in shape[1:])
    return {
        "f0": float(fmt.f), "i": int(fmt.i), "k": int(fmt.k), "rounding": fmt.rounding,
        "overflow": fmt.overflow, "granularity": "element" if known else "tensor",
        "f_min": float(min(-12, fmt.f)), "f_max": float(max(24, fmt.f)),
    }


def _identity_format(layer: str, grid: _Grid | None, why: str) -> _Format:
    """The input format of an hgq_fpga layer that must leave QKeras's values unchanged."""
    if grid is None:
        raise _fail(
            layer, f"its input is not quantized: in QKeras it sees raw float values, which a "
            f"fixed-point {why} cannot take bit-exactly", "an unquantized float tensor",
            "Put a QActivation(quantized_bits(...)) (or quantized_relu) before it, as the "
            "firmware's input format, and retrain.",
        )
    k, i, f = grid.kif()
    return _Format(k, i, f, "TRN", "WRAP")


def _min_f(values: np.ndarray) -> int | None:
    """The fewest fractional bits that hold every nonzero value exactly (None if all zero)."""
    v = np.asarray(values, np.float64)
    v = v[v != 0]
    if v.size == 0:
        return None
    _, exps = np.frexp(v)
    f = int(53 - np.min(exps))
    lo = f - 120
    while f > lo:  # drop trailing zero bits
        m = v * np.exp2(f - 1)
        if not np.all(m == np.round(m)):
            break
        f -= 1
    return f


def _to_mantissas(values: np.ndarray, f: int) -> np.ndarray:
    return np.array([int(x) for x in np.round(np.asarray(values, np.float64) * 2.0**f).ravel()],
                    dtype=object).reshape(np.shape(values))


def _linear_grid(in_grid: _Grid, kernel: np.ndarray, bias: np.ndarray | None) -> _Grid:
    """Exact grid of ``x @ W + b`` (``W`` reshaped to ``(fan_in, units)``) for ``x`` on ``in_grid``.

    Zero padding is covered: the input interval always contains 0 here.
    """
    units = kernel.shape[-1]
    w2 = kernel.reshape(-1, units)
    fw = _min_f(w2)
    fb = _min_f(bias) if bias is not None else None
    f_out = max([g for g in (None if fw is None else fw + in_grid.f, fb) if g is not None], default=0)
    lo_x, hi_x = min(in_grid.lo, 0), max(in_grid.hi, 0)
    if fw is None:
        lo_y = hi_y = np.zeros(units, dtype=object)
    else:
        wm = _to_mantissas(w2, fw)
        pos = np.where(wm > 0, wm, 0)
        neg = np.where(wm < 0, wm, 0)
        hi_y = (pos * hi_x + neg * lo_x).sum(axis=0) << (f_out - fw - in_grid.f)
        lo_y = (pos * lo_x + neg * hi_x).sum(axis=0) << (f_out - fw - in_grid.f)
    if bias is not None and fb is not None:
        bm = _to_mantissas(bias, fb)
        bm = np.array([int(b) << (f_out - fb) for b in bm], dtype=object)
        lo_y, hi_y = lo_y + bm, hi_y + bm
    return _Grid(f_out, int(min(lo_y)), int(max(hi_y)))


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
        if getattr(layer, "_mask", None) is not None:
            kernel = kernel * keras.ops.convert_to_numpy(layer._mask)
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
            assert grid is not None
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


def from_qkeras(
    model: keras.Model,
    calibration_data: Any = None,
    *,
    inputs_on_grid: bool = False,
) -> keras.Model:
    """Rebuild a QKeras model from hgq_fpga layers, bit-identical to QKeras.

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
    free in hardware and gives the same values. hls4ml's ``FixedPointQuantizer``
    implements only ``TRN`` and ``RND``, so :func:`hgq_fpga.to_hls4ml` and
    :func:`hgq_fpga.verify` refuse a converted model that keeps a
    ``RND_CONV`` quantizer (Keras inference, :func:`hgq_fpga.emulate` and
    :func:`hgq_fpga.estimate` work). The first quantizer on the model input
    always rounds float data, hence ``RND_CONV``, unless ``inputs_on_grid``.

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

    Args:
        model: a built QKeras model (``qkeras-v3``, Keras 3, TensorFlow
            backend) with one input, one output and one path through its layers.
        calibration_data: optional samples. Not needed: every activation format
            is fixed by its QKeras quantizer, so the model comes back
            calibrated and ready for :func:`hgq_fpga.verify`,
            :func:`hgq_fpga.estimate` and :func:`hgq_fpga.to_hls4ml`. When
            given, :func:`hgq_fpga.calibrate` is run on it, which records the
            ranges seen (shown by :func:`hgq_fpga.bit_summary` and calibration
            reports) without changing any format.
        inputs_on_grid: promise that the model inputs are already multiples of
            ``2**-f`` of the first quantizer (the firmware receives fixed-point
            words). That quantizer then uses ``TRN`` instead of ``RND_CONV``:
            the same values on such inputs, and convertible to hls4ml. Off-grid
            inputs are then truncated, not rounded.

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
    from .calibration import calibrate, iter_quantizers
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
    if calibration_data is not None:
        calibrate(new_model, calibration_data)
    return new_model
