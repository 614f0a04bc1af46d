"""The emulator's fast path: the same operations on exact float64 values.

When the IR proves every value and every partial sum of the network below
``2**52`` units of its least significant bit, float64 holds all of them
exactly, so the graph can run on float64 arrays with BLAS matrix products and
the float fixed-point core, with no integer conversions. The IR decides;
otherwise the integer path (``run.py``) runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fixed import quantize_core
from ..ir import Graph, Node
from ..ir.intmath import im2col
from ..ir.ops import pair_values

__all__ = ["float_path_is_exact", "run_float"]

LIMIT = 2.0**52


def float_path_is_exact(graph: Graph) -> bool:
    """True when every tensor, partial sum and requantization fits 52 bits."""
    for node in graph.nodes:
        if node.op == "input":
            continue
        out = graph.tensors[node.outputs[0]]
        if out.abs_bound >= LIMIT or node.attrs.get("bound", 0.0) >= LIMIT:
            return False
        if node.op == "quantize":
            src = graph.tensors[node.inputs[0]]
            if src.is_fixed:
                finer = max(0, int(np.max(node.attrs["f"])) - src.f)
                if src.abs_bound * 2.0**finer >= LIMIT:
                    return False
    return True


def _constants(node: Node) -> dict[str, Any]:
    """A node's constants as float64 arrays, converted once per run (not per block)."""
    a = node.attrs
    if node.op == "quantize":
        return dict(zip("kif", (a[key].astype(np.float64) for key in ("k", "i", "f"))))
    if node.op in ("dense", "conv"):
        return {"w": pair_values(a["kernel"]), "b": pair_values(a["bias"])}
    if node.op == "scale":
        return {"s": pair_values(a["scale"]), "o": pair_values(a["offset"])}
    if node.op == "table":
        return {"t": pair_values(a["table"])}
    return {}


def _linear(x: np.ndarray, node: Node, c: dict[str, Any]) -> np.ndarray:
    a, w = node.attrs, c["w"]
    if node.op == "conv":
        cols = im2col(x, w.shape[:-2], a["strides"], a["dilation"], a["padding"])
        y = cols.reshape(cols.shape[:-2] + (-1,)) @ w.reshape(-1, w.shape[-1])
    else:
        y = x @ w
    return y if c["b"] is None else y + c["b"]


def _step(node: Node, xs: list[np.ndarray], c: dict[str, Any]) -> np.ndarray:
    a = node.attrs
    if node.op == "quantize":
        return quantize_core(xs[0], c["k"], c["i"], c["f"], a["rounding"], a["overflow"], xp=np)
    if node.op in ("dense", "conv"):
        return _linear(xs[0], node, c)
    if node.op == "scale":
        return xs[0] * c["s"] + c["o"]
    if node.op == "relu":
        return np.maximum(xs[0], 0.0)
    if node.op == "add":
        return sum(xs[1:], xs[0])
    if node.op == "concat":
        axis = a["axis"]
        return np.concatenate(xs, axis=axis + 1 if axis >= 0 else axis)
    if node.op == "max_pool":
        cols = im2col(xs[0], a["pool"], a["strides"], (1,) * len(a["pool"]), a["padding"], pad_value=-np.inf)
        return np.max(cols, axis=-2)
    if node.op == "avg_pool":
        cols = im2col(xs[0], a["pool"], a["strides"], (1,) * len(a["pool"]), "valid")
        return np.sum(cols, axis=-2) * (1.0 / int(np.prod(a["pool"])))
    if node.op == "reshape":
        return xs[0].reshape((len(xs[0]),) + tuple(a["shape"]))
    if node.op == "multiply":
        return xs[0] * xs[1]
    if node.op == "table":
        bits = (xs[0] * 2.0 ** a["f"]).astype(np.int64) & ((1 << a["width"]) - 1)
        return c["t"][bits]
    raise ValueError(f"emulator: unknown IR operation {node.op!r} in node {node.name!r}")


def _run_block(graph: Graph, inputs: list[np.ndarray], consts: dict[str, dict[str, Any]]) -> list[np.ndarray]:
    values: dict[str, Any] = dict(zip(graph.inputs, inputs))
    for node in graph.nodes:
        if node.op != "input":
            values[node.outputs[0]] = _step(node, [values[s] for s in node.inputs], consts[node.name])
    return [values[name] for name in graph.outputs]


def run_float(graph: Graph, inputs: list[np.ndarray], *, block: int = 2048) -> list[np.ndarray]:
    """Evaluate ``graph`` on float64 values; exact when :func:`float_path_is_exact`.

    Samples are processed in blocks of ``block`` so that intermediates stay in
    the CPU cache (about 2x faster than one big batch for the digits MLP).
    """
    consts = {node.name: _constants(node) for node in graph.nodes}
    n = len(inputs[0])
    parts = [_run_block(graph, [a[s : s + block] for a in inputs], consts) for s in range(0, n, block)]
    if not parts:
        return _run_block(graph, inputs, consts)
    return [np.concatenate([p[j] for p in parts]) for j in range(len(graph.outputs))]
