"""Which logic reaches an output: synthesis removes the rest, so the estimate does too.

:func:`needed_bits` says, per tensor element, which bits its consumers use
(none for an element no output depends on); the estimator caps adder trees
and ReLUs with it.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Op, Registry, TensorInfo, ops as ir
from .circuit import NO_BITS

__all__ = ["USED_INPUTS", "needed_bits"]


def _all_or_nothing(op: Op, u_out: np.ndarray, out: TensorInfo, t: TensorInfo) -> np.ndarray:
    """Default: every input element is used when any output element is."""
    return np.full(t.shape, bool(np.any(u_out)))


#: ``rule(op, used output elements, output tensor, input tensor) -> used input elements``;
#: operations without an entry use every input element when any output is used
USED_INPUTS = Registry("liveness", default=_all_or_nothing)


@USED_INPUTS.register(ir.Quantize, ir.Relu)
def _elementwise(op: Op, u_out: np.ndarray, out: TensorInfo, t: TensorInfo) -> np.ndarray:
    """A quantizer or ReLU whose output element is not a constant reads its input element."""
    live = u_out & (np.asarray(out.lo) != np.asarray(out.hi)).reshape(out.shape)
    return live.reshape(t.shape)


@USED_INPUTS.register(ir.Dense)
def _dense(op: ir.Dense, u_out: np.ndarray, out: TensorInfo, t: TensorInfo) -> np.ndarray:
    """A dense output reads its inputs through nonzero weights."""
    live = (np.asarray(op.kernel.m) != 0).astype(np.int64)  # (n_in, n_out); inputs (..., n_in)
    return (u_out.reshape(-1, live.shape[1]).astype(np.int64) @ live.T > 0).reshape(t.shape)


def _used_elements(graph: Graph) -> dict[str, np.ndarray]:
    """Which elements of each tensor reach an output (synthesis removes the rest).

    Walks the graph backwards: an element is used when a consumer that is used
    reads it (:data:`USED_INPUTS`).
    """
    used: dict[str, np.ndarray] = {}
    for name in graph.outputs:
        used[name] = np.ones(graph.tensors[name].shape, bool)
    for node in reversed(graph.nodes):
        out = graph.tensors[node.outputs[0]]
        u_out = used.get(node.outputs[0], np.zeros(out.shape, bool))
        for name in node.inputs:
            t = graph.tensors[name]
            u_in = USED_INPUTS(node, u_out, out, t)
            used[name] = used[name] | u_in if name in used else u_in
    return used


def needed_bits(graph: Graph) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Bits of each tensor element that its consumers use: ``(lowest, highest)``
    in the tensor's scale (absent: every bit).

    An element no output depends on needs no bit (``highest = -1``). A
    quantizer to ``(k, i, f)`` from scale ``F`` drops the ``F - f`` low bits
    (rounding ``RND`` reads one of them) and, wrapping around (``WRAP``), every
    bit above its width; saturation reads every high bit.
    """
    used = _used_elements(graph)
    consumers: dict[str, list[Op]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            consumers.setdefault(name, []).append(node)
    need: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, users in consumers.items():
        t = graph.tensors[name]
        if name in graph.outputs or not t.is_fixed:
            continue
        dead = ~used.get(name, np.zeros(t.shape, bool))
        if any(not isinstance(u, ir.Quantize) for u in users):
            if np.any(dead):
                need[name] = (np.where(dead, NO_BITS, 0), np.where(dead, -1, NO_BITS))
            continue
        lo = np.full(t.shape, NO_BITS, np.int64)
        hi = np.full(t.shape, -1, np.int64)
        for u in users:
            k, i, f = (np.asarray(a).reshape(t.shape) for a in (u.k, u.i, u.f))
            width = k + i + f
            drop = t.f - f
            low = np.maximum(drop - (1 if u.rounding != "TRN" else 0), 0)
            top = drop + width - 1 if u.overflow == "WRAP" else np.full(t.shape, NO_BITS)
            live = width > 0
            lo = np.where(live, np.minimum(lo, low), lo)
            hi = np.where(live, np.maximum(hi, top), hi)
        need[name] = (np.where(dead, NO_BITS, lo), np.where(dead, -1, hi))
    return need
