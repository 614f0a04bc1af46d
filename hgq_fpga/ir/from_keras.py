"""Build the fixed-point IR from a calibrated Keras model of hgq_fpga layers."""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from ..fixed import round_shift
from ..quantizers import ActivationQuantizer
from .graph import Graph, Node, TensorInfo
from .intmath import as_mantissa, im2col
from .ops import (
    Mant,
    add_op,
    avg_pool_op,
    concat_op,
    linear_bounds,
    max_pool_op,
    quantize_op,
    relu_op,
    reshape_op,
    scale_op,
    weight_mantissas,
)

__all__ = ["build_ir", "SUPPORTED_LAYERS", "UnsupportedLayerError", "quantizer_kif"]

SUPPORTED_LAYERS = (
    "QDense", "QConv1D", "QConv2D", "QActivation", "QBatchNormalization", "QAdd",
    "QConcatenate", "QMaxPooling1D", "QMaxPooling2D", "QAveragePooling1D",
    "QAveragePooling2D", "Flatten", "Reshape", "Dropout", "InputLayer",
    "Activation (relu/linear)", "ReLU", "QActivation (sigmoid/tanh tables)", "QSoftmax",
)


class UnsupportedLayerError(ValueError):
    """A layer the firmware flow cannot express."""


def quantizer_kif(q: ActivationQuantizer, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """``(k, i, f)`` integer arrays of ``shape`` (no batch), as Keras infers them."""
    full = (1,) + tuple(shape)
    return tuple(np.broadcast_to(a, full)[0].astype(np.int64).copy() for a in q.kif_numpy())


class _Builder:
    """Accumulates nodes and tensors while walking the Keras graph."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.tensors: dict[str, TensorInfo] = {}
        self._names: set[str] = set()

    def unique(self, name: str) -> str:
        base, n = name, 1
        while name in self._names:
            name = f"{base}_{n}"
            n += 1
        self._names.add(name)
        return name

    def add(self, op: str, layer: str, inputs: list[str], out: TensorInfo, **attrs: Any) -> str:
        name = self.unique(f"{layer}_{op}" if op not in ("input",) else layer)
        out.name = self.unique(f"{name}_out") if out.name == "" else out.name
        self.tensors[out.name] = out
        self.nodes.append(Node(name, op, inputs, [out.name], attrs, layer))
        return out.name

    def bounds(self, name: str) -> tuple[Mant, Mant]:
        t = self.tensors[name]
        if t.lo is None:
            raise ValueError(f"tensor {name!r} has no fixed-point format")
        return Mant(t.lo[None], t.f), Mant(t.hi[None], t.f)

    def fixed(self, shape: tuple[int, ...], lo: Mant, hi: Mant, abs_bound: float) -> TensorInfo:
        scale = max(lo.f, hi.f)
        lo_m = np.asarray(lo.m if lo.f == scale else lo.m << (scale - lo.f))[0]
        hi_m = np.asarray(hi.m if hi.f == scale else hi.m << (scale - hi.f))[0]
        return TensorInfo("", tuple(shape), lo_m, hi_m, scale, float(abs_bound))


def _abs_max(t: TensorInfo) -> np.ndarray:
    return np.maximum(np.abs(t.lo.astype(np.float64)), np.abs(t.hi.astype(np.float64)))


def _quantize(b: _Builder, layer: str, src: str, q: ActivationQuantizer) -> str:
    """Quantize node of an activation quantizer."""
    k, i, f = quantizer_kif(q, b.tensors[src].shape)
    return _quantize_kif(b, layer, src, k, i, f, str(q.rounding), str(q.overflow))


def _quantize_kif(
    b: _Builder, layer: str, src: str, k: np.ndarray, i: np.ndarray, f: np.ndarray, rounding: str, overflow: str
) -> str:
    """Quantize node to per-element ``(k, i, f)``; bounds are tight where the input cannot overflow."""
    shape = b.tensors[src].shape
    k, i, f = (np.broadcast_to(np.asarray(a, np.int64), shape).copy() for a in (k, i, f))
    live = (k + i + f) > 0
    # the format's range as mantissas at each element's own f
    top = np.where(live, i + f, 0)
    fmin = -k * (np.ones_like(top) << top) * live
    fmax = ((np.ones_like(top) << top) - 1) * live
    # ... and at the output scale (the largest f of a live element), as quantize_op uses
    scale = int(np.max(f[live])) if np.any(live) else 0
    up = np.where(live, scale - f, 0)
    lo, hi = Mant((fmin << up)[None], scale), Mant((fmax << up)[None], scale)
    if b.tensors[src].is_fixed:
        in_lo, in_hi = b.bounds(src)
        s = in_lo.f - f
        r_lo = round_shift(in_lo.m, np.maximum(s, 0), rounding) << np.maximum(-s, 0)
        r_hi = round_shift(in_hi.m, np.maximum(s, 0), rounding) << np.maximum(-s, 0)
        inside = (r_lo[0] >= fmin) & (r_hi[0] <= fmax)
        if overflow in ("SAT", "SAT_SYM"):
            inside = np.ones_like(inside)
        q_lo = quantize_op(in_lo, k, i, f, rounding, overflow)
        q_hi = quantize_op(in_hi, k, i, f, rounding, overflow)
        lo = Mant(np.where(inside, q_lo.m, lo.m), lo.f)
        hi = Mant(np.where(inside, q_hi.m, hi.m), hi.f)
    out = b.fixed(shape, lo, hi, 0.0)
    out.abs_bound = float(np.max(_abs_max(out), initial=0.0))
    return b.add("quantize", layer, [src], out, k=k, i=i, f=f, rounding=rounding, overflow=overflow)


def _weights(values: Any) -> tuple[np.ndarray, int]:
    w = np.asarray(ops.convert_to_numpy(values), np.float64)
    return weight_mantissas(w)


def _linear(
    b: _Builder,
    layer: str,
    op: str,
    src: str,
    shape: tuple[int, ...],
    kernel: tuple[np.ndarray, int],
    bias: tuple[np.ndarray, int] | None,
    apply: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
    **attrs: Any,
) -> str:
    """A linear node (dense/conv): exact bounds from split weights, plus bias."""
    km, kf = kernel
    x_lo, x_hi = b.bounds(src)
    abs_x = _abs_max(b.tensors[src])[None]
    bound = float(np.max(apply(abs_x, np.abs(km).astype(np.float64), np.inf), initial=0.0))
    if bias is not None:
        bound += float(np.max(np.abs(bias[0]), initial=0)) * 2.0 ** max(0, x_lo.f + kf - bias[1])
    pos, neg = np.where(km > 0, km, 0), np.where(km < 0, km, 0)

    def part(x: Mant, sign: int) -> Mant:
        return Mant(apply(x.m, pos if sign > 0 else neg, bound), x.f + kf)

    lo, hi = linear_bounds(x_lo, x_hi, part)
    if bias is not None:
        lo, hi = add_op([lo, Mant(bias[0][None], bias[1])]), add_op([hi, Mant(bias[0][None], bias[1])])
    out = b.fixed(shape, lo, hi, bound * 2.0 ** max(0, (bias[1] if bias else 0) - x_lo.f - kf) + 1)
    return b.add(op, layer, [src], out, kernel=kernel, bias=bias, bound=bound, **attrs)


def _dense_apply(x: np.ndarray, w: np.ndarray, bound: float) -> np.ndarray:
    if np.isinf(bound) or x.dtype.kind == "f":
        return np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    from .intmath import imatmul

    return imatmul(x, w, bound)


def _conv_apply(strides: tuple[int, ...], padding: str, dilation: tuple[int, ...]) -> Callable:
    def apply(x: np.ndarray, w: np.ndarray, bound: float) -> np.ndarray:
        cols = im2col(x, w.shape[:-2], strides, dilation, padding)
        flat = cols.reshape(cols.shape[:-2] + (-1,))
        return _dense_apply(flat, w.reshape(-1, w.shape[-1]), bound)

    return apply


def _elementwise(b: _Builder, layer: str, op: str, srcs: list[str], out_shape: tuple[int, ...], fn: Callable, **attrs: Any) -> str:
    """Monotone (non-decreasing) ops: bounds map through ``fn`` directly."""
    los, his = zip(*(b.bounds(s) for s in srcs))
    lo, hi = fn(list(los)), fn(list(his))
    out = b.fixed(out_shape, lo, hi, 0.0)
    out.abs_bound = max(
        [float(np.max(_abs_max(out), initial=0.0))]
        + [b.tensors[s].abs_bound * 2.0 ** (out.f - b.tensors[s].f) * len(srcs) for s in srcs]
    )
    return b.add(op, layer, srcs, out, **attrs)


def _activation_node(b: _Builder, layer: str, src: str, activation: Any) -> str:
    name = getattr(activation, "__name__", str(activation))
    if name == "linear":
        return src
    if name == "relu":
        return _elementwise(b, layer, "relu", [src], b.tensors[src].shape, lambda xs: relu_op(xs[0]))
    raise UnsupportedLayerError(f"layer {layer!r}: activation {name!r} is not supported (relu, linear)")


def _pair(v: Any, n: int) -> tuple[int, ...]:
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _layer_nodes(b: _Builder, layer: keras.layers.Layer, srcs: list[str], out_shape: tuple[int, ...]) -> str:
    """Emit the IR nodes of one Keras layer; return its output tensor name."""
    from .. import layers as ql

    name = layer.name
    cls = type(layer).__name__
    if isinstance(layer, (ql.QDense, ql.QConv1D, ql.QConv2D)):
        x = _quantize(b, name, srcs[0], layer.input_quantizer)
        kernel = _weights(layer.qkernel)
        bias = _weights(layer.qbias) if layer.use_bias else None
        if isinstance(layer, ql.QDense):
            y = _linear(b, name, "dense", x, out_shape, kernel, bias, _dense_apply)
        else:
            rank = len(out_shape) - 1
            st, dil = _pair(layer.strides, rank), _pair(layer.dilation_rate, rank)
            if layer.groups != 1:
                raise UnsupportedLayerError(f"layer {name!r} ({cls}): groups={layer.groups} is not supported")
            y = _linear(b, name, "conv", x, out_shape, kernel, bias, _conv_apply(st, layer.padding, dil),
                        strides=st, padding=layer.padding, dilation=dil)
        return _activation_node(b, name, y, layer.activation)
    if isinstance(layer, ql.QActivation):
        x = _quantize(b, name, srcs[0], layer.input_quantizer)
        if layer.uses_table:
            return _table_node(b, layer, x, out_shape)
        return _activation_node(b, name, x, layer.activation)
    if isinstance(layer, ql.QSoftmax):
        return _softmax_nodes(b, layer, srcs[0], out_shape)
    if isinstance(layer, ql.QBatchNormalization):
        x = _quantize(b, name, srcs[0], layer.input_quantizer)
        return _scale_node(b, name, x, out_shape, _weights(layer.qkernel), _weights(layer.qbias))
    if isinstance(layer, (ql.QAdd, ql.QConcatenate)):
        xs = [_quantize(b, name, s, q) for s, q in zip(srcs, layer.input_quantizers_list)]
        if isinstance(layer, ql.QAdd):
            return _elementwise(b, name, "add", xs, out_shape, add_op)
        axis = layer.axis if layer.axis < 0 else layer.axis - 1
        return _elementwise(b, name, "concat", xs, out_shape, lambda ms: concat_op(ms, axis), axis=axis)
    if isinstance(layer, (ql.QMaxPooling1D, ql.QMaxPooling2D, ql.QAveragePooling1D, ql.QAveragePooling2D)):
        return _pool_node(b, layer, _quantize(b, name, srcs[0], layer.input_quantizer), out_shape)
    if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
        return _elementwise(b, name, "reshape", srcs, out_shape, lambda ms: reshape_op(ms[0], out_shape), shape=out_shape)
    if isinstance(layer, keras.layers.Dropout):
        return srcs[0]
    if isinstance(layer, keras.layers.Activation) and not isinstance(layer, ql.QActivation):
        return _activation_node(b, name, srcs[0], layer.activation)
    if isinstance(layer, keras.layers.ReLU) and layer.get_config().get("max_value") is None \
            and not layer.get_config().get("negative_slope") and not layer.get_config().get("threshold"):
        return _activation_node(b, name, srcs[0], keras.activations.relu)
    raise UnsupportedLayerError(
        f"layer {name!r} of class {cls} is not supported for firmware. "
        f"Supported: {', '.join(SUPPORTED_LAYERS)}."
    )


def _table_node(b: _Builder, layer: Any, src: str, shape: tuple[int, ...]) -> str:
    """Lookup-table activation: the table the layer computed at calibration."""
    values, fmt = layer.table_values()
    return _table(b, layer.name, src, shape, values, fmt, layer.table_f, layer.activation_name)


def _table(b: _Builder, layer: str, src: str, shape: tuple[int, ...], values: np.ndarray,
           fmt: tuple[int, int, int], table_f: int, function: str) -> str:
    """A lookup by bit pattern in index format ``fmt = (k, width, f)``; values on a ``2**-table_f`` grid."""
    k, width, f = fmt
    table = (as_mantissa(values * 2.0**table_f), table_f)
    lo = Mant(np.full((1,) + shape, int(np.min(table[0]))), table_f)
    hi = Mant(np.full((1,) + shape, int(np.max(table[0]))), table_f)
    out = b.fixed(shape, lo, hi, 0.0)
    out.abs_bound = float(np.max(np.abs(table[0]), initial=0)) + 1.0
    return b.add("table", layer, [src], out, table=table, k=k, width=width, f=f, function=function)


def _multiply_node(b: _Builder, layer: str, a: str, c: str, shape: tuple[int, ...]) -> str:
    """Element-wise product; bounds from the four corner products."""
    (alo, ahi), (clo, chi) = b.bounds(a), b.bounds(c)
    corners = [as_mantissa(x.m, wide=True) * as_mantissa(y.m, wide=True) for x in (alo, ahi) for y in (clo, chi)]
    lo = np.minimum.reduce(corners)
    hi = np.maximum.reduce(corners)
    scale = alo.f + clo.f
    big = max(abs(int(np.min(lo))), abs(int(np.max(hi))))
    wide = big >= 2**62
    out = b.fixed(shape, Mant(as_mantissa(lo, wide=wide), scale), Mant(as_mantissa(hi, wide=wide), scale), 0.0)
    out.abs_bound = float(big) + 1.0
    return b.add("multiply", layer, [a, c], out)


def _softmax_nodes(b: _Builder, layer: Any, src: str, shape: tuple[int, ...]) -> str:
    """QSoftmax as exact steps: exp table, sum, quantize, 1/s table, broadcast, product, quantize."""
    name, n = layer.name, shape[-1]
    t = layer.tables()
    x = _quantize(b, name, src, layer.input_quantizer)
    e = _table(b, name, x, shape, t["exp"], (t["k"], t["width"], t["f"]), layer.exp_f, "exp")
    ones_in = (np.ones((n, 1), np.int64), 0)
    s = _linear(b, name, "dense", e, (1,), ones_in, None, _dense_apply)
    s_q = _quantize_kif(b, name, s, 0, t["i_s"], t["f_s"], "TRN", "SAT")
    r = _table(b, name, s_q, (1,), t["inv"], (0, layer.inv_bits, t["f_s"]), layer.inv_f, "reciprocal")
    r_b = _linear(b, name, "dense", r, shape, (np.ones((1, n), np.int64), 0), None, _dense_apply)
    y = _multiply_node(b, name, e, r_b, shape)
    return _quantize_kif(b, name, y, 0, 1, layer.out_f, "RND", "SAT")


def _scale_node(b: _Builder, layer: str, src: str, shape: tuple[int, ...], scale: tuple, offset: tuple) -> str:
    x_lo, x_hi = b.bounds(src)
    sm, sf = scale
    pos, neg = np.where(sm > 0, sm, 0), np.where(sm < 0, sm, 0)
    zero = (np.zeros_like(offset[0]), 0)

    def part(x: Mant, sign: int) -> Mant:
        return scale_op(x, (pos if sign > 0 else neg, sf), zero)

    lo, hi = linear_bounds(x_lo, x_hi, part)
    lo, hi = add_op([lo, Mant(offset[0][None], offset[1])]), add_op([hi, Mant(offset[0][None], offset[1])])
    out = b.fixed(shape, lo, hi, 0.0)
    out.abs_bound = float(np.max(_abs_max(out), initial=0.0)) + 1.0
    return b.add("scale", layer, [src], out, scale=scale, offset=offset)


def _pool_node(b: _Builder, layer: keras.layers.Layer, src: str, shape: tuple[int, ...]) -> str:
    rank = len(shape) - 1
    pool, strides = _pair(layer.pool_size, rank), _pair(layer.strides, rank)
    if isinstance(layer, (keras.layers.AveragePooling1D, keras.layers.AveragePooling2D)):
        count = int(np.prod(pool))
        if count & (count - 1) or layer.padding != "valid":
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({type(layer).__name__}): average pooling is exact in fixed "
                f"point only for windows of 2**n elements and padding='valid'. Received "
                f"pool_size={pool}, padding={layer.padding!r}; use a power-of-two window or max pooling."
            )
        return _elementwise(b, layer.name, "avg_pool", [src], shape,
                            lambda ms: avg_pool_op(ms[0], pool, strides), pool=pool, strides=strides)
    return _elementwise(b, layer.name, "max_pool", [src], shape,
                        lambda ms: max_pool_op(ms[0], pool, strides, layer.padding),
                        pool=pool, strides=strides, padding=layer.padding)


def _topological(model: keras.Model) -> list[tuple[keras.layers.Layer, list[Any], list[Any]]]:
    """``(layer, input KerasTensors, output KerasTensors)`` in execution order.

    Uses Keras's functional graph (``_nodes_by_depth``), as hls4ml does.
    """
    if isinstance(model, keras.Sequential):
        model = model._functional
    order = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            order.append((node.operation, list(node.arguments.keras_tensors), list(node.outputs)))
    return order


def build_ir(model: keras.Model) -> Graph:
    """The fixed-point graph of a calibrated model.

    Raises:
        ValueError: if the model is not calibrated (with the fix) or has
            nested models.
        UnsupportedLayerError: naming the layer, its class and what is supported.
    """
    from ..calibration import is_calibrated

    if not getattr(model, "inputs", None):
        raise ValueError(f"model {model.name!r} has no inputs; build it with keras.Input first.")
    if not is_calibrated(model):
        raise ValueError(
            f"model {model.name!r} is not calibrated: its activation integer bits are not set. "
            "Run hgq_fpga.calibrate(model, x_train) first (after training)."
        )
    functional = model._functional if isinstance(model, keras.Sequential) else model
    b = _Builder()
    names: dict[int, str] = {}
    for layer, ins, outs in _topological(functional):
        if isinstance(layer, keras.Model):
            raise ValueError(f"nested model {layer.name!r} is not supported; flatten it into one model")
        if isinstance(layer, keras.layers.InputLayer):
            t = outs[0]
            name = b.add("input", layer.name, [], TensorInfo("", tuple(int(d) for d in t.shape[1:])))
            names[id(t)] = name
            continue
        srcs = [names[id(t)] for t in ins]
        out_shape = tuple(int(d) for d in outs[0].shape[1:])
        names[id(outs[0])] = _layer_nodes(b, layer, srcs, out_shape)
    inputs = [names[id(t)] for t in functional.inputs]
    outputs = [names[id(t)] for t in functional.outputs]
    return Graph(inputs, outputs, b.nodes, b.tensors)
