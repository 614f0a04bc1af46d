"""Distributed arithmetic: the cost of da4ml's adder graph for a constant matrix
(the ``distributed_arithmetic`` strategy; needs the ``da`` extra)."""

from __future__ import annotations

import os

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
    # the solver options of hls4ml 1.3.0's distributed_arithmetic pass (HWConfig(1, -1, -1), hard_dc from
    # DA_HARD_DC, default 2), so that the cost is that of the adder graph hls4ml builds; adder_size=1 makes
    # da4ml count LUTs (one per adder bit), where its default (-1) counts adders
    hard_dc = int(os.environ.get("DA_HARD_DC", 2))
    pipeline = solve(w2, qintervals=qi, hard_dc=hard_dc, adder_size=1, carry_size=-1, search_all_decompose_dc=True)
    return float(pipeline.cost) * n_pos
