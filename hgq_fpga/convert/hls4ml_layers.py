"""Translate the IR into hls4ml layer dicts (``ModelGraph.from_layer_list``).

Quantize nodes become hls4ml ``FixedPointQuantizer`` layers with per-element
``mask_kbi``; every other node becomes the plain hls4ml layer with the exact
quantized weights. hls4ml's ``BitExact`` pass then derives every type by
interval arithmetic from those masks and weight values.

Names in the generated C++ never come from the model: node ``n`` is called
``n{n:03d}_{op}``; the mapping to Keras layer names is kept alongside.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph, Node
from ..ir.intmath import pad_amounts
from ..ir.ops import pair_values

__all__ = ["graph_to_layer_list", "FPQ_ROUNDING", "FPQ_OVERFLOW", "UnsupportedForHls4ml"]

#: modes hls4ml's FixedPointQuantizer (and its BitExact pass) implement
FPQ_ROUNDING = ("TRN", "RND")
FPQ_OVERFLOW = ("WRAP", "SAT", "SAT_SYM")


class UnsupportedForHls4ml(ValueError):
    """Something valid in hgq_fpga that hls4ml cannot express exactly."""


def _quantizer(node: Node, name: str, src: str, shape: tuple[int, ...]) -> dict[str, Any]:
    a = node.attrs
    if a["rounding"] not in FPQ_ROUNDING or a["overflow"] not in FPQ_OVERFLOW:
        raise UnsupportedForHls4ml(
            f"layer {node.layer!r}: hls4ml's FixedPointQuantizer implements rounding "
            f"{'/'.join(FPQ_ROUNDING)} and overflow {'/'.join(FPQ_OVERFLOW)}. Received "
            f"rounding={a['rounding']!r}, overflow={a['overflow']!r}; choose one of those "
            "for this layer's input_quantizer."
        )
    k, i, f = a["k"], a["i"], a["f"]
    width = k + i + f
    integer = np.where(width > 0, k + i, 0)
    full = (1,) + tuple(shape)
    mask = tuple(np.broadcast_to(v, full).astype(np.int16) for v in (k, np.maximum(width, 0), integer))
    rounding, overflow = a["rounding"], a["overflow"]
    if np.all(width <= 0):
        # every element is the constant 0 whatever the modes; hls4ml fuses such a quantizer into
        # the previous layer's type, and only TRN/WRAP gives its zero type (1 bit otherwise:
        # a SAT quantizer would keep values up to 0.5)
        rounding, overflow = "TRN", "WRAP"
    return {
        "name": name, "class_name": "FixedPointQuantizer", "inputs": [src],
        "mask_kbi": mask, "SAT": overflow, "RND": rounding,
        "fusible": None, "overrides": {},
    }


def _check_chain(first: Node, second: Node) -> None:
    """Refuse a chain hls4ml 1.3.0 types wrongly (see :mod:`hgq_fpga.convert.hls4ml_fixes`, point 2)."""
    from .hls4ml_fixes import trn_floor_needs

    if second.attrs["rounding"] != "TRN":
        return
    a, b = first.attrs, second.attrs
    k, i, f, lk, li, lf = np.broadcast_arrays(*(np.ravel(v) for v in (b["k"], b["i"], b["f"], a["k"], a["i"], a["f"])))
    if not np.any(trn_floor_needs(k, i, f, lk, li, lf)):
        return
    raise UnsupportedForHls4ml(
        f"layer {second.layer!r} truncates (TRN) to f={int(np.min(f))} a signed tensor that layer "
        f"{first.layer!r} keeps within (-2**{int(np.max(li))}, 2**{int(np.max(li))}): hls4ml 1.3.0 fuses "
        "the two quantizers into one type of negative width, and its C simulation would be wrong. "
        f"Give {second.layer!r} rounding='RND', or more fractional bits, or put a layer between them."
    )


def _conv(node: Node, name: str, src: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> dict[str, Any]:
    a = node.attrs
    w = pair_values(a["kernel"])
    b = pair_values(a["bias"])
    rank = w.ndim - 2
    conf: dict[str, Any] = {
        "name": name, "class_name": f"Conv{rank}D", "inputs": [src], "data_format": "channels_last",
        "weight_data": w, "bias_data": b if b is not None else np.zeros(w.shape[-1]),
        "use_bias": True, "n_chan": int(w.shape[-2]), "n_filt": int(w.shape[-1]),
    }
    if any(d != 1 for d in a["dilation"]):
        raise UnsupportedForHls4ml(f"layer {node.layer!r}: dilated convolutions are not supported by hls4ml")
    dims = ("height", "width") if rank == 2 else ("width",)
    pads = (("pad_top", "pad_bottom"), ("pad_left", "pad_right")) if rank == 2 else (("pad_left", "pad_right"),)
    for n, dim in enumerate(dims):
        out, before, after = pad_amounts(in_shape[n], w.shape[n], a["strides"][n], 1, a["padding"])
        conf.update({f"filt_{dim}": int(w.shape[n]), f"stride_{dim}": int(a["strides"][n]),
                     f"in_{dim}": int(in_shape[n]), f"out_{dim}": int(out_shape[n]),
                     pads[n][0]: before, pads[n][1]: after})
    return conf


def _pool(node: Node, name: str, src: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> dict[str, Any]:
    a = node.attrs
    rank = len(a["pool"])
    kind = "Max" if node.op == "max_pool" else "Average"
    padding = a.get("padding", "valid")
    conf: dict[str, Any] = {
        "name": name, "class_name": f"{kind}Pooling{rank}D", "inputs": [src],
        "data_format": "channels_last", "n_filt": int(in_shape[-1]), "n_chan": int(in_shape[-1]),
        "padding": padding, "count_pad": False,
    }
    dims = ("height", "width") if rank == 2 else ("width",)
    pads = (("pad_top", "pad_bottom"), ("pad_left", "pad_right")) if rank == 2 else (("pad_left", "pad_right"),)
    for n, dim in enumerate(dims):
        out, before, after = pad_amounts(in_shape[n], a["pool"][n], a["strides"][n], 1, padding)
        conf.update({f"pool_{dim}": int(a["pool"][n]), f"stride_{dim}": int(a["strides"][n]),
                     f"in_{dim}": int(in_shape[n]), f"out_{dim}": int(out_shape[n]),
                     pads[n][0]: before, pads[n][1]: after})
    if rank == 1:
        conf.update(n_in=int(in_shape[0]), n_out=int(out_shape[0]))
    return conf


def _hls_axis(axis: int) -> int:
    """hls4ml counts a non-negative axis with the batch axis included."""
    return axis if axis < 0 else axis + 1


def graph_to_layer_list(graph: Graph) -> tuple[list[dict[str, Any]], list[str], list[str], dict[str, str]]:
    """``(layer dicts, input names, output names, {hls name: IR node name})``."""
    layers: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # IR tensor -> hls layer producing it
    origin: dict[str, str] = {}
    counter = iter(range(10**6))
    quantized: dict[str, Node] = {}  # IR tensor -> the quantize node it comes from (through reshapes)

    def new(op: str, node: Node) -> str:
        name = f"n{next(counter):03d}_{op}"
        origin[name] = node.name
        return name

    for node in graph.nodes:
        out = graph.tensors[node.outputs[0]]
        srcs = [names[s] for s in node.inputs]
        shapes = [graph.tensors[s].shape for s in node.inputs]
        if node.op == "input":
            name = new("input", node)
            layers.append({"name": name, "class_name": "InputLayer", "input_shape": list(out.shape), "inputs": []})
        elif node.op == "quantize":
            if node.inputs[0] in quantized:
                _check_chain(quantized[node.inputs[0]], node)
            quantized[node.outputs[0]] = node
            name = new("quant", node)
            layers.append(_quantizer(node, name, srcs[0], out.shape))
        elif node.op == "dense":
            name = new("dense", node)
            w, b = pair_values(node.attrs["kernel"]), pair_values(node.attrs["bias"])
            layers.append({"name": name, "class_name": "Dense", "inputs": srcs, "data_format": "channels_last",
                           "weight_data": w, "bias_data": b if b is not None else np.zeros(w.shape[1]),
                           "use_bias": True, "n_in": int(w.shape[0]), "n_out": int(w.shape[1])})
        elif node.op == "conv":
            name = new("conv", node)
            layers.append(_conv(node, name, srcs[0], shapes[0], out.shape))
        elif node.op == "scale":
            name = new("scale", node)
            layers.append({"name": name, "class_name": "BatchNormalization", "inputs": srcs,
                           "n_in": int(np.prod(out.shape)), "n_filt": int(out.shape[-1]),
                           "scale_data": pair_values(node.attrs["scale"]), "bias_data": pair_values(node.attrs["offset"]),
                           "use_gamma": True, "use_beta": True, "data_format": "channels_last"})
        elif node.op == "relu":
            name = new("relu", node)
            layers.append({"name": name, "class_name": "Activation", "activation": "relu", "inputs": srcs})
        elif node.op == "multiply":
            name = new("mul", node)
            layers.append({"name": name, "class_name": "Merge", "op": "multiply", "inputs": srcs})
        elif node.op in ("add", "concat"):
            name = srcs[0]
            for other in srcs[1:]:  # hls4ml merges two tensors at a time
                prev, name = name, new(node.op, node)
                if node.op == "add":
                    layers.append({"name": name, "class_name": "Merge", "op": "add", "inputs": [prev, other]})
                else:
                    rank = len(out.shape)
                    layers.append({"name": name, "class_name": "Concatenate", "op": f"concatenate{rank}d",
                                   "axis": _hls_axis(node.attrs["axis"]), "inputs": [prev, other]})
        elif node.op in ("max_pool", "avg_pool"):
            name = new("pool", node)
            layers.append(_pool(node, name, srcs[0], shapes[0], out.shape))
        elif node.op == "table":
            name = new("lut", node)
            from hls4ml.model.types import FixedPrecisionType

            values = pair_values(node.attrs["table"])
            signed = bool(np.any(values < 0))
            tf = node.attrs["table"][1]
            layers.append({"name": name, "class_name": "UnaryLUT", "inputs": srcs, "activation": "unary_lut",
                           "table_data": values, "table_t": FixedPrecisionType(int(signed) + tf, int(signed), signed)})
        elif node.op == "reshape":
            name = new("reshape", node)
            layers.append({"name": name, "class_name": "Reshape", "target_shape": list(out.shape), "inputs": srcs})
            if node.inputs[0] in quantized:
                quantized[node.outputs[0]] = quantized[node.inputs[0]]
        else:
            raise UnsupportedForHls4ml(f"IR operation {node.op!r} (node {node.name!r}) has no hls4ml translation")
        names[node.outputs[0]] = name
    return layers, [names[t] for t in graph.inputs], [names[t] for t in graph.outputs], origin
