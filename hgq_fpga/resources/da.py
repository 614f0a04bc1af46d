"""Distributed arithmetic: the cost of da4ml's adder graph for a constant matrix
(the ``distributed_arithmetic`` strategy; needs the ``da`` extra)."""

from __future__ import annotations

import numpy as np

from ..ir import ops as ir
from .analysis import CircuitAnalysis

__all__ = ["da_cost"]


def da_cost(a: CircuitAnalysis, op: ir.Linear) -> float:
    """da4ml's cost of the kernel of ``op`` (per output position for a convolution)."""
    from ..optional import require_da4ml

    require_da4ml()
    from da4ml.cmvm.api import solve
    from da4ml.cmvm.types import QInterval

    g = a.graph
    km = op.kernel.m
    w2 = np.asarray(km, np.float64).reshape(-1, km.shape[-1]) * 2.0**-op.kernel.f
    src = g.tensors[op.inputs[0]]
    xs = a.signals(op.inputs[0])
    step = 2.0**-src.f
    if isinstance(op, ir.Dense):
        qi = [QInterval(s.lo * step, s.hi * step, step * 2.0 ** min(s.lsb, 60)) if not s.constant
              else QInterval(s.lo * step, s.lo * step, step) for s in xs]
        n_pos = 1
    else:
        # one solve for the window: each tap's interval is the hull over positions
        c = src.shape[-1]
        hull = [QInterval(min(xs[q].lo for q in range(ch, len(xs), c)) * step,
                          max(xs[q].hi for q in range(ch, len(xs), c)) * step, step) for ch in range(c)]
        qi = hull * int(np.prod(km.shape[:-2]))
        n_pos = int(np.prod(g.tensors[op.outputs[0]].shape[:-1]))
    return float(solve(w2, qintervals=qi).cost) * n_pos
