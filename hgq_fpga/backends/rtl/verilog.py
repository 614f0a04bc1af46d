"""Verilog of a model's arithmetic: the circuits the estimator counts, for open-source
logic synthesis (yosys) and simulation (Icarus Verilog).

The module is combinational: every tensor element is a signed wire holding
its integer mantissa at the tensor's scale; linear operations are the adder
trees of :mod:`hgq_fpga.resources.circuit`, each adder an instance of one
small module (``hgq_add``) over the bits where both operands vary, so that
synthesis maps each adder to its own carry chain, as the HLS tools'
operator-per-instance netlists do; quantizers are shifts, rounding increments, wrap-around bit
selections or saturating comparisons.

Supported IR operations: ``quantize`` (every ap_fixed rounding and overflow mode),
``dense``, ``conv``, ``scale``, ``avg_pool``, ``add``, ``relu``, ``max_pool``,
``reshape``, ``concat``, ``multiply`` (``x * y``) and ``table`` (one Verilog
``function`` per distinct table, a ``case`` over the index bits, declared
before the wires; indices up to 16 bits). Wider table indices and operations
without a rule raise :class:`UnsupportedForVerilog`.

Ports: one input vector per model input, ``in0, in1, ...``, and one output
vector per model output, ``out0, ...``; :class:`PortLayout` says where each
element's bits sit, so data can be packed and unpacked (:meth:`PortLayout.pack`,
:meth:`PortLayout.unpack`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...ir import Graph, Op, UnsupportedOp, ops as ir
from ...resources.analysis import analyze
from ...resources.circuit import LinearCircuit, tensor_signals
from ...resources.costs import CostModel
from ...resources.rules import Signal, width_of
from ...resources.shared import check_prefer, scaled
from .ops import RTL_RULES, UnsupportedForVerilog, lit
from .pipeline import Net, classify, operands_of

__all__ = ["ADDER_MODULE", "PortLayout", "RTL_RULES", "UnsupportedForVerilog", "VerilogModule", "Writer", "to_verilog"]


@dataclass
class PortLayout:
    """Bit positions of the elements of one port.

    ``offsets[e]``/``widths[e]``: where element ``e``'s bits are in the vector;
    ``signed[e]``: two's complement or not; ``lsb[e]``: the port holds
    ``mantissa >> lsb[e]`` (the element's zero low bits are not sent);
    ``f``: the tensor's scale (``value = mantissa * 2**-f``).
    """

    name: str
    offsets: list[int]
    widths: list[int]
    signed: list[bool]
    lsb: list[int]
    f: int
    shape: tuple[int, ...]
    tensor: str = ""
    constants: list[int | None] | None = None  # the value of each constant element (no bits on the port)

    @property
    def bits(self) -> int:
        return max((o + w for o, w in zip(self.offsets, self.widths)), default=0)

    def pack(self, mantissas: np.ndarray) -> list[int]:
        """One integer per sample with every element's bits in place."""
        rows = []
        for m in np.asarray(mantissas).reshape(len(mantissas), -1).tolist():
            v = 0
            for e, x in enumerate(m):
                w = self.widths[e]
                if w:
                    v |= ((int(x) >> self.lsb[e]) & ((1 << w) - 1)) << self.offsets[e]
            rows.append(v)
        return rows

    def unpack(self, words: list[int]) -> np.ndarray:
        """Mantissas (Python ints, shape ``(n, *shape)``) from packed integers."""
        out = np.zeros((len(words), len(self.widths)), dtype=object)
        consts = self.constants or [None] * len(self.widths)
        for n, v in enumerate(words):
            for e, (o, w, s, lsb) in enumerate(zip(self.offsets, self.widths, self.signed, self.lsb)):
                if consts[e] is not None:
                    out[n, e] = consts[e]
                    continue
                x = (v >> o) & ((1 << w) - 1) if w else 0
                if s and w and x >> (w - 1):
                    x -= 1 << w
                out[n, e] = x << lsb
        return out.reshape((len(words),) + self.shape)


@dataclass
class VerilogModule:
    """Verilog source and its port layouts."""

    source: str
    top: str
    inputs: list[PortLayout]
    outputs: list[PortLayout]
    #: what :func:`~.project.pipelined` needs: the wires in order, the lookup-table
    #: functions, and each output slice ``(port, hi, lo, expression)``
    nets: list[Net] = field(default_factory=list, repr=False)
    functions: list[str] = field(default_factory=list, repr=False)
    out_assigns: list[tuple[str, int, int, str]] = field(default_factory=list, repr=False)
    adder_instances: bool = True
    #: the circuit analysis the module was written from (what the estimate counts)
    analysis: Any = field(default=None, repr=False)


class Writer:
    """Verilog text being written: wires per tensor element, from the circuit analysis."""

    def __init__(self, graph: Graph, dsp_min_bits: int | None, adder_instances: bool = True,
                 shared: bool = False, prefer: str = "latency") -> None:
        self.g = graph
        self.adder_instances = adder_instances
        self.lines: list[str] = []
        # declarations placed before the wires: Verilog functions (lookup tables) called in wire expressions
        self.functions: list[str] = []
        self.nets: list[Net] = []  # every declared wire, for pipelining
        self.wires: dict[str, list[str]] = {}
        self.n = 0
        self.in_ports: dict[str, PortLayout] = {}
        cm = CostModel(dsp_min_bits=dsp_min_bits if dsp_min_bits is not None else 1 << 30)
        self.analysis = analyze(graph, strategy="rtl" if shared else "Latency", cost_model=cm, prefer=prefer)

    def fresh(self, prefix: str = "w") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def wire(self, s: Signal, expr: str) -> str:
        """A signed wire holding a signal's value (one spare top bit when unsigned)."""
        if s.constant:
            return lit(s.lo, width_of(min(s.lo, 0), max(s.lo, 0)) + 1)
        name = self.fresh()
        w = self._declared(s)
        self.declare(name, w, True, expr, (s.top, min(max(s.lsb, 0), s.top)))
        return name

    def declare(self, name: str, w: int, signed: bool, expr: str, payload: tuple[int, int] | None = None) -> None:
        """Declare wire ``name = expr`` and record it as a :class:`~.pipeline.Net` (``payload``:
        the bits that can vary; default all ``w``)."""
        line = f"wire {'signed ' if signed else ''}[{w - 1}:0] {name} = {expr};"
        self.lines.append(line)
        self.nets.append(Net(name, w, signed, [line], operands_of(expr, name), classify(expr),
                             payload if payload is not None else (w - 1, 0)))

    def signals(self, name: str) -> list[Signal]:
        return self.analysis.signals(name)

    def named(self, w: int, expr: str, signed: bool = True) -> str:
        name = self.fresh("q")
        self.declare(name, max(w, 1), signed, expr)
        return name

    def port_element(self, node: Op, e: int, s: Signal) -> str:
        port = self.in_ports[node.outputs[0]]
        w = port.widths[e]
        if w == 0 or s.constant:
            return lit(s.lo, 2)
        bits = f"{port.name}[{port.offsets[e] + w - 1}:{port.offsets[e]}]"
        v = f"$signed({bits})" if port.signed[e] else f"$signed({{1'b0, {bits}}})"
        return self.wire(s, f"{v} <<< {port.lsb[e]}" if port.lsb[e] else v)

    def linear_common(self, node: Op, circuits: list[LinearCircuit], sources: list[str]) -> None:
        out = node.outputs[0]
        outs = self.signals(out)
        done: dict[tuple[int, tuple[int, ...]], str] = {}
        res = []
        for c, s in zip(circuits, outs):
            key = (id(c.tree), tuple(c.inputs))
            if key not in done:
                done[key] = self._tree(c, sources, s)
            res.append(done[key])
        self.wires[out] = res

    def shared_linear(self, node: Op, sources: list[str]) -> None:
        """A dense/conv node as the analysis's shared adder graphs (one per position),
        then each output's sign, shift and bias (:mod:`~hgq_fpga.resources.shared`)."""
        out = node.outputs[0]
        outs = self.signals(out)
        circuits = self.analysis.circuits[out]
        n_out = int(node.kernel.m.shape[-1])
        res: list[str] = []
        for p in self.analysis.shared[out]:
            g, names = p.graph, []
            if g is not None:
                for src, sh in zip(p.sources, g.input_shifts):
                    names.append(self.wire(g.signals[len(names)], _shift(sources[src], sh + g.extra)))
                for a, sh in zip(g.adders, g.shifts):
                    sb = scaled(g.signals[a.b], sh)
                    b = self.wire(sb, _shift(names[a.b], sh)) if sh else names[a.b]
                    names.append(self._adder(g.signals[a.a], sb, names[a.a], b, a.subtract, g.signals[a.out]))
            for _ in range(n_out):  # each output's sign, shift and bias (or its own tree, without a graph)
                res.append(self._tree(circuits[len(res)], names if g is not None else sources, outs[len(res)]))
        self.wires[out] = res

    def _tree(self, c: LinearCircuit, sources: list[str], out: Signal) -> str:
        t = c.tree
        if t.root is None:
            return lit(0, 2)
        names: list[str] = []
        for term, sig in zip(c.terms, t.signals):
            if term.source is None:
                names.append(lit(term.value, 2))
                continue
            x = sources[c.inputs[term.source]]
            if term.multiplier:
                w = width_of(min(term.multiplier, 0), max(term.multiplier, 0)) + 1
                x = f"{x} * {lit(term.multiplier, w)}"
            # a term is wiring: a wire of its own so adders can slice it. It holds
            # source * 2**shift; the tree applies the term's sign.
            names.append(self.wire(sig, _shift(x, term.shift)))
        for a in t.adders:
            names.append(self._adder(t.signals[a.a], t.signals[a.b], names[a.a], names[a.b],
                                     a.subtract, t.signals[a.out]))
        root = names[t.root]
        if t.sign < 0:
            return self.wire(out, f"-{root}")
        return root

    def _adder(self, sa: Signal, sb: Signal, a: str, b: str, subtract: bool, out: Signal) -> str:
        """``a + b`` or ``a - b`` as an ``hgq_add`` instance over the bits where both
        operands can vary; the low bits of the operand with the lower ``lsb`` are wires."""
        op = "-" if subtract else "+"
        if sa.constant or sb.constant:
            return self._plus_constant(sa, sb, a, b, subtract, out) or self.wire(out, f"{a} {op} {b}")
        p0 = max(sa.lsb, sb.lsb)
        low_name = a if sa.lsb <= sb.lsb else b
        if subtract and low_name == b and p0 > sb.lsb:
            # the subtrahend's low bits are not wires; add them in full
            p0 = min(sa.lsb, sb.lsb)
        parts = []
        for x, s in ((a, sa), (b, sb)):
            if s.top >= p0:
                parts.append((self._bits(x, s, s.top, p0), s.top - p0 + 1, int(s.signed)))
            elif s.signed:
                parts.append((f"{x}[{s.top}]", 1, 1))  # only its sign reaches the adder
            else:
                parts.append(("1'b0", 1, 0))
        wy = out.top - p0 + 1
        low_sig = sa if low_name == a else sb
        if wy <= 0:  # the exact sum fits below p0: it is the low operand's bits there
            return self.wire(out, self._bits(low_name, low_sig, out.top, 0) if out.signed
                             else f"{{1'b0, {self._bits(low_name, low_sig, out.top, 0)}}}")
        y = self.fresh("y")
        if self.adder_instances:
            lines = [f"wire [{wy - 1}:0] {y};",
                     f"hgq_add #(.WA({parts[0][1]}), .WB({parts[1][1]}), .WY({wy}), .SA({parts[0][2]}), "
                     f".SB({parts[1][2]}), .SUB({int(subtract)})) u{y} (.a({parts[0][0]}), .b({parts[1][0]}), .y({y}));"]
        else:  # the same sum as an expression: both operands extended as signed values, then truncated
            a_s, b_s = (f"$signed({x})" if sg else f"$signed({{1'b0, {x}}})" for x, _, sg in parts)
            lines = [f"wire [{wy - 1}:0] {y} = {a_s} {op} {b_s};"]
        self.lines.extend(lines)
        self.nets.append(Net(y, wy, False, lines, operands_of(parts[0][0] + " " + parts[1][0]), "adder",
                             (wy - 1, 0)))
        low = f", {self._bits(low_name, low_sig, p0 - 1, 0)}" if p0 > 0 else ""
        top = "" if out.signed else "1'b0, "
        return self.wire(out, f"{{{top}{y}{low}}}")

    def _plus_constant(self, sa: Signal, sb: Signal, a: str, b: str, subtract: bool, out: Signal) -> str | None:
        """``x + c`` for a constant ``c`` with ``k > 0`` zero low bits (a bias), written as the
        sum it is: ``{x[:k] + (c >> k), x[k-1:0]}``, an adder over the bits at and above ``k``
        only (None for other cases: ``c - x``, two constants, ``c`` odd).

        That is the adder the estimate counts (yosys, the hierarchy kept, narrows ``x + c`` so).
        Written as ``x + c``, flattened yosys merged it with the adder that computes ``x``
        into one three-operand sum (``alumacc``), which it maps as a carry-save layer of
        LUT3-LUT6 and wide multiplexers: more LUTs than the two adders (+18% on an 8x16 layer).
        """
        if sa.constant == sb.constant or (sa.constant and subtract):
            return None
        x, sx, c = (a, sa, -sb.lo if subtract else sb.lo) if sb.constant else (b, sb, sa.lo)
        k = (c & -c).bit_length() - 1 if c else 0
        w = self._declared(out)
        if k <= 0 or k >= w:
            return None
        high = self.fresh()
        self.declare(high, w - k, True, f"{self._bits(x, sx, w - 1, k)} + {lit(c >> k, w - k)}")
        name = self.fresh()
        self.declare(name, w, True, f"{{{high}, {self._bits(x, sx, k - 1, 0)}}}",
                     (out.top, min(max(out.lsb, 0), out.top)))
        return name

    @staticmethod
    def _declared(s: Signal) -> int:
        """The width :meth:`wire` declares for ``s``: its two's complement, one spare top bit when unsigned."""
        return width_of(s.lo, s.hi) + (0 if s.signed else 1)

    @staticmethod
    def _bits(x: str, s: Signal, hi: int, lo: int) -> str:
        """Bits ``[hi:lo]`` of the value of wire ``x`` (declared by :meth:`wire` for
        ``s``), sign- or zero-extended above the wire's width."""
        msb = width_of(s.lo, s.hi) - (1 if s.signed else 0)  # the declared top bit
        if hi <= msb:
            return f"{x}[{hi}:{lo}]"
        ext = hi - max(msb, lo - 1)
        fill = f"{{{ext}{{{x}[{msb}]}}}}"
        return fill if lo > msb else f"{{{fill}, {x}[{msb}:{lo}]}}"


def _shift(x: str, d: int) -> str:
    """Wire ``x`` times ``2**d`` (a negative ``d``: an exact arithmetic right shift)."""
    return f"{x} <<< {d}" if d > 0 else f"{x} >>> {-d}" if d < 0 else x


def _layout(graph: Graph, name: str, port: str, lsb: np.ndarray | None,
            from_format: ir.Quantize | None) -> PortLayout:
    t = graph.tensors[name]
    sig = tensor_signals(graph, name, lsb)
    offsets, widths, signed, lsbs, consts = [], [], [], [], []
    o = 0
    for e, s in enumerate(sig):
        consts.append(int(s.lo) if s.constant else None)
        if s.constant:
            w, low = 0, 0
        else:
            low = s.lsb
            w = width_of(s.lo >> low, s.hi >> low)
            if from_format is not None:  # the input's declared format (k + i + f bits)
                k, i, f = (int(np.asarray(a).reshape(-1)[e]) for a in (from_format.k, from_format.i, from_format.f))
                w = max(k + i + f, 0)
                low = t.f - f
        offsets.append(o)
        widths.append(w)
        signed.append(s.signed)
        lsbs.append(low)
        o += w
    return PortLayout(port, offsets, widths, signed, lsbs, t.f, t.shape, name, consts)


#: One adder; it maps to a carry chain with a LUT at each bit where both inputs
#: vary. The sum is taken one bit wider, over ``{a, 1}`` and ``{b, 0}`` (its lowest
#: bit is a constant 1 and carries nothing; ``y`` is the bits above it), so that no
#: adder reads another's sum as it is: flattened yosys (``alumacc``) otherwise merges
#: an adder whose sum only one adder reads, and cannot overflow, into a
#: multi-operand sum mapped as carry-save logic, which costs up to 18% more or less
#: LUTs than the adders written (BENCHMARKS.md, issue 16).
ADDER_MODULE = """module hgq_add #(parameter WA = 1, WB = 1, WY = 1, SA = 0, SB = 0, SUB = 0) (
    input [WA-1:0] a,
    input [WB-1:0] b,
    output [WY-1:0] y
);
localparam W = (WY > WA ? (WY > WB ? WY : WB) : (WA > WB ? WA : WB));
wire [W-1:0] ae = SA ? {{W{a[WA-1]}}, a} : {{W{1'b0}}, a};
wire [W-1:0] be = SB ? {{W{b[WB-1]}}, b} : {{W{1'b0}}, b};
wire [W:0] s = SUB ? {ae, 1'b1} - {be, 1'b0} : {ae, 1'b1} + {be, 1'b0};
assign y = s[WY:1];
endmodule
"""


def _output_ports(graph: Graph, w: Writer) -> tuple[list[PortLayout], list[tuple[str, int, int, str]]]:
    """The output ports, and each element's wire assigned to its bits of its port."""
    outputs = []
    assigns: list[tuple[str, int, int, str]] = []
    for k, name in enumerate(graph.outputs):
        port = _layout(graph, name, f"out{k}", w.analysis.lsb.get(name), None)
        outputs.append(port)
        for e, wire in enumerate(w.wires[name]):
            if port.widths[e]:
                hi = port.offsets[e] + port.widths[e] - 1
                sh = f" >>> {port.lsb[e]}" if port.lsb[e] else ""
                assigns.append((port.name, hi, port.offsets[e], f"{wire}{sh}"))
    return outputs, assigns


def to_verilog(graph: Graph, *, top: str = "model", dsp_min_bits: int | None = None,
               adder_instances: bool = True, shared: bool = False, prefer: str = "latency") -> VerilogModule:
    """Combinational Verilog of an IR graph.

    Args:
        graph: from :func:`hgq_fpga.build_ir`.
        top: module name (a Verilog identifier).
        dsp_min_bits: when set, constant multiplications with both operands at
            least this wide are written as ``x * c`` (for DSP inference);
            otherwise every multiplication is shifts and adds.
        adder_instances: each adder an ``hgq_add`` instance (so that synthesis
            that keeps the hierarchy maps each to its own carry chain, as the
            estimate counts them); False writes each sum as an expression (the
            same circuit once flattened; simulators elaborate it much faster).
        shared: dense and convolution layers as adder graphs with subexpressions
            shared across outputs (:mod:`~hgq_fpga.resources.shared`, what
            :func:`~hgq_fpga.to_rtl` ships); False: one adder tree per output (the
            circuit the hls4ml Latency estimate counts).
        prefer: with ``shared``, how each layer's graph is chosen
            (:data:`~hgq_fpga.resources.shared.PREFER`): ``"latency"`` or ``"luts"``.

    Raises:
        UnsupportedForVerilog: naming the operation or mode.
    """
    import re

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
        raise ValueError(f"to_verilog: top must be a Verilog identifier. Received: top={top!r}")
    prefer = check_prefer(prefer, "to_verilog")
    try:  # the circuit analysis: every operation needs a cost rule too
        w = Writer(graph, dsp_min_bits, adder_instances, shared, prefer)
    except UnsupportedOp as e:
        raise UnsupportedForVerilog(f"to_verilog needs the circuit analysis. {e}") from None
    # input ports: the quantizers that read the float inputs
    inputs = []
    for node in graph.nodes:
        if isinstance(node, ir.Quantize) and node.inputs[0] in graph.inputs \
                and not graph.tensors[node.inputs[0]].is_fixed:
            port = _layout(graph, node.outputs[0], f"in{len(inputs)}", None, node)
            w.in_ports[node.outputs[0]] = port
            inputs.append(port)
    for node in graph.nodes:
        try:
            RTL_RULES(node, w)
        except UnsupportedOp as e:
            raise UnsupportedForVerilog(str(e)) from None
    outputs, assigns = _output_ports(graph, w)
    ports = [f"input [{max(p.bits, 1) - 1}:0] {p.name}" for p in inputs]
    ports += [f"output [{max(p.bits, 1) - 1}:0] {p.name}" for p in outputs]
    body = [f"assign {p}[{hi}:{lo}] = {x};" for p, hi, lo, x in assigns]
    src = "\n".join([f"module {top}(", ",\n".join("    " + p for p in ports), ");", *w.functions, *w.lines, *body,
                     "endmodule", "", ADDER_MODULE])
    return VerilogModule(src, top, inputs, outputs, w.nets, w.functions, assigns, adder_instances, w.analysis)
