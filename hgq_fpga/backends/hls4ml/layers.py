"""Translate the IR into hls4ml layer dicts (``ModelGraph.from_layer_list``).

Quantize nodes become hls4ml ``FixedPointQuantizer`` layers with per-element
``mask_kbi``; every other node becomes the plain hls4ml layer with the exact
quantized weights. hls4ml's ``BitExact`` pass then derives every type by
interval arithmetic from those masks and weight values.

Names in the generated C++ never come from the model: node ``n`` is called
``n{n:03d}_{op}``; the mapping to Keras layer names is kept alongside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...ir import Graph, Op, Registry, UnsupportedOp, ops as ir
from ...ir.intmath import pad_amounts

__all__ = ["HLS4ML_RULES", "Hls4mlContext", "graph_to_layer_list", "FPQ_ROUNDING", "FPQ_OVERFLOW",
           "UnsupportedForHls4ml"]

#: modes written into hls4ml's FixedPointQuantizer: its C++ casts with ``ap_fixed<..., AP_<mode>, ...>``, its
#: BitExact pass asks for every fractional bit before a mode other than TRN/RND, and our type check
#: (typecheck.py) verifies every type it derives for them
FPQ_ROUNDING = ("TRN", "RND", "TRN_ZERO", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
FPQ_OVERFLOW = ("WRAP", "SAT", "SAT_SYM", "SAT_ZERO")


class UnsupportedForHls4ml(ValueError):
    """Something valid in hgq_fpga that hls4ml cannot express exactly."""


def _quantizer(node: ir.Quantize, name: str, src: str, shape: tuple[int, ...], keep: bool = False) -> dict[str, Any]:
    if node.rounding not in FPQ_ROUNDING or node.overflow not in FPQ_OVERFLOW:
        raise UnsupportedForHls4ml(
            f"layer {node.layer!r}: hls4ml's FixedPointQuantizer implements rounding "
            f"{'/'.join(FPQ_ROUNDING)} and overflow {'/'.join(FPQ_OVERFLOW)}. Received "
            f"rounding={node.rounding!r}, overflow={node.overflow!r}; choose one of those "
            "for this layer's input_quantizer."
        )
    k, i, f = node.k, node.i, node.f
    width = k + i + f
    integer = np.where(width > 0, k + i, 0)
    full = (1,) + tuple(shape)
    mask = tuple(np.broadcast_to(v, full).astype(np.int16) for v in (k, np.maximum(width, 0), integer))
    rounding, overflow = node.rounding, node.overflow
    zero = bool(np.all(width <= 0))
    if zero:
        # every element is the constant 0 whatever the modes: TRN/WRAP asks nothing of the layer
        # before, and the layer is kept (not fused into a type: no type is the constant 0), so its
        # C++ writes 0 (hgq_fpga.compat.hls4ml.keep_marked_quantizers)
        rounding, overflow = "TRN", "WRAP"
    return {
        "name": name, "class_name": "FixedPointQuantizer", "inputs": [src],
        "mask_kbi": mask, "SAT": overflow, "RND": rounding,
        "fusible": None, "overrides": {}, "hgq_fpga": True, "hgq_fpga_keep": zero or keep,
    }


def _check_chain(first: ir.Quantize, second: ir.Quantize) -> None:
    """Refuse a chain hls4ml 1.3.0 types wrongly (see :mod:`hgq_fpga.backends.hls4ml.fixes`, point 2)."""
    from .fixes import trn_floor_needs

    if second.rounding != "TRN":
        return
    a, b = first, second
    k, i, f, lk, li, lf = np.broadcast_arrays(*(np.ravel(v) for v in (b.k, b.i, b.f, a.k, a.i, a.f)))
    if not np.any(trn_floor_needs(k, i, f, lk, li, lf)):
        return
    raise UnsupportedForHls4ml(
        f"layer {second.layer!r} truncates (TRN) to f={int(np.min(f))} a signed tensor that layer "
        f"{first.layer!r} keeps within (-2**{int(np.max(li))}, 2**{int(np.max(li))}): hls4ml 1.3.0 fuses "
        "the two quantizers into one type of negative width, and its C simulation would be wrong. "
        f"Give {second.layer!r} rounding='RND', or more fractional bits, or put a layer between them."
    )


def _conv(node: ir.Conv, name: str, src: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
          w: np.ndarray) -> dict[str, Any]:
    b = node.bias.values if node.bias is not None else None
    rank = w.ndim - 2
    conf: dict[str, Any] = {
        "name": name, "class_name": f"Conv{rank}D", "inputs": [src], "data_format": "channels_last",
        "weight_data": w, "bias_data": b if b is not None else np.zeros(w.shape[-1]),
        "use_bias": True, "n_chan": int(w.shape[-2]), "n_filt": int(w.shape[-1]),
    }
    if any(d != 1 for d in node.dilation):
        raise UnsupportedForHls4ml(f"layer {node.layer!r}: dilated convolutions are not supported by hls4ml")
    dims = ("height", "width") if rank == 2 else ("width",)
    pads = (("pad_top", "pad_bottom"), ("pad_left", "pad_right")) if rank == 2 else (("pad_left", "pad_right"),)
    for n, dim in enumerate(dims):
        out, before, after = pad_amounts(in_shape[n], w.shape[n], node.strides[n], 1, node.padding)
        conf.update({f"filt_{dim}": int(w.shape[n]), f"stride_{dim}": int(node.strides[n]),
                     f"in_{dim}": int(in_shape[n]), f"out_{dim}": int(out_shape[n]),
                     pads[n][0]: before, pads[n][1]: after})
    return conf


def _pool(node: ir.MaxPool | ir.AvgPool, name: str, src: str, in_shape: tuple[int, ...],
          out_shape: tuple[int, ...]) -> dict[str, Any]:
    rank = len(node.pool)
    kind = "Max" if isinstance(node, ir.MaxPool) else "Average"
    padding = node.padding
    conf: dict[str, Any] = {
        "name": name, "class_name": f"{kind}Pooling{rank}D", "inputs": [src],
        "data_format": "channels_last", "n_filt": int(in_shape[-1]), "n_chan": int(in_shape[-1]),
        "padding": padding, "count_pad": False,
    }
    dims = ("height", "width") if rank == 2 else ("width",)
    pads = (("pad_top", "pad_bottom"), ("pad_left", "pad_right")) if rank == 2 else (("pad_left", "pad_right"),)
    for n, dim in enumerate(dims):
        out, before, after = pad_amounts(in_shape[n], node.pool[n], node.strides[n], 1, padding)
        conf.update({f"pool_{dim}": int(node.pool[n]), f"stride_{dim}": int(node.strides[n]),
                     f"in_{dim}": int(in_shape[n]), f"out_{dim}": int(out_shape[n]),
                     pads[n][0]: before, pads[n][1]: after})
    if rank == 1:
        conf.update(n_in=int(in_shape[0]), n_out=int(out_shape[0]))
    return conf


def _hls_axis(axis: int) -> int:
    """hls4ml counts a non-negative axis with the batch axis included."""
    return axis if axis < 0 else axis + 1


@dataclass
class Hls4mlContext:
    """The hls4ml layer list being built: names in generated code never come from the model."""

    graph: Graph
    layers: list[dict[str, Any]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # IR tensor -> hls layer producing it
    origin: dict[str, str] = field(default_factory=dict)  # hls layer -> IR node
    quantized: dict[str, ir.Quantize] = field(default_factory=dict)  # tensor -> its quantizer (through reshapes)
    kept: set[str] = field(default_factory=set)  # IR quantizers hls4ml must keep as layers
    count: int = 0

    def new(self, short: str, node: Op) -> str:
        """A fresh hls layer name ``n{count:03d}_{short}`` for ``node``."""
        name = f"n{self.count:03d}_{short}"
        self.count += 1
        self.origin[name] = node.name
        return name

    def sources(self, node: Op) -> list[str]:
        return [self.names[s] for s in node.inputs]

    def shape(self, tensor: str) -> tuple[int, ...]:
        return self.graph.tensors[tensor].shape


#: ``rule(op, context) -> name of the hls layer holding the op's output``
HLS4ML_RULES = Registry("to_hls4ml")


@HLS4ML_RULES.register(ir.Input)
def _input(node: ir.Input, c: Hls4mlContext) -> str:
    name = c.new("input", node)
    c.layers.append({"name": name, "class_name": "InputLayer", "input_shape": list(c.shape(node.outputs[0])),
                     "inputs": []})
    return name


@HLS4ML_RULES.register(ir.Quantize)
def _quantize(node: ir.Quantize, c: Hls4mlContext) -> str:
    chained = node.inputs[0] in c.quantized
    if chained:
        _check_chain(c.quantized[node.inputs[0]], node)
    c.quantized[node.outputs[0]] = node
    name = c.new("quant", node)
    # the second of two quantizers in a row is kept as a layer: hls4ml would fuse both into the type of
    # the layer before them, the second type replacing the first (a SAT_SYM clamp lost, found by the type check)
    c.layers.append(_quantizer(node, name, c.sources(node)[0], c.shape(node.outputs[0]),
                               keep=chained or node.name in c.kept))
    return name


@HLS4ML_RULES.register(ir.Dense)
def _dense(node: ir.Dense, c: Hls4mlContext) -> str:
    name = c.new("dense", node)
    w = node.kernel.values
    b = node.bias.values if node.bias is not None else np.zeros(w.shape[1])
    c.layers.append({"name": name, "class_name": "Dense", "inputs": c.sources(node), "data_format": "channels_last",
                     "weight_data": w, "bias_data": b, "use_bias": True, "n_in": int(w.shape[0]),
                     "n_out": int(w.shape[1])})
    return name


@HLS4ML_RULES.register(ir.Conv)
def _conv_rule(node: ir.Conv, c: Hls4mlContext) -> str:
    name = c.new("conv", node)
    c.layers.append(_conv(node, name, c.sources(node)[0], c.shape(node.inputs[0]), c.shape(node.outputs[0]),
                          node.kernel.values))
    return name


@HLS4ML_RULES.register(ir.Scale)
def _scale(node: ir.Scale, c: Hls4mlContext) -> str:
    name = c.new("scale", node)
    out = c.shape(node.outputs[0])
    c.layers.append({"name": name, "class_name": "BatchNormalization", "inputs": c.sources(node),
                     "n_in": int(np.prod(out)), "n_filt": int(out[-1]), "scale_data": node.scale.values,
                     "bias_data": node.offset.values, "use_gamma": True, "use_beta": True,
                     "data_format": "channels_last"})
    return name


@HLS4ML_RULES.register(ir.Relu)
def _relu(node: ir.Relu, c: Hls4mlContext) -> str:
    name = c.new("relu", node)
    c.layers.append({"name": name, "class_name": "Activation", "activation": "relu", "inputs": c.sources(node)})
    return name


@HLS4ML_RULES.register(ir.Multiply)
def _multiply(node: ir.Multiply, c: Hls4mlContext) -> str:
    name = c.new("mul", node)
    c.layers.append({"name": name, "class_name": "Merge", "op": "multiply", "inputs": c.sources(node)})
    return name


@HLS4ML_RULES.register(ir.Add, ir.Concat)
def _merge(node: ir.Add | ir.Concat, c: Hls4mlContext) -> str:
    srcs = c.sources(node)
    name = srcs[0]
    for other in srcs[1:]:  # hls4ml merges two tensors at a time
        prev, name = name, c.new(node.op, node)
        if isinstance(node, ir.Add):
            c.layers.append({"name": name, "class_name": "Merge", "op": "add", "inputs": [prev, other]})
        else:
            rank = len(c.shape(node.outputs[0]))
            c.layers.append({"name": name, "class_name": "Concatenate", "op": f"concatenate{rank}d",
                             "axis": _hls_axis(node.axis), "inputs": [prev, other]})
    return name


@HLS4ML_RULES.register(ir.MaxPool, ir.AvgPool)
def _pool_rule(node: ir.MaxPool | ir.AvgPool, c: Hls4mlContext) -> str:
    name = c.new("pool", node)
    c.layers.append(_pool(node, name, c.sources(node)[0], c.shape(node.inputs[0]), c.shape(node.outputs[0])))
    return name


@HLS4ML_RULES.register(ir.Table)
def _table(node: ir.Table, c: Hls4mlContext) -> str:
    from hls4ml.model.types import FixedPrecisionType

    name = c.new("lut", node)
    values = node.table.values
    signed = bool(np.any(values < 0))
    tf = node.table.f
    c.layers.append({"name": name, "class_name": "UnaryLUT", "inputs": c.sources(node), "activation": "unary_lut",
                     "table_data": values, "table_t": FixedPrecisionType(int(signed) + tf, int(signed), signed)})
    return name


@HLS4ML_RULES.register(ir.Reshape)
def _reshape(node: ir.Reshape, c: Hls4mlContext) -> str:
    name = c.new("reshape", node)
    c.layers.append({"name": name, "class_name": "Reshape", "target_shape": list(c.shape(node.outputs[0])),
                     "inputs": c.sources(node)})
    if node.inputs[0] in c.quantized:
        c.quantized[node.outputs[0]] = c.quantized[node.inputs[0]]
    return name


def _passed_through(graph: Graph) -> set[str]:
    """Quantizers of a network input whose output is a network output (through reshapes at most).

    hls4ml would fuse such a quantizer into the input's type (when it has one format for every
    element), and the top function's output would be its input (the C++ does not compile): they
    are kept as layers, whose C++ casts each value (a QKeras model that is one ``QActivation``).
    """
    kept = set()
    for name in graph.outputs:
        node = graph.producer(name)
        while isinstance(node, ir.Reshape):
            node = graph.producer(node.inputs[0])
        if isinstance(node, ir.Quantize) and node.inputs[0] in graph.inputs:
            kept.add(node.name)
    return kept


def graph_to_layer_list(graph: Graph) -> tuple[list[dict[str, Any]], list[str], list[str], dict[str, str]]:
    """``(layer dicts, input names, output names, {hls name: IR node name})``.

    Raises:
        UnsupportedForHls4ml: for an operation without an entry in :data:`HLS4ML_RULES`.
    """
    c = Hls4mlContext(graph, kept=_passed_through(graph))
    for node in graph.nodes:
        try:
            c.names[node.outputs[0]] = HLS4ML_RULES(node, c)
        except UnsupportedOp as e:
            raise UnsupportedForHls4ml(str(e)) from None
    return c.layers, [c.names[t] for t in graph.inputs], [c.names[t] for t in graph.outputs], c.origin
