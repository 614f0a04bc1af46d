"""The Verilog of each IR operation (entries of :data:`RTL_RULES`).

A rule reads the wires of the operation's inputs (``wr.wires``) and the
circuit analysis (``wr.analysis``: signals, adder trees) and sets the wires of
its output, one per element. Every value is a wire (``wr.wire``/``wr.named``)
whose expression is one line referring to other wires by name.

Lookup tables (``Table``) are one Verilog ``function`` per distinct table (a
``case`` over the index bits), declared in ``wr.functions`` and called in a
wire expression; element-wise products (``Multiply``) are ``x * y``.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

from ...fixed.modes import OverflowMode, RoundingMode
from ...ir import Registry, ops as ir
from ...resources.cost_rules import pool_patches
from ...resources.rules import Signal, width_of

if TYPE_CHECKING:  # pragma: no cover
    from .verilog import Writer

__all__ = ["RTL_RULES", "UnsupportedForVerilog", "lit"]


class UnsupportedForVerilog(ValueError):
    """An IR operation (or mode) that the Verilog writer does not express."""


#: ``rule(op, writer) -> None``
RTL_RULES = Registry(
    "to_verilog", hint="A new IR operation needs a rule here (RTL_RULES.register) as well as a cost rule."
)

#: Widest lookup-table index written as a Verilog ``case`` (``2**16`` entries;
#: the layers' own ``table_bits`` limit).
MAX_TABLE_BITS = 16

# the lookup-table functions already declared in each Writer: contents -> function name
_TABLE_FUNCTIONS: weakref.WeakKeyDictionary[Writer, dict[tuple[int, int, tuple[int, ...]], str]] = \
    weakref.WeakKeyDictionary()
# the declared width of each wire of a Writer, filled from ``Writer.nets`` as they grow
_DECLARED: weakref.WeakKeyDictionary[Writer, dict[str, int]] = weakref.WeakKeyDictionary()


def lit(v: int, w: int) -> str:
    """A signed Verilog literal of ``v``, at least ``w`` bits wide."""
    v = int(v)
    w = max(w, width_of(min(v, 0), max(v, 0)) + 1, 2)
    return f"-{w}'sd{-v}" if v < 0 else f"{w}'sd{v}"


@RTL_RULES.register(ir.Input)
def _input(op: ir.Input, wr: Writer) -> None:
    return None


def _at_least(wr: Writer, x: str, w: int) -> str:
    """Wire ``x``, or its sign extension to ``w`` bits where ``x`` is declared narrower
    (so that selecting its bits up to ``w - 1`` stays in range)."""
    known = _DECLARED.setdefault(wr, {})
    for net in wr.nets[len(known):]:  # the nets declared since the last call (names are unique)
        known[net.name] = net.width
    have = known.get(x)
    return x if have is not None and have >= w else wr.named(w, x)


def _pick(cond: str | bool, yes: str, no: str) -> str:
    """``cond ? yes : no``, decided here when ``cond`` is known."""
    if isinstance(cond, bool):
        return yes if cond else no
    return f"{cond} ? {yes} : {no}"


def _round_up(x: str, xs: Signal, shift: int, rnd: str) -> str:
    """The rounding increment of ``x >>> shift`` (``shift > 0``): a one-bit expression of
    the dropped bits ``d = x[shift-1:0]``, the sign of ``x`` (the value before rounding,
    as :func:`~hgq_fpga.fixed.core.round_shift` reads it) and, for ``RND_CONV``, the kept
    LSB ``x[shift]``. With ``half = 2**(shift-1)``: ``d >= half`` is the half bit
    ``x[shift-1]``, ``d > half`` the half bit and the sticky OR of the bits below it,
    ``d > 0`` any dropped bit (inexact):

    ===============  ===================================  ================================
    ``RND``          ``d >= half``                        ties up
    ``RND_MIN_INF``  ``d > half``                         ties down
    ``RND_ZERO``     ``x < 0 ? d >= half : d > half``     ties towards zero
    ``RND_INF``      ``x < 0 ? d > half : d >= half``     ties away from zero
    ``RND_CONV``     ``x[shift] ? d >= half : d > half``  ties to the even neighbour
    ``TRN_ZERO``     ``x < 0 ? d > 0 : 0``                inexact negatives up, towards zero
    ===============  ===================================  ================================

    The sign is decided here when ``xs`` has one sign only. ``x`` must be declared at
    least ``shift + 1`` bits wide.
    """
    half = 1 << (shift - 1)
    at_or_above = f"{x}[{shift - 1}]"
    above = f"({x}[{shift - 1}:0] > {lit(half, shift + 1)})" if shift > 1 else "1'b0"  # 1 dropped bit: never
    neg: str | bool = True if xs.hi < 0 else False if xs.lo >= 0 else f"({x} < 0)"
    if rnd == "RND":
        return at_or_above
    if rnd == "RND_MIN_INF":
        return above
    if rnd == "RND_ZERO":
        return _pick(neg, at_or_above, above)
    if rnd == "RND_INF":
        return _pick(neg, above, at_or_above)
    if rnd == "RND_CONV":
        return _pick(f"{x}[{shift}]", at_or_above, above)
    return _pick(neg, f"({x}[{shift - 1}:0] > {lit(0, 2)})", "1'b0")  # TRN_ZERO


def _round(wr: Writer, x: str, xs: Signal, shift: int, wx: int, rnd: str) -> str:
    """``x`` with its ``shift > 0`` low bits dropped, rounded: ``TRN`` the floor ``x >>> shift``;
    ``RND`` ``(x + half) >>> shift`` (the half bit's carry); the other modes the floor plus
    :func:`_round_up`, a one-bit wire (an incrementer). Dropped bits known to be zero
    (``xs.lsb >= shift``) need no rounding."""
    if rnd == "TRN" or (rnd != "RND" and xs.lsb >= shift):
        return wr.named(wx, f"{x} >>> {shift}")
    if rnd == "RND":
        return wr.named(wx + 1, f"({x} + {lit(1 << (shift - 1), wx + 1)}) >>> {shift}")
    x = _at_least(wr, x, shift + 1)
    up = _round_up(x, xs, shift, rnd)
    if up == "1'b0":
        return wr.named(wx, f"{x} >>> {shift}")
    if up != f"{x}[{shift - 1}]":  # not the half bit itself: logic of its own, a one-bit wire
        up = wr.named(1, up, signed=False)
    return wr.named(wx + 1, f"({x} >>> {shift}) + $signed({{1'b0, {up}}})")


def _overflow(wr: Writer, x: str, width: int, k: int, ovf: str) -> str:
    """The signed wire ``x`` into ``width`` bits, signed if ``k`` (range ``[lo, hi]``):

    ============  ==============================================================
    ``WRAP``      the low ``width`` bits (two's complement, or zero-extended)
    ``SAT``       ``x > hi ? hi : (x < lo ? lo : x)``
    ``SAT_SYM``   as ``SAT`` with ``lo = -hi`` when signed and ``width >= 2``
                  (a 1-bit signed type saturates to ``[-1, 0]`` as ``SAT``)
    ``SAT_ZERO``  ``x > hi ? 0 : (x < lo ? 0 : x)``
    ============  ==============================================================
    """
    if ovf == "WRAP":
        raw = wr.named(width, f"{_at_least(wr, x, width)}[{width - 1}:0]", signed=False)
        return f"$signed({raw})" if k else f"$signed({{1'b0, {raw}}})"
    hi = (1 << (width - k)) - 1
    lo = -(1 << (width - 1)) if k else 0
    if ovf == "SAT_SYM" and k and width > 1:
        lo = -hi
    top, bottom = lit(hi, width + 1), lit(lo, width + 1)
    big, small = (lit(0, 2), lit(0, 2)) if ovf == "SAT_ZERO" else (top, bottom)
    return f"({x} > {top}) ? {big} : (({x} < {bottom}) ? {small} : {x})"


def _requantize(wr: Writer, x: str, xs: Signal, shift: int, width: int, k: int, rnd: str, ovf: str) -> str:
    """One element of a quantizer, bit-exact with :func:`~hgq_fpga.ir.exact.quantize_op`:
    ``x`` (signal ``xs``) shifted to the output's ``f`` (``shift`` bits dropped with
    rounding, :func:`_round`, or ``-shift`` zero bits appended), then wrapped or
    saturated to ``width`` bits (:func:`_overflow`)."""
    wx = width_of(min(xs.lo, 0) - 1, max(xs.hi, 0) + 1) + 2 + max(-shift, 0)
    if not x.isidentifier():
        x = wr.named(wx, x)
    if shift > 0:
        x = _round(wr, x, xs, shift, wx, rnd)
    elif shift < 0:
        x = wr.named(wx, f"{x} <<< {-shift}")
    return _overflow(wr, x, width, k, ovf)


@RTL_RULES.register(ir.Quantize)
def _quantize(op: ir.Quantize, wr: Writer) -> None:
    out = op.outputs[0]
    k, i, f = (np.asarray(a).reshape(-1) for a in (op.k, op.i, op.f))
    try:
        rnd, ovf = RoundingMode.from_string(op.rounding).value, OverflowMode.from_string(op.overflow).value
    except (TypeError, ValueError) as e:
        raise UnsupportedForVerilog(
            f"to_verilog: quantizer mode {op.rounding}/{op.overflow} of layer {op.layer!r} is not supported: {e}"
        ) from None
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
        q = _requantize(wr, xs[e], xsig[e], src.f - int(f[e]), width, int(k[e]), rnd, ovf)
        up = f_out - int(f[e])
        res.append(wr.wire(s, f"({q}) <<< {up}" if up else q))
    wr.wires[out] = res


@RTL_RULES.register(*ir.LINEAR_OPS)
def _adder_trees(op: ir.Op, wr: Writer) -> None:
    """The analysis's own adder trees, one per output element."""
    sources = [x for n in op.inputs for x in wr.wires[n]]
    if op.outputs[0] in wr.analysis.shared:
        wr.shared_linear(op, sources)
    else:
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


def _table_function(wr: Writer, width: int, out_width: int, values: list[int], what: str) -> str:
    """The name of a Verilog function ``values[index]`` of a ``width``-bit index,
    returning ``out_width`` signed bits; declared in ``wr.functions`` once per
    distinct table (shared by elements and layers)."""
    known = _TABLE_FUNCTIONS.setdefault(wr, {})
    key = (width, out_width, tuple(values))
    if key in known:
        return known[key]
    name = f"hgq_tbl{len(known) + 1}"
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    common = max(counts, key=lambda v: counts[v])  # the default: only the other entries are listed
    lines = [f"function signed [{out_width - 1}:0] {name};  // {what}, {width}-bit index",
             f"    input [{width - 1}:0] index;",
             "    case (index)"]
    lines += [f"        {width}'d{n}: {name} = {lit(v, out_width)};" for n, v in enumerate(values) if v != common]
    lines += [f"        default: {name} = {lit(common, out_width)};", "    endcase", "endfunction"]
    wr.functions.append("\n".join(lines))
    known[key] = name
    return name


def _table_values(op: ir.Table, wr: Writer) -> tuple[list[int], int]:
    """The table's entries for indices ``0 .. 2**width - 1`` at the output tensor's
    scale, and the signed width that holds them all.

    Raises:
        UnsupportedForVerilog: the index is wider than :data:`MAX_TABLE_BITS`,
            or the table is shorter than its index range or finer than the output.
    """
    width = int(op.width)
    what = f"the {op.function or 'lookup'} table of layer {op.layer!r}"
    if width > MAX_TABLE_BITS:
        raise UnsupportedForVerilog(
            f"to_verilog: {what} has a {width}-bit index ({2 ** width} entries); a Verilog case table is "
            f"limited to {MAX_TABLE_BITS} bits. Lower the bits of that layer's input (f0/f_max of its "
            "input_quantizer, or its table_bits) so that the index fits."
        )
    tm = np.asarray(op.table.m)
    up = wr.g.tensors[op.outputs[0]].f - int(op.table.f)
    if tm.ndim != 1 or tm.size < 1 << width or up < 0:
        raise UnsupportedForVerilog(
            f"to_verilog: {what} has shape {tm.shape} at scale {op.table.f} for a {width}-bit index and an "
            f"output at scale {wr.g.tensors[op.outputs[0]].f}; rebuild the IR (hgq_fpga.build_ir) after calibration"
        )
    values = [int(v) << up for v in tm[: 1 << width].tolist()]
    return values, max(width_of(min(min(values), 0), max(max(values), 0)) + 1, 2)


@RTL_RULES.register(ir.Table)
def _table(op: ir.Table, wr: Writer) -> None:
    """Each element's bit pattern in the index format ``(k, width, f)``: its mantissa
    shifted from the input's scale to ``f``, the low ``width`` bits (two's complement,
    wrapping), as :func:`~hgq_fpga.ir.exact.table_op` forms it; then the table's function."""
    src = wr.g.tensors[op.inputs[0]]
    width = int(op.width)
    sh = int(op.f) - src.f
    if not src.is_fixed:
        raise UnsupportedForVerilog(
            f"to_verilog: the {op.function or 'lookup'} table of layer {op.layer!r} reads the float input "
            f"{src.name!r}; quantize it first (the layer's input_quantizer)"
        )
    if sh < 0:
        raise UnsupportedForVerilog(
            f"to_verilog: the {op.function or 'lookup'} table of layer {op.layer!r} reads a tensor at scale "
            f"{src.f} but indexes at scale {op.f}; quantize its input to at most {op.f} fractional bits"
        )
    values, out_width = _table_values(op, wr)
    fn = _table_function(wr, width, out_width, values, f"{op.function or 'lookup'} table") if width > 0 else ""
    res = []
    for x, xs, s in zip(wr.wires[op.inputs[0]], wr.signals(op.inputs[0]), wr.signals(op.outputs[0])):
        if s.constant:
            res.append(lit(s.lo, 2))
        elif width == 0 or xs.constant:  # a known index: the entry itself
            res.append(wr.wire(s, lit(values[(xs.lo << sh) & ((1 << width) - 1)], out_width)))
        else:
            index = wr.named(width, f"{x} <<< {sh}" if sh else x, signed=False)
            res.append(wr.wire(s, f"{fn}({index})"))
    wr.wires[op.outputs[0]] = res


@RTL_RULES.register(ir.Multiply)
def _multiply(op: ir.Multiply, wr: Writer) -> None:
    """``x * y`` per element (the product's scale is the sum of the inputs' scales),
    shifted to the output tensor's scale."""
    a, b = (wr.g.tensors[n] for n in op.inputs)
    f_out = wr.g.tensors[op.outputs[0]].f
    sh = f_out - (a.f + b.f)
    if sh < 0:
        raise UnsupportedForVerilog(
            f"to_verilog: the product of layer {op.layer!r} is at scale {a.f + b.f} but its output tensor at "
            f"{f_out}; rebuild the IR (hgq_fpga.build_ir)"
        )
    res = []
    for x, y, s in zip(wr.wires[op.inputs[0]], wr.wires[op.inputs[1]], wr.signals(op.outputs[0])):
        if s.constant:
            res.append(lit(s.lo, 2))
        else:
            res.append(wr.wire(s, f"({x} * {y}) <<< {sh}" if sh else f"{x} * {y}"))
    wr.wires[op.outputs[0]] = res
