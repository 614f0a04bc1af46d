"""The emulator's fast path: the same operations on exact float64 values.

When the IR proves every value and every partial sum of the network below
``2**52`` units of its least significant bit, float64 holds all of them
exactly, so the graph can run on float64 arrays with BLAS matrix products and
the float fixed-point core, with no integer conversions. The IR decides;
otherwise the integer path (``run.py``) runs. An operation without an entry
in :data:`FLOAT_RULES` also sends the model to the integer path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fixed import quantize_core
from ..ir import Graph, Registry, ops as ir
from ..ir.intmath import im2col

__all__ = ["FLOAT_RULES", "float_path_is_exact", "run_float"]

LIMIT = 2.0**52

#: ``rule(op, inputs as float64 arrays) -> float64 array``, exact below ``LIMIT``
FLOAT_RULES = Registry("emulator float path")


def float_path_is_exact(graph: Graph) -> bool:
    """True when every operation has a float rule and every tensor, partial sum
    and requantization fits 52 bits."""
    for node in graph.nodes:
        if not node.inputs:
            continue
        if not FLOAT_RULES.supports(type(node)):
            return False
        out = graph.tensors[node.outputs[0]]
        if out.abs_bound >= LIMIT or getattr(node, "bound", 0.0) >= LIMIT:
            return False
        if isinstance(node, ir.Quantize):
            src = graph.tensors[node.inputs[0]]
            if src.is_fixed:
                finer = max(0, int(np.max(node.f)) - src.f)
                if src.abs_bound * 2.0**finer >= LIMIT:
                    return False
    return True


@FLOAT_RULES.register(ir.Quantize)
def _quantize(op: ir.Quantize, xs: list[np.ndarray]) -> np.ndarray:
    k, i, f = op.float_kif
    return quantize_core(xs[0], k, i, f, op.rounding, op.overflow, xp=np)


@FLOAT_RULES.register(ir.Dense)
def _dense(op: ir.Dense, xs: list[np.ndarray]) -> np.ndarray:
    y = xs[0] @ op.kernel.values
    return y if op.bias is None else y + op.bias.values


@FLOAT_RULES.register(ir.Conv)
def _conv(op: ir.Conv, xs: list[np.ndarray]) -> np.ndarray:
    w = op.kernel.values
    cols = im2col(xs[0], w.shape[:-2], op.strides, op.dilation, op.padding)
    y = cols.reshape(cols.shape[:-2] + (-1,)) @ w.reshape(-1, w.shape[-1])
    return y if op.bias is None else y + op.bias.values


@FLOAT_RULES.register(ir.Scale)
def _scale(op: ir.Scale, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0] * op.scale.values + op.offset.values


@FLOAT_RULES.register(ir.Relu)
def _relu(op: ir.Relu, xs: list[np.ndarray]) -> np.ndarray:
    return np.maximum(xs[0], 0.0)


@FLOAT_RULES.register(ir.Add)
def _add(op: ir.Add, xs: list[np.ndarray]) -> np.ndarray:
    return sum(xs[1:], xs[0])


@FLOAT_RULES.register(ir.Concat)
def _concat(op: ir.Concat, xs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(xs, axis=op.axis + 1 if op.axis >= 0 else op.axis)


@FLOAT_RULES.register(ir.MaxPool)
def _max_pool(op: ir.MaxPool, xs: list[np.ndarray]) -> np.ndarray:
    cols = im2col(xs[0], op.pool, op.strides, (1,) * len(op.pool), op.padding, pad_value=-np.inf)
    return np.max(cols, axis=-2)


@FLOAT_RULES.register(ir.AvgPool)
def _avg_pool(op: ir.AvgPool, xs: list[np.ndarray]) -> np.ndarray:
    cols = im2col(xs[0], op.pool, op.strides, (1,) * len(op.pool), "valid")
    return np.sum(cols, axis=-2) * (1.0 / int(np.prod(op.pool)))


@FLOAT_RULES.register(ir.Reshape)
def _reshape(op: ir.Reshape, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0].reshape((len(xs[0]),) + tuple(op.shape))


@FLOAT_RULES.register(ir.Multiply)
def _multiply(op: ir.Multiply, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0] * xs[1]


@FLOAT_RULES.register(ir.Table)
def _table(op: ir.Table, xs: list[np.ndarray]) -> np.ndarray:
    bits = (xs[0] * 2.0**op.f).astype(np.int64) & ((1 << op.width) - 1)
    return op.table.values[bits]


def _run_block(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    values: dict[str, Any] = dict(zip(graph.inputs, inputs))
    for node in graph.nodes:
        if node.inputs:
            values[node.outputs[0]] = FLOAT_RULES(node, [values[s] for s in node.inputs])
    return [values[name] for name in graph.outputs]


def run_float(graph: Graph, inputs: list[np.ndarray], *, block: int = 2048) -> list[np.ndarray]:
    """Evaluate ``graph`` on float64 values; exact when :func:`float_path_is_exact`.

    Samples are processed in blocks of ``block`` so that intermediates stay in
    the CPU cache (about 2x faster than one big batch for the digits MLP).
    """
    n = len(inputs[0])
    parts = [_run_block(graph, [a[s : s + block] for a in inputs]) for s in range(0, n, block)]
    if not parts:
        return _run_block(graph, inputs)
    return [np.concatenate([p[j] for p in parts]) for j in range(len(graph.outputs))]
