"""The Verilog of each IR operation (entries of :data:`RTL_RULES`).

A rule reads the wires of the operation's inputs (``wr.wires``) and the
circuit analysis (``wr.analysis``: signals, adder trees) and sets the wires of
its output, one per element.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...ir import Registry
from ...ir import ops as ir
from ...resources.cost_rules import pool_patches
from ...resources.rules import Signal, width_of

if TYPE_CHECKING:  # pragma: no cover
    from .verilog import Writer

__all__ = ["RTL_RULES", "UnsupportedForVerilog", "lit"]


class UnsupportedForVerilog(ValueError):
    """An IR operation (or mode) that the Verilog writer does not express."""


#: ``rule(op, writer) -> None``
RTL_RULES = Registry("to_verilog", hint="Lookup tables and element-wise products have no Verilog form yet.")


def lit(v: int, w: int) -> str:
    """A signed Verilog literal of ``v``, at least ``w`` bits wide."""
    v = int(v)
    w = max(w, width_of(min(v, 0), max(v, 0)) + 1, 2)
    return f"-{w}'sd{-v}" if v < 0 else f"{w}'sd{v}"


@RTL_RULES.register(ir.Input)
def _input(op: ir.Input, wr: Writer) -> None:
    return None


def _requantize(wr: Writer, x: str, xs: Signal, shift: int, width: int, k: int, rnd: str, ovf: str) -> str:
    """One element: shift to the output's ``f`` (rounding), then wrap or saturate to ``width`` bits."""
    wx = width_of(min(xs.lo, 0) - 1, max(xs.hi, 0) + 1) + 2 + max(-shift, 0)
    if not x.isidentifier():
        x = wr.named(wx, x)
    if shift > 0:
        if rnd == "RND":
            x = wr.named(wx + 1, f"({x} + {lit(1 << (shift - 1), wx + 1)}) >>> {shift}")
        else:
            x = wr.named(wx, f"{x} >>> {shift}")
    elif shift < 0:
        x = wr.named(wx, f"{x} <<< {-shift}")
    if ovf == "WRAP":
        raw = wr.named(width, f"{x}[{width - 1}:0]", signed=False)
        return f"$signed({raw})" if k else f"$signed({{1'b0, {raw}}})"
    hi = (1 << (width - k)) - 1
    lo = (-hi if ovf == "SAT_SYM" else -(1 << (width - 1))) if k else 0
    return f"({x} > {lit(hi, width + 1)}) ? {lit(hi, width + 1)} : (({x} < {lit(lo, width + 1)}) ? {lit(lo, width + 1)} : {x})"


@RTL_RULES.register(ir.Quantize)
def _quantize(op: ir.Quantize, wr: Writer) -> None:
    out = op.outputs[0]
    k, i, f = (np.asarray(a).reshape(-1) for a in (op.k, op.i, op.f))
    if op.rounding not in ("TRN", "RND") or op.overflow not in ("WRAP", "SAT", "SAT_SYM"):
        raise UnsupportedForVerilog(
            f"to_verilog: quantizer mode {op.rounding}/{op.overflow} of layer {op.layer!r} is not supported; "
            "use rounding TRN or RND and overflow WRAP, SAT or SAT_SYM"
        )
    f_out = wr.g.tensors[out].f
    src = wr.g.tensors[op.inputs[0]]
    outs = wr.signals(out)
    if not src.is_fixed:
        wr.wires[out] = [wr.port_element(op, e, s) for e, s in enumerate(outs)]
        return
    xs, xsig = wr.wires[op.inputs[0]], wr.signals(op.inputs[0])
    res = []
    for e, s in enumerate(outs):
        width = int(k[e] + i[e] + f[e])
        if width <= 0 or s.constant:
            res.append(lit(s.lo, 2))
            continue
        q = _requantize(wr, xs[e], xsig[e], src.f - int(f[e]), width, int(k[e]), op.rounding, op.overflow)
        up = f_out - int(f[e])
        res.append(wr.wire(s, f"({q}) <<< {up}" if up else q))
    wr.wires[out] = res


@RTL_RULES.register(*ir.LINEAR_OPS)
def _adder_trees(op: ir.Op, wr: Writer) -> None:
    """The analysis's own adder trees, one per output element."""
    sources = [x for n in op.inputs for x in wr.wires[n]]
    wr.linear_common(op, wr.analysis.circuits[op.outputs[0]], sources)


@RTL_RULES.register(ir.Relu)
def _relu(op: ir.Relu, wr: Writer) -> None:
    res = []
    for x, s, o in zip(wr.wires[op.inputs[0]], wr.signals(op.inputs[0]), wr.signals(op.outputs[0])):
        if o.constant:
            res.append(lit(o.lo, 2))
        elif not s.signed:
            res.append(x)
        else:
            res.append(wr.wire(o, f"({x} < 0) ? {lit(0, 2)} : {x}"))
    wr.wires[op.outputs[0]] = res


@RTL_RULES.register(ir.MaxPool)
def _max_pool(op: ir.MaxPool, wr: Writer) -> None:
    src = op.inputs[0]
    xs, sig = wr.wires[src], wr.signals(src)
    res = []
    for p in pool_patches(wr.g.tensors[src].shape, op):
        live = [q for q in p.tolist() if q >= 0]
        cur, cs = xs[live[0]], sig[live[0]]
        for q in live[1:]:
            s = Signal(max(cs.lo, sig[q].lo), max(cs.hi, sig[q].hi), min(cs.lsb, sig[q].lsb))
            cur, cs = wr.wire(s, f"({cur} > {xs[q]}) ? {cur} : {xs[q]}"), s
        res.append(cur)
    wr.wires[op.outputs[0]] = res


@RTL_RULES.register(ir.Reshape)
def _reshape(op: ir.Reshape, wr: Writer) -> None:
    wr.wires[op.outputs[0]] = list(wr.wires[op.inputs[0]])


@RTL_RULES.register(ir.Concat)
def _concat(op: ir.Concat, wr: Writer) -> None:
    g = wr.g
    f_out = g.tensors[op.outputs[0]].f
    parts = []
    for n in op.inputs:
        sh = f_out - g.tensors[n].f
        ws = [x if sh == 0 else wr.wire(s.shifted(sh), f"{x} <<< {sh}") for x, s in zip(wr.wires[n], wr.signals(n))]
        parts.append(np.array(ws, dtype=object).reshape(g.tensors[n].shape))
    wr.wires[op.outputs[0]] = np.concatenate(parts, axis=op.axis).reshape(-1).tolist()
