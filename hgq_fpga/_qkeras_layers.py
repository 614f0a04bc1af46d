"""QKeras layers as hgq_fpga layers: the per-layer half of :mod:`hgq_fpga.qkeras_import`.

:class:`_Converter` turns one QKeras layer at a time into hgq_fpga layers of
the new model. What it knows of a tensor is a :class:`_Value`: the new
model's tensor, the exact grid of its values (``None``: unknown floats) and a
quantizer held back to become the input quantizer of the next quantized
layer (one quantizer, where QKeras has one; hls4ml also mishandles two in a
row). The mapping is documented in :mod:`hgq_fpga.qkeras_import`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from ._qkeras_float32 import _exact, _Float32Affine
from ._qkeras_formats import (
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

#: QSoftmax's table formats for an imported float softmax (finer than QSoftmax's defaults)
SOFTMAX_BITS = {"exp_f": 12, "inv_bits": 14, "inv_f": 14, "out_f": 12, "table_bits": 12}

#: the epsilon of an imported batch normalization: 1 - 2**-10 + 2**-10 is exactly 1 in float32, so
#: moving_variance = 1 - 2**-10 makes its scale exactly gamma (= QKeras's float32 ``inv``)
BN_EPSILON = 2.0**-10

#: float32 holds every integer below 2**24 exactly: QKeras's float sums are exact below it
FLOAT32_EXACT = 2**24


@dataclass
class _Value:
    """A tensor of the new model, with what is known of its values."""

    x: Any
    grid: _Grid | None
    pending: tuple[str, str, _Format] | None = None  # (QKeras layer, activation, format) held back
    flushed: Any = None  # the QActivation emitted for ``pending`` (once, however many readers)
    float32: _Float32Affine | None = None  # QKeras computes it in float32 (a batch normalization; no pending)

    def settle(self, fmt: _Format | None = None) -> None:
        """The reader quantizes with ``fmt`` (None: reads the value as it is): QKeras's float32 rounding
        must not show (:meth:`_Float32Affine.check`)."""
        if self.float32 is not None:
            self.float32.check(fmt)


def _affine_grid(grid: _Grid, inv: np.ndarray, res: np.ndarray) -> _Grid:
    """Exact grid of ``x * inv_c + res_c`` over every channel ``c``, ``x`` on ``grid``."""
    terms = [(_exact(float(a)), _exact(float(b))) for a, b in zip(inv, res)]
    f = max(max(grid.f + pa, pb) for (_, pa), (_, pb) in terms)
    lo = hi = None
    for (a, pa), (b, pb) in terms:
        ends = [m * a << (f - grid.f - pa) for m in (grid.lo, grid.hi)]
        shift = b << (f - pb)
        lo = min(min(ends) + shift, lo if lo is not None else min(ends) + shift)
        hi = max(max(ends) + shift, hi if hi is not None else max(ends) + shift)
    return _Grid(f, int(lo), int(hi))  # type: ignore[arg-type]


def _union(grids: list[_Grid]) -> _Grid:
    f = max(g.f for g in grids)
    return _Grid(f, min(g.lo << (f - g.f) for g in grids), max(g.hi << (f - g.f) for g in grids))


def _check_float32_sum(layer: str, grid: _Grid, what: str) -> None:
    """QKeras computes ``what`` in float32: exact only while every partial sum stays below 2**24 LSBs."""
    if max(abs(grid.lo), abs(grid.hi)) >= FLOAT32_EXACT:
        raise _fail(layer, f"QKeras computes its {what} in float32, which rounds sums beyond 24 significant "
                    "bits; the fixed-point firmware would not round and would differ",
                    f"values up to {max(abs(grid.lo), abs(grid.hi))} * 2**-{grid.f}",
                    "Use fewer bits in the weights or in the quantizer before this layer.")


class _Converter:
    def __init__(self, inputs_on_grid: bool) -> None:
        self.qk = importlib.import_module("qkeras")
        self.inputs_on_grid = inputs_on_grid
        self.weights: list[tuple[Any, Any, np.ndarray, np.ndarray]] = []  # (quantizer, var, values, f)
        # (QBatchNormalization, inv, res, fractional bits of inv, of res)
        self.batchnorms: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def activation(self, name: str, q: Any, v: _Value) -> _Value:
        """A QKeras activation; a quantizer is held back (``pending``) for the next quantized layer."""
        if getattr(q, "__name__", None) == "softmax":
            return self.softmax(name, v)
        act, fmt = _activation_format(name, q, v.grid, self.inputs_on_grid)
        if fmt is not None and v.pending is None:
            v.settle(fmt)  # the quantizer reads QKeras's float32 value directly
            return _Value(v.x, fmt.grid(), (name, act, fmt))
        if fmt is None:
            if act == "linear":
                return v
            x = self.flush(v)
            out = keras.layers.Activation("relu", name=name)(x)
            return _Value(out, None if v.grid is None else _Grid(v.grid.f, max(v.grid.lo, 0), max(v.grid.hi, 0)))
        return _Value(self.flush(v), fmt.grid(), (name, act, fmt))

    def flush(self, v: _Value) -> Any:
        """``v``'s tensor with its held-back quantizer applied (an hgq_fpga ``QActivation``, made once)."""
        from .layers import QActivation

        if v.pending is None:
            v.settle()
            return v.x
        if v.flushed is None:
            name, act, fmt = v.pending
            v.flushed = QActivation(act, input_quantizer=_act_quantizer(fmt, tuple(v.x.shape)), name=name)(v.x)
        return v.flushed

    def input_format(self, layer: str, v: _Value, why: str) -> _Format:
        """The held-back quantizer, or a format that changes no value the input can take."""
        v.settle()  # a batch normalization's output (never a held-back quantizer) read as it is
        if v.pending is not None:
            return v.pending[2]
        return _identity_format(layer, v.grid, why)

    def softmax(self, name: str, v: _Value) -> _Value:
        """hgq_fpga's table softmax (as hls4ml's): its input rounded to at most ``table_bits`` bits."""
        from .layers import QSoftmax

        if v.pending is not None:
            fmt = v.pending[2]
        elif v.grid is None:
            fmt = _identity_format(name, None, "softmax")
        else:
            k, i, f = v.grid.kif()
            top = SOFTMAX_BITS["table_bits"]  # the exp table's index width
            fmt = _Format(k, i, min(f, top - k - i), "RND" if f > top - k - i else "TRN", "SAT")
        v.settle(fmt)  # its input quantizer reads a batch normalization's float32 output directly
        if len(v.x.shape) != 2:
            raise _fail(name, "softmax is converted over the last axis of a (batch, n) tensor",
                        f"shape {tuple(v.x.shape)}", "Flatten before the softmax.")
        layer = QSoftmax(input_quantizer=_act_quantizer(fmt, tuple(v.x.shape)), name=name, **SOFTMAX_BITS)
        return _Value(layer(v.x), None)

    def _folded(self, layer: Any) -> tuple[Any, Any]:
        """Float kernel and bias of ``layer``; batch normalization folded in as QKeras does at inference."""
        if not isinstance(layer, (self.qk.QConv2DBatchnorm, self.qk.QDenseBatchnorm)):
            return layer.kernel, layer.bias if layer.use_bias else None
        ops, bn = keras.ops, layer.batchnorm
        inv = 1 / ops.sqrt(bn.moving_variance + bn.epsilon)  # the very float32 steps of QKeras's call()
        if bn.gamma is not None:
            inv = inv * bn.gamma
        bias = layer.bias if layer.use_bias else 0
        folded_bias = inv * (bias - bn.moving_mean)
        if bn.beta is not None:
            folded_bias = folded_bias + bn.beta
        return inv * layer.kernel, folded_bias

    def weighted(self, layer: Any, v: _Value) -> _Value:
        from .layers import QConv1D, QConv2D, QDense

        qk, name = self.qk, layer.name
        cls = type(layer).__name__
        if not layer.kernel_quantizer:
            raise _fail(name, f"{cls} has no kernel_quantizer: its float kernel is not fixed point",
                        "kernel_quantizer=None", "Give it a kernel_quantizer (e.g. quantized_bits(8, 0, alpha=1)).")
        float_kernel, float_bias = self._folded(layer)
        if float_bias is not None and not layer.bias_quantizer:
            raise _fail(name, f"{cls} has no bias_quantizer: its float bias is not fixed point",
                        "bias_quantizer=None", "Give it a bias_quantizer or use_bias=False.")
        kernel = keras.ops.convert_to_numpy(layer.kernel_quantizer_internal(float_kernel))
        mask = qkeras_pruning_mask(layer)
        if mask is not None:
            kernel = kernel * keras.ops.convert_to_numpy(mask)
        f_k, opt_k = _weight_values(name, "kernel", layer.kernel_quantizer_internal, kernel)
        bias = f_b = None
        opt_b: dict[str, Any] = {}
        if float_bias is not None:
            bias = keras.ops.convert_to_numpy(layer.bias_quantizer_internal(float_bias))
            f_b, opt_b = _weight_values(name, "bias", layer.bias_quantizer_internal, bias)
        in_fmt = self.input_format(name, v, cls)

        def wq(f: np.ndarray, opts: dict[str, Any]) -> dict[str, Any]:
            return {"f0": 0.0, "f_min": float(min(-12, int(f.min()))),
                    "f_max": float(max(24, int(f.max()))), **opts}

        common: dict[str, Any] = {
            "use_bias": bias is not None, "name": name,
            "input_quantizer": _act_quantizer(in_fmt, tuple(v.x.shape)),
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
        out = new(v.x)
        self.weights.append((new.kernel_quantizer, new.kernel, kernel, f_k))
        if bias is not None:
            self.weights.append((new.bias_quantizer, new.bias, bias, f_b))
        out_grid = _linear_grid(in_fmt.grid(), kernel, bias)
        _check_float32_sum(name, out_grid, "products and sums")
        return self.activation(f"{name}_activation", layer.activation, _Value(out, out_grid))

    def merge(self, layer: Any, values: list[_Value]) -> _Value:
        """Keras ``Add`` / ``Concatenate``: exact on fixed-point inputs (checked against float32)."""
        from .layers import QAdd, QConcatenate

        name, cls = layer.name, type(layer).__name__
        pending = {val.pending[2] for val in values if val.pending is not None}
        for val in values:
            val.settle()
        grids = [val.grid for val in values]
        if len(pending) == 1 and all(val.pending is not None for val in values):
            fmt = pending.pop()  # one quantizer on every input: the merge's own input quantizer
            xs = [val.x for val in values]
        else:
            xs = [self.flush(val) for val in values]
            known = None if any(g is None for g in grids) else _union(grids)  # type: ignore[arg-type]
            fmt = _identity_format(name, known, cls)
        quantizer = _act_quantizer(fmt, tuple(values[0].x.shape))
        f = max(g.f for g in grids)  # type: ignore[union-attr]
        if isinstance(layer, keras.layers.Add):
            out_grid = _Grid(f, sum(g.lo << (f - g.f) for g in grids), sum(g.hi << (f - g.f) for g in grids))
            _check_float32_sum(name, out_grid, "sum")
            return _Value(QAdd(input_quantizer=quantizer, name=name)(xs), out_grid)
        return _Value(QConcatenate(axis=layer.axis, input_quantizer=quantizer, name=name)(xs),
                      _union(grids))  # type: ignore[arg-type]

    def plain(self, layer: Any, v: _Value) -> _Value:
        name, cls = layer.name, type(layer).__name__
        if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape, keras.layers.Dropout)):
            return _Value(type(layer).from_config(layer.get_config())(v.x), v.grid, v.pending, float32=v.float32)
        if type(layer) is keras.layers.BatchNormalization:
            return self.batchnorm(layer, v)
        if isinstance(layer, keras.layers.Activation):
            return self.activation(name, layer.activation, v)
        if isinstance(layer, keras.layers.Softmax) and layer.axis in (-1, len(v.x.shape) - 1):
            return self.softmax(name, v)
        if isinstance(layer, keras.layers.ReLU):
            c = layer.get_config()
            if c.get("max_value") is None and not c.get("negative_slope") and not c.get("threshold"):
                return self.activation(name, keras.activations.relu, v)
        pooled = self.pool(layer, v)
        if pooled is not None:
            return pooled
        what = "this QKeras layer" if type(layer).__module__.startswith("qkeras") else "this layer"
        raise _fail(
            name, f"{what} ({cls}) cannot be converted exactly; supported are QDense, QConv1D, "
            "QConv2D, QDenseBatchnorm, QConv2DBatchnorm, QActivation, Activation/ReLU (relu, linear, "
            "softmax), Softmax, Add, Concatenate, BatchNormalization, Flatten, Reshape, Dropout, "
            "Max/AveragePooling1D/2D", cls,
            "Remove or replace it and retrain.",
        )

    def batchnorm(self, layer: Any, v: _Value) -> _Value:
        """A float ``BatchNormalization``: ``x * inv + res`` with Keras's float32 constants, exact in
        fixed point; whoever reads it must not see QKeras's float32 rounding (:mod:`._qkeras_float32`)."""
        from .layers import QBatchNormalization

        name, ops = layer.name, keras.ops
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if len(axes) != 1 or axes[0] not in (-1, len(v.x.shape) - 1):
            raise _fail(name, "only a batch normalization over the last (channel) axis converts",
                        f"axis={layer.axis}", "Use axis=-1 (channels_last).")
        fmt = self.input_format(name, v, "BatchNormalization")
        inv = ops.rsqrt(layer.moving_variance + layer.epsilon)  # TensorFlow's batch_normalization, step by step
        if layer.scale:
            inv = inv * layer.gamma
        res = -layer.moving_mean * inv if not layer.center else layer.beta - layer.moving_mean * inv
        inv32, res32 = (np.asarray(ops.convert_to_numpy(t), np.float32).reshape(-1) for t in (inv, res))
        f_s, f_o = (np.array([max(_exact(float(t))[1], 0) for t in a], np.float32) for a in (inv32, res32))

        def exact_q(f: np.ndarray) -> dict[str, Any]:
            return {"f0": 0.0, "f_min": -12.0, "f_max": float(max(24, int(f.max()))), "rounding": "RND_CONV"}

        new = QBatchNormalization(input_quantizer=_act_quantizer(fmt, tuple(v.x.shape)), kernel_quantizer=exact_q(f_s),
                                  bias_quantizer=exact_q(f_o), epsilon=BN_EPSILON, name=name)
        out = new(v.x)
        self.batchnorms.append((new, inv32, res32, f_s, f_o))
        grid = v.grid if v.grid is not None else fmt.grid()
        return _Value(out, _affine_grid(grid, inv32, res32), float32=_Float32Affine(name, grid, inv32, res32))

    def pool(self, layer: Any, v: _Value) -> _Value | None:
        from .layers import QAveragePooling1D, QAveragePooling2D, QMaxPooling1D, QMaxPooling2D

        name, cls = layer.name, type(layer).__name__
        pools = {
            keras.layers.MaxPooling1D: QMaxPooling1D, keras.layers.MaxPooling2D: QMaxPooling2D,
            keras.layers.AveragePooling1D: QAveragePooling1D, keras.layers.AveragePooling2D: QAveragePooling2D,
        }
        new_cls = pools.get(type(layer))
        if new_cls is None:
            return None
        fmt = self.input_format(name, v, cls)
        if v.grid is None:
            raise _fail(name, f"{cls} needs the range of its input", "an input of unknown range",
                        "Put a QActivation with a quantizer before it.")
        grid = v.grid
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
        new = new_cls(input_quantizer=_act_quantizer(fmt, tuple(v.x.shape)), **cfg)
        return _Value(new(v.x), out_grid)
