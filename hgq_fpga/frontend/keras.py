"""Keras model -> IR: the only place that walks a Keras graph.

Each Keras layer class has one entry in :data:`LAYERS` (a
:class:`~hgq_fpga.ir.Registry` keyed by layer class) that adds the layer's
typed IR operations; weight constants keep the format the training chose
(:meth:`~hgq_fpga.quantizers.WeightQuantizer.format_of`).

:func:`build_ir` caches the graph per model state: a second call on an
unchanged model returns the same graph; any change of a weight, a bit-width
or a calibrated range builds it again.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np
from keras import ops

from ..compat.keras import call_nodes, functional_of
from ..fixed import FixedFormat
from ..fixed.format import check_format
from ..ir import Constant, Graph, GraphBuilder, Registry, ops as ir
from ..ir.intmath import as_mantissa
from ..quantizers import ActivationQuantizer, WeightQuantizer

__all__ = ["LAYERS", "SUPPORTED_LAYERS", "UnsupportedLayerError", "build_ir", "quantizer_kif"]

SUPPORTED_LAYERS = (
    "QDense", "QConv1D", "QConv2D", "QActivation", "QBatchNormalization", "QAdd",
    "QConcatenate", "QMaxPooling1D", "QMaxPooling2D", "QAveragePooling1D",
    "QAveragePooling2D", "Flatten", "Reshape", "Dropout", "InputLayer",
    "Activation (relu/linear)", "ReLU", "QActivation (sigmoid/tanh tables)", "QSoftmax",
)


class UnsupportedLayerError(ValueError):
    """A layer the firmware flow cannot express."""


def _unsupported(layer: Any, *_: Any) -> str:
    raise UnsupportedLayerError(
        f"layer {layer.name!r} of class {type(layer).__name__} is not supported for firmware. "
        f"Supported: {', '.join(SUPPORTED_LAYERS)}."
    )


#: ``handler(layer, builder, input tensor names, output shape) -> output tensor name``
LAYERS = Registry("Keras frontend", default=_unsupported)


def quantizer_kif(q: ActivationQuantizer, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """``(k, i, f)`` integer arrays of ``shape`` (no batch), as Keras infers them."""
    full = (1,) + tuple(shape)
    return tuple(np.broadcast_to(a, full)[0].astype(np.int64).copy() for a in q.kif_numpy())


def quantize(b: GraphBuilder, layer: str, src: str, q: ActivationQuantizer) -> str:
    """The Quantize node of an activation quantizer."""
    k, i, f = quantizer_kif(q, b.tensors[src].shape)
    return b.add(ir.Quantize(k=k, i=i, f=f, rounding=str(q.rounding), overflow=str(q.overflow)), [src], layer)


def weights(values: Any, quantizer: WeightQuantizer | None = None) -> Constant:
    """Exact constant of quantized weights, with the quantizer's per-element format."""
    w = np.asarray(ops.convert_to_numpy(values), np.float64)
    if quantizer is None:
        return Constant.from_values(w)
    fmt = quantizer.format_of(w)
    check_format(fmt.k, fmt.i, fmt.f, f"layer {quantizer.name!r} (weights)")
    return Constant.from_values(w, fmt, trained=True)


def table_constant(values: Any, f: int) -> Constant:
    """A lookup table's values on their ``2**-f`` grid."""
    m = as_mantissa(np.asarray(values, np.float64) * 2.0**f)
    return Constant(m, int(f), FixedFormat.of_mantissas(m, m, int(f)))


def activation(b: GraphBuilder, layer: str, src: str, fn: Any) -> str:
    name = getattr(fn, "__name__", str(fn))
    if name == "linear":
        return src
    if name == "relu":
        return b.add(ir.Relu(), [src], layer)
    raise UnsupportedLayerError(f"layer {layer!r}: activation {name!r} is not supported (relu, linear)")


def _pair(v: Any, n: int) -> tuple[int, ...]:
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _kernel(layer: Any) -> Constant:
    """A dense or convolution layer's ``qkernel``, computed in numpy (:meth:`WeightQuantizer.firmware_values`)."""
    return weights(layer.kernel_quantizer.firmware_values(layer.kernel), layer.kernel_quantizer)


def _bias(layer: Any) -> Constant | None:
    """Its ``qbias`` (None without a bias), in numpy as :func:`_kernel`."""
    return weights(layer.bias_quantizer.firmware_values(layer.bias), layer.bias_quantizer) if layer.use_bias else None


def _register_layers() -> None:
    from .. import layers as ql

    @LAYERS.register(ql.QDense)
    def _dense(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        x = quantize(b, layer.name, srcs[0], layer.input_quantizer)
        op = ir.Dense(kernel=_kernel(layer), bias=_bias(layer))
        return activation(b, layer.name, b.add(op, [x], layer.name, shape), layer.activation)

    @LAYERS.register(ql.QConv1D, ql.QConv2D)
    def _conv(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        if layer.groups != 1:
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({type(layer).__name__}): groups={layer.groups} is not supported")
        x = quantize(b, layer.name, srcs[0], layer.input_quantizer)
        rank = len(shape) - 1
        op = ir.Conv(kernel=_kernel(layer), bias=_bias(layer),
                     strides=_pair(layer.strides, rank), padding=layer.padding,
                     dilation=_pair(layer.dilation_rate, rank))
        return activation(b, layer.name, b.add(op, [x], layer.name, shape), layer.activation)

    _register_other_layers()
    _register_plain_layers()


def _register_other_layers() -> None:
    from .. import layers as ql

    @LAYERS.register(ql.QActivation)
    def _qactivation(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        x = quantize(b, layer.name, srcs[0], layer.input_quantizer)
        if layer.uses_table:
            values, (k, width, f) = layer.table_values()
            op = ir.Table(table=table_constant(values, layer.table_f), k=k, width=width, f=f,
                          function=layer.activation_name)
            return b.add(op, [x], layer.name, shape)
        return activation(b, layer.name, x, layer.activation)

    @LAYERS.register(ql.QBatchNormalization)
    def _batchnorm(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        x = quantize(b, layer.name, srcs[0], layer.input_quantizer)
        scale, offset = layer.firmware_values()  # (qkernel, qbias in numpy)
        op = ir.Scale(scale=weights(scale, layer.kernel_quantizer), offset=weights(offset, layer.bias_quantizer))
        return b.add(op, [x], layer.name, shape)

    @LAYERS.register(ql.QAdd, ql.QConcatenate)
    def _merge(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        xs = [quantize(b, layer.name, s, q) for s, q in zip(srcs, layer.input_quantizers_list)]
        if isinstance(layer, ql.QAdd):
            return b.add(ir.Add(), xs, layer.name, shape)
        axis = layer.axis if layer.axis < 0 else layer.axis - 1
        return b.add(ir.Concat(axis=axis), xs, layer.name, shape)

    @LAYERS.register(ql.QMaxPooling1D, ql.QMaxPooling2D, ql.QAveragePooling1D, ql.QAveragePooling2D)
    def _pool(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        x = quantize(b, layer.name, srcs[0], layer.input_quantizer)
        rank = len(shape) - 1
        pool, strides = _pair(layer.pool_size, rank), _pair(layer.strides, rank)
        if isinstance(layer, (ql.QMaxPooling1D, ql.QMaxPooling2D)):
            return b.add(ir.MaxPool(pool=pool, strides=strides, padding=layer.padding), [x], layer.name, shape)
        count = int(np.prod(pool))
        if count & (count - 1) or layer.padding != "valid":
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({type(layer).__name__}): average pooling is exact in fixed "
                f"point only for windows of 2**n elements and padding='valid'. Received "
                f"pool_size={pool}, padding={layer.padding!r}; use a power-of-two window or max pooling."
            )
        return b.add(ir.AvgPool(pool=pool, strides=strides), [x], layer.name, shape)

    @LAYERS.register(ql.QSoftmax)
    def _softmax(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        from .softmax import softmax_nodes

        return softmax_nodes(b, layer, quantize(b, layer.name, srcs[0], layer.input_quantizer), shape)


def _register_plain_layers() -> None:
    @LAYERS.register(keras.layers.Flatten, keras.layers.Reshape)
    def _reshape(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        return b.add(ir.Reshape(shape=shape), srcs, layer.name, shape)

    @LAYERS.register(keras.layers.Dropout)
    def _dropout(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        return srcs[0]

    @LAYERS.register(keras.layers.Activation)
    def _activation(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        return activation(b, layer.name, srcs[0], layer.activation)

    @LAYERS.register(keras.layers.ReLU)
    def _relu(layer: Any, b: GraphBuilder, srcs: list[str], shape: tuple[int, ...]) -> str:
        config = layer.get_config()
        if config.get("max_value") is not None or config.get("negative_slope") or config.get("threshold"):
            return _unsupported(layer)
        return activation(b, layer.name, srcs[0], keras.activations.relu)


_register_layers()

# graphs of unchanged models: model -> (state key, graph)
_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], Graph]] = weakref.WeakKeyDictionary()


def _state_key(model: keras.Model) -> tuple[Any, ...]:
    """Everything the IR depends on: every variable's value (weights, bits, ranges)."""
    return tuple(np.asarray(ops.convert_to_numpy(v)).tobytes() for v in model.variables)


def build_ir(model: keras.Model) -> Graph:
    """The fixed-point graph of a calibrated model (cached while the model is unchanged).

    Raises:
        ValueError: if the model is not calibrated (with the fix) or has
            nested models.
        UnsupportedLayerError: naming the layer, its class and what is supported.
    """
    key = _state_key(model)
    try:
        cached = _CACHE.get(model)
    except TypeError:  # an unhashable model object: no cache
        cached = None
    if cached is not None and cached[0] == key:
        return cached[1]
    graph = _build(model)
    try:
        _CACHE[model] = (key, graph)
    except TypeError:
        pass
    return graph


def _build(model: keras.Model) -> Graph:
    from ..calibration import is_calibrated
    from ..diagnosis import require_firmware_model

    if not getattr(model, "inputs", None):
        raise ValueError(f"model {model.name!r} has no inputs; build it with keras.Input first.")
    require_firmware_model(model, "build_ir")
    if not is_calibrated(model):
        raise ValueError(
            f"model {model.name!r} is not calibrated: its activation integer bits are not set. "
            "Run hgq_fpga.calibrate(model, x_train) first (after training)."
        )
    functional = functional_of(model)
    b = GraphBuilder()
    names: dict[int, str] = {}
    for layer, ins, outs in call_nodes(functional):
        if isinstance(layer, keras.Model):
            raise ValueError(f"nested model {layer.name!r} is not supported; flatten it into one model")
        if isinstance(layer, keras.layers.InputLayer):
            names[id(outs[0])] = b.input(layer.name, tuple(int(d) for d in outs[0].shape[1:]))
            continue
        srcs = [names[id(t)] for t in ins]
        out_shape = tuple(int(d) for d in outs[0].shape[1:])
        names[id(outs[0])] = LAYERS(layer, b, srcs, out_shape)
    return b.graph([names[id(t)] for t in functional.inputs], [names[id(t)] for t in functional.outputs])
