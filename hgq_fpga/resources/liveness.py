"""Which logic reaches an output: synthesis removes the rest, so the estimate does too.

:func:`needed_bits` says, per tensor element, which bits its consumers use
(none for an element no output depends on); the estimator caps adder trees
and ReLUs with it.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .circuit import NO_BITS

__all__ = ["needed_bits"]


def _used_elements(graph: Graph) -> dict[str, np.ndarray]:
    """Which elements of each tensor reach an output (synthesis removes the rest).

    Walks the graph backwards: an element is used when a consumer that is used
    reads it -- a quantizer or ReLU whose output is not a constant, a dense or
    convolution output through a nonzero weight; other operations
    conservatively use every input element when any output element is used.
    """
    used: dict[str, np.ndarray] = {}
    for name in graph.outputs:
        used[name] = np.ones(graph.tensors[name].shape, bool)
    for node in reversed(graph.nodes):
        out = graph.tensors[node.outputs[0]]
        u_out = used.get(node.outputs[0], np.zeros(out.shape, bool))
        for k, name in enumerate(node.inputs):
            t = graph.tensors[name]
            if node.op in ("quantize", "relu"):
                live = u_out & (np.asarray(out.lo) != np.asarray(out.hi)).reshape(out.shape)
                u_in = live.reshape(t.shape)
            elif node.op == "dense":
                w = np.asarray(node.attrs["kernel"][0])
                u_in = ((w != 0).astype(np.int64) @ u_out.reshape(-1).astype(np.int64) > 0).reshape(t.shape)
            else:
                u_in = np.full(t.shape, bool(np.any(u_out)))
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
    consumers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            consumers.setdefault(name, []).append(node)
    need: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, users in consumers.items():
        t = graph.tensors[name]
        if name in graph.outputs or not t.is_fixed:
            continue
        dead = ~used.get(name, np.zeros(t.shape, bool))
        if any(u.op != "quantize" for u in users):
            if np.any(dead):
                need[name] = (np.where(dead, NO_BITS, 0), np.where(dead, -1, NO_BITS))
            continue
        lo = np.full(t.shape, NO_BITS, np.int64)
        hi = np.full(t.shape, -1, np.int64)
        for u in users:
            k, i, f = (np.asarray(u.attrs[a]).reshape(t.shape) for a in ("k", "i", "f"))
            width = k + i + f
            drop = t.f - f
            low = np.maximum(drop - (1 if u.attrs["rounding"] != "TRN" else 0), 0)
            top = drop + width - 1 if u.attrs["overflow"] == "WRAP" else np.full(t.shape, NO_BITS)
            live = width > 0
            lo = np.where(live, np.minimum(lo, low), lo)
            hi = np.where(live, np.maximum(hi, top), hi)
        need[name] = (np.where(dead, NO_BITS, lo), np.where(dead, -1, hi))
    return need
