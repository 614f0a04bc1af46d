"""The cost rule of each IR operation (entries of :data:`~hgq_fpga.resources.analysis.COST`).

Each rule costs the concrete circuit of its operation with the cell rules of
:mod:`hgq_fpga.resources.rules` and records the zero low bits of its output.
EBOPs (``sum over multiplications by trained weights of bits(x) * bits(w)``)
are counted from the tensors' and constants' formats, exactly as
``layer.ebops()`` counts them in training.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Op, ops as ir
from .analysis import COST, CircuitAnalysis
from .circuit import NO_BITS, LinearCircuit, add_circuits, kernel_patches, linear_circuits
from .costs import LayerCost
from .rules import dsp_count, max_luts, relu_luts, round_luts, saturate_luts, table_luts, width_of

__all__ = ["ebops"]


@COST.register(ir.Input)
def _input(op: ir.Input, a: CircuitAnalysis) -> None:
    return None


@COST.register(ir.Quantize)
def _quantize(op: ir.Quantize, a: CircuitAnalysis) -> LayerCost:
    g = a.graph
    out = op.outputs[0]
    k, i, f = (np.asarray(v).reshape(-1) for v in (op.k, op.i, op.f))
    width = k + i + f
    a.lsb[out] = np.where(width > 0, g.tensors[out].f - f, NO_BITS).reshape(g.tensors[out].shape)
    row = a.row(op)
    src = g.tensors[op.inputs[0]]
    if not src.is_fixed:
        return row  # the network's input: its format is the port
    sat, rnd = op.overflow != "WRAP", op.rounding != "TRN"
    lut = carry = 0
    for e, s in enumerate(a.signals(op.inputs[0])):
        w = int(width[e])
        if w <= 0 or s.constant:
            continue
        shift = src.f - int(f[e])
        if rnd and shift > 0 and s.lsb < shift:
            carry += round_luts(w + 1)[1]
        if sat:  # bits of the (rounded) input above the output's top bit
            dropped = s.top - max(shift, 0) + (1 if rnd else 0) - (w - 1)
            if dropped > 0:
                lut += saturate_luts(w, dropped)
    row.counts["mux"] += lut
    row.carry += carry
    return row


def _adder_trees(op: Op, a: CircuitAnalysis, circuits: list[LinearCircuit]) -> LayerCost:
    """Cost of one adder tree per output element (shared trees counted once)."""
    out = op.outputs[0]
    a.circuits[out] = circuits
    lsb = [c.tree.root_lsb for c in circuits]
    a.lsb[out] = np.asarray(lsb, np.int64).reshape(a.out_shape(op))
    row = a.row(op)
    seen: dict[int, tuple[int, int, int]] = {}
    for c in circuits:
        key = id(c.tree)
        if key not in seen:
            seen[key] = (c.tree.luts, c.tree.carry,
                         sum(dsp_count(x, w, a.cost_model.family) for x, w in c.dsp_products))
        adder, carry, dsp = seen[key]
        row.counts["adder"] += adder
        row.carry += carry
        row.dsp += dsp
    return row


def _linear(op: Op, a: CircuitAnalysis, *, dsp: bool) -> LayerCost:
    circuits = linear_circuits(a.graph, op, a.signals(op.inputs[0]), dsp=dsp,
                               dsp_min_bits=a.cost_model.dsp_min_bits, caps=a.caps(op.outputs[0]))
    return _adder_trees(op, a, circuits)


@COST.register(ir.Linear)
def _kernel(op: ir.Linear, a: CircuitAnalysis) -> LayerCost:
    if a.strategy == "distributed_arithmetic":
        from .da import da_cost

        row = a.row(op, da=da_cost(a, op))
        a.lsb[op.outputs[0]] = np.zeros(a.out_shape(op), np.int64)
    elif a.strategy == "rtl":
        row = _shared(op, a)
    else:
        row = _linear(op, a, dsp=a.strategy == "Latency")
    row.ebops += ebops(a.graph, op)
    return row


def _shared(op: ir.Linear, a: CircuitAnalysis) -> LayerCost:
    """The RTL backend's dense/conv: a shared adder graph per position (:mod:`.shared`),
    then each output's sign, shift and bias."""
    from .shared import shared_circuits

    positions, circuits = shared_circuits(a.graph, op, a.signals(op.inputs[0]), a.caps(op.outputs[0]), a.prefer)
    a.shared[op.outputs[0]] = positions
    row = _adder_trees(op, a, circuits)
    for p in positions:
        if p.graph is not None:
            row.counts["adder"] += p.graph.luts
            row.carry += p.graph.carry
    return row


@COST.register(ir.Scale)
def _scale(op: ir.Scale, a: CircuitAnalysis) -> LayerCost:
    row = _linear(op, a, dsp=a.strategy == "Latency")
    row.ebops += ebops(a.graph, op)
    return row


@COST.register(ir.AvgPool)
def _avg_pool(op: ir.AvgPool, a: CircuitAnalysis) -> LayerCost:
    return _linear(op, a, dsp=False)


@COST.register(ir.Add)
def _add(op: ir.Add, a: CircuitAnalysis) -> LayerCost:
    xs = [a.signals(n) for n in op.inputs]
    return _adder_trees(op, a, add_circuits(a.graph, op, xs, a.caps(op.outputs[0])))


@COST.register(ir.Relu)
def _relu(op: ir.Relu, a: CircuitAnalysis) -> LayerCost:
    out = op.outputs[0]
    a.lsb[out] = a.lsb.get(op.inputs[0], np.zeros(a.out_shape(op), np.int64))
    need = a.need.get(out)
    lut = 0
    for e, s in enumerate(a.signals(op.inputs[0])):
        if s.signed and s.hi > 0:
            lo, hi = s.lsb, width_of(0, s.hi) - 1
            if need is not None:  # only the bits a wrap-around quantizer keeps
                lo, hi = max(lo, int(need[0].flat[e])), min(hi, int(need[1].flat[e]))
            lut += relu_luts(hi - lo + 1)
    return a.row(op, mux=lut)


def pool_patches(shape: tuple[int, ...], op: ir.MaxPool) -> np.ndarray:
    """Flat input indices of each pooling window (``-1``: padding), one row per output."""
    from ..ir.intmath import im2col

    idx = np.arange(int(np.prod(shape))).reshape((1,) + shape)
    cols = im2col(idx, op.pool, op.strides, (1,) * len(op.pool), op.padding, pad_value=-1)
    return np.moveaxis(cols, -2, -1).reshape(-1, cols.shape[-2])


@COST.register(ir.MaxPool)
def _max_pool(op: ir.MaxPool, a: CircuitAnalysis) -> LayerCost:
    src = op.inputs[0]
    xs = a.signals(src)
    lut = carry = 0
    lsb = []
    for p in pool_patches(a.graph.tensors[src].shape, op):
        live = [xs[q] for q in p.tolist() if q >= 0]
        lsb.append(min(s.lsb for s in live))
        lt, c = max_luts(max(max(s.top + 1 for s in live) - lsb[-1], 0))
        lut += lt * (len(live) - 1)
        carry += c * (len(live) - 1)
    a.lsb[op.outputs[0]] = np.asarray(lsb).reshape(a.out_shape(op))
    row = a.row(op, mux=lut)
    row.carry += carry
    return row


@COST.register(ir.Reshape)
def _reshape(op: ir.Reshape, a: CircuitAnalysis) -> LayerCost:
    src = a.lsb.get(op.inputs[0])
    if src is not None:
        a.lsb[op.outputs[0]] = src.reshape(a.out_shape(op))
    return a.row(op)


@COST.register(ir.Concat)
def _concat(op: ir.Concat, a: CircuitAnalysis) -> LayerCost:
    g = a.graph
    f_out = g.tensors[op.outputs[0]].f
    parts = [a.lsb.get(n, np.zeros(g.tensors[n].shape, np.int64)) + (f_out - g.tensors[n].f) for n in op.inputs]
    a.lsb[op.outputs[0]] = np.concatenate(parts, axis=op.axis)
    return a.row(op)


@COST.register(ir.Table)
def _table(op: ir.Table, a: CircuitAnalysis) -> LayerCost:
    out = a.graph.tensors[op.outputs[0]]
    a.lsb[op.outputs[0]] = np.zeros(out.shape, np.int64)
    tm = np.asarray(op.table.m)
    data_bits = width_of(int(tm.min()), int(tm.max())) if tm.size else 0
    return a.row(op, table=int(np.prod(out.shape)) * table_luts(int(op.width), data_bits))


@COST.register(ir.Multiply)
def _multiply(op: ir.Multiply, a: CircuitAnalysis) -> LayerCost:
    xa, xb = (a.signals(n) for n in op.inputs)
    la, lb = (a.lsb.get(n, np.zeros(a.graph.tensors[n].shape, np.int64)) for n in op.inputs)
    a.lsb[op.outputs[0]] = la + lb
    lut = dsp = 0
    for sa, sb in zip(xa, xb):
        wa, wb = width_of(sa.lo, sa.hi) - sa.lsb, width_of(sb.lo, sb.hi) - sb.lsb
        if wa <= 0 or wb <= 0 or sa.constant or sb.constant:
            continue
        if a.strategy == "Latency" and min(wa, wb) >= a.cost_model.dsp_min_bits:
            dsp += dsp_count(wa, wb, a.cost_model.family)
        else:
            lut += wa * wb  # array multiplier: one LUT per partial-product bit
    row = a.row(op, multiplier=lut)
    row.dsp += dsp
    return row


def ebops(graph: Graph, op: Op) -> float:
    """``sum over multiplications by trained weights of bits(x) * bits(w)``.

    ``bits`` is :attr:`FixedFormat.bits <hgq_fpga.fixed.FixedFormat.bits>` of
    the input tensor's format and of the constant's format: the numbers
    ``layer.ebops()`` uses in training.
    """
    const = op.kernel if isinstance(op, ir.Linear) else getattr(op, "scale", None)
    if const is None or not const.trained:
        return 0.0
    bx = graph.tensors[op.inputs[0]].format().bits.reshape(-1).astype(np.float64)
    bw = const.fmt.bits.astype(np.float64)
    if isinstance(op, ir.Scale):
        return float(np.sum(bx.reshape(-1, bw.size) * bw.reshape(-1)))
    w2 = bw.reshape(-1, bw.shape[-1])
    patches = kernel_patches(graph, op)
    bxp = np.where(patches >= 0, np.concatenate([bx, [0.0]])[patches], 0.0)
    return float(np.sum(bxp @ w2))
