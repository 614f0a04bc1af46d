"""Pipelining the Verilog of :func:`~hgq_fpga.backends.rtl.to_verilog`: which bits are
registered where, so that each stage's estimated logic delay stays under a cutoff.

The combinational writer records every wire it declares as a :class:`Net`.
:func:`~.bits.values` reads each wire bit by bit: a bit is a constant, the very
bit of a *root* (an input port, or a wire with logic: an adder, a comparison, a
table), or a function of some root bits. A wire that is only constants and root
bits is *wiring* (shifts, slices, concatenations, sign extensions): no logic, no
delay and no register of its own; a later stage rebuilds it from the registered
root bits. Two logic wires with the same expression on the same bits are one
root (synthesis merges them). Only root bits are registered, each once per stage
boundary it crosses, so that no two flip-flops hold the same bit.

Demand runs back from the output ports: a root bit is *demanded* when a demanded
bit depends on it (an adder's bit ``j`` on its operands' bits up to ``j``, a sign
test on the sign bit, ...); a root bit is registered only up to the last stage
that reads it.

:func:`schedule` places the demanded roots into stages:

* the latency is that of the as-soon-as-possible (ASAP) schedule: a root starts
  in the latest stage of the roots it reads; its arrival is the latest arrival
  among those in that stage plus its own delay; past ``cutoff`` (after at least
  one other root in that stage: a root slower than the cutoff alone gets a
  stage to itself) it moves to the next stage;
* within that latency the stages minimise the register bits: the bits of a root
  that the same readers read cost one flip-flop each per boundary from the
  root's stage to the last reader's (the outputs read after the last stage).
  With a stage ``r`` per root this is a linear program in differences (``r(c) >=
  r(p)`` for each read, ``r(c) >= r(p) + 1`` where the longest path from ``p`` to
  ``c`` exceeds the cutoff, so that every stage keeps to it), whose optimum is
  integral: minimum-register retiming. HiGHS (scipy) solves it; should scipy be
  missing or a solution not be a valid schedule, the ASAP stages stay.

Counting (:attr:`Pipeline.ff`) follows synthesis (yosys ``synth_xilinx``, as
Vivado): a register read only by the next one of its chain, three or more in a
row, becomes a shift-register LUT (SRL16E/SRLC32E, :attr:`Pipeline.srl`) rather
than flip-flops; ``ff`` counts the flip-flops that remain.

Delay model (:class:`DelayModel`, nanoseconds, an UltraScale+-like fabric):
a LUT level with its local routing ``lut``; an adder or comparison of ``w``
bits ``lut + carry_bit * w`` (the carry chain); a lookup table three LUT
levels (a LUT6 and two wide multiplexers); wiring nothing. It is a model to
place registers by, not a timing report: the build scripts' timing report
(Vivado) is the check.

Example:
    >>> m = DelayModel()
    >>> round(m.delay("adder", 16), 3), m.delay("wiring", 16)
    (0.82, 0.0)
"""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from .bits import Bit, Values, values

__all__ = ["DelayModel", "Net", "Pipeline", "classify", "operands_of", "schedule"]

#: the identifiers the writer generates for wires (``w12``, ``q3``, ``y7``) and input ports (``in0``)
NAME = re.compile(r"\b(?:[wqy]\d+|in\d+)\b")

@dataclass(frozen=True)
class DelayModel:
    """Estimated delays in ns (see the module docstring)."""

    lut: float = 0.5
    carry_bit: float = 0.02
    table_levels: int = 3

    def delay(self, kind: str, width: int) -> float:
        """The delay of a net of ``kind`` (:func:`classify`) and ``width`` bits."""
        if kind == "wiring":
            return 0.0
        if kind in ("adder", "compare"):
            return self.lut + self.carry_bit * width
        if kind == "mux":
            return self.lut
        if kind == "table":
            return self.lut * self.table_levels
        if kind == "multiply":  # an array of adders: about log2(w) adder levels
            return (self.lut + self.carry_bit * width) * max(1, math.ceil(math.log2(max(width, 2))))
        raise ValueError(f"DelayModel: unknown kind {kind!r}")

    def cells(self, kind: str, width: int) -> int:
        """Cells on the net's longest path (a LUT, and one CARRY4 per 4 bits of a chain): the
        logic depth that ``yosys ltp`` reports, for checking a stage's depth."""
        if kind == "wiring":
            return 0
        if kind in ("adder", "compare"):
            return 1 + math.ceil(width / 4)
        if kind == "mux":
            return 1
        if kind == "table":
            return self.table_levels
        return (1 + math.ceil(width / 4)) * max(1, math.ceil(math.log2(max(width, 2))))


def classify(expr: str) -> str:
    """The kind of a wire's expression: ``table``, ``multiply``, ``compare`` (a conditional
    on a comparison with a constant other than 0), ``mux`` (a conditional on a sign, or a
    comparison of two wires), ``adder`` (a sum, difference or negation) or ``wiring``.

    >>> classify("w3 <<< 2"), classify("-w4"), classify("(w5 < 0) ? 2'sd0 : w5"), classify("(q1 > 5'sd7) ? 5'sd7 : q1")
    ('wiring', 'adder', 'mux', 'compare')
    """
    if "hgq_tbl" in expr:
        return "table"
    if " * " in expr:
        return "multiply"
    if "?" in expr:
        return "compare" if re.search(r"[<>] -?\d+'sd[1-9]", expr) else "mux"
    if re.search(r"[\w)\]] [+-] ", expr) or re.match(r"-\s*[wqy]\d", expr):
        return "adder"
    return "wiring"


def operands_of(text: str, own: str = "") -> list[str]:
    """The wire and port names ``text`` reads (``own`` excluded), in order of appearance."""
    seen: dict[str, None] = {}
    for m in NAME.findall(text):
        if m != own:
            seen[m] = None
    return list(seen)


@dataclass
class Net:
    """One declared wire: its Verilog lines, operands, kind and the bits that can vary.

    ``payload = (hi, lo)``: bits ``hi..lo`` vary; bits above ``hi`` are zero (an
    unsigned wire's spare bit) or absent, bits below ``lo`` are zero.
    """

    name: str
    width: int
    signed: bool
    lines: list[str]
    operands: list[str]
    kind: str
    payload: tuple[int, int]
    stage: int = 0
    arrival: float = 0.0
    cells: int = 0


@dataclass
class Pipeline:
    """The schedule: each net's stage, the registers, and the totals.

    Attributes:
        nets: by name (ports included); ``stage`` is a root's stage, a wiring net's
            latest root stage.
        stages: the number of register boundaries from input to output (the
            latency in clock cycles, the output register included).
        copies: ``(root, k)`` for each register of ``root`` ``k`` stages after its own.
        stage_delay: the largest estimated delay within each stage (ns).
        stage_cells: the largest logic depth within each stage (cells; see :meth:`DelayModel.cells`).
        bits_of: each net's bits (see :data:`Bit`) by name.
        roots: the roots that are demanded (their logic is kept), ports included.
        regs: ``(root, k) -> [bit, ...]``: the bits register ``k`` of ``root`` holds, ascending.
        aliases: a logic net whose every bit is an earlier root's -> the root of its first.
        logic: every root that is a wire (demanded or not).
        dead: the logic nets nothing demands (and their aliases), in stage 0.
        taps: ``(root, k) -> {bit, ...}``: the bits of ``root`` read ``k`` stages after its own.
        masked: the nets whose payload's zeros the clocked module writes (:attr:`.bits.Values.masked`).
        outputs: the bits of each output slice.
        ff, srl: the flip-flops and shift-register LUTs that synthesis makes of the registers
            and the valid chain (see :func:`_chain_cells`).
    """

    nets: dict[str, Net]
    stages: int
    copies: list[tuple[str, int]] = field(default_factory=list)
    stage_delay: list[float] = field(default_factory=list)
    stage_cells: list[int] = field(default_factory=list)
    bits_of: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    roots: set[str] = field(default_factory=set, repr=False)
    regs: dict[tuple[str, int], list[int]] = field(default_factory=dict, repr=False)
    aliases: dict[str, str] = field(default_factory=dict, repr=False)
    logic: set[str] = field(default_factory=set, repr=False)
    dead: set[str] = field(default_factory=set, repr=False)
    taps: dict[tuple[str, int], set[int]] = field(default_factory=dict, repr=False)
    masked: set[str] = field(default_factory=set, repr=False)
    ff: int = 0
    srl: int = 0
    outputs: list[list[Any]] = field(default_factory=list, repr=False)

    def bits(self, name: str) -> int:
        """Flip-flops of the first register of ``name`` (0 when it has none)."""
        return len(self.regs.get((name, 1), ()))

    @property
    def bits_registered(self) -> int:
        """The register bits (the output register included; the valid chain not)."""
        return sum(len(v) for v in self.regs.values())


# -- the roots and their stages --------------------------------------------------------------------

@dataclass
class _Graph:
    """The demanded roots (ports first, then in order of declaration) and what they read."""

    names: list[str]
    port: list[bool]
    d: list[float]
    cells: list[int]
    reads: list[dict[str, set[int]]]  # the root bits (by root) the demanded bits depend on
    preds: list[list[int]]
    cons: list[list[int]]
    out: list[bool]
    groups: list[list[tuple[tuple[int, ...], tuple[int, ...]]]]  # (bits, their readers; -1 the outputs) per root


def _graph(nets: list[Net], ports: list[Net], vals: Values, out_bits: list[Bit], model: DelayModel) -> _Graph:
    """Demand from the outputs back (see the module docstring), and the graph of demanded roots."""
    demand: dict[str, set[int]] = {p.name: set() for p in ports}
    outs: dict[str, set[int]] = {}
    for v in out_bits:
        if v.__class__ is tuple:
            demand.setdefault(v[0], set()).add(v[1])
            outs.setdefault(v[0], set()).add(v[1])
    reads: dict[str, dict[str, set[int]]] = {p.name: {} for p in ports}
    for net in reversed(nets):
        own = demand.get(net.name)
        if own and net.name in vals.deps:
            deps, by_root = vals.deps[net.name], {}
            for r, j in frozenset().union(*(deps[j] for j in own)):
                by_root.setdefault(r, set()).add(j)
            reads[net.name] = by_root
            for r, js in by_root.items():
                demand.setdefault(r, set()).update(js)
    live = ports + [n for n in nets if n.name in reads]
    index = {n.name: i for i, n in enumerate(live)}
    preds = [sorted(index[r] for r in reads[n.name]) for n in live]
    cons: list[list[int]] = [[] for _ in live]
    for i, ps in enumerate(preds):
        for p in ps:
            cons[p].append(i)
    n_ports = len(ports)
    return _Graph([n.name for n in live], [i < n_ports for i in range(len(live))],
                  [0.0 if i < n_ports else model.delay(n.kind, n.width) for i, n in enumerate(live)],
                  [0 if i < n_ports else model.cells(n.kind, n.width) for i, n in enumerate(live)],
                  [reads[n.name] for n in live], preds, cons, [n.name in outs for n in live],
                  [_groups(n.name, [live[c].name for c in cons[i]], cons[i], reads, outs) for i, n in enumerate(live)])


def _groups(name: str, readers: list[str], index: list[int], reads: dict[str, dict[str, set[int]]],
            outs: dict[str, set[int]]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """A root's bits grouped by their readers: ``(bits, reader indices)``, -1 for the outputs."""
    sig: dict[int, int] = {}
    for k, c in enumerate(readers):
        for j in reads[c][name]:
            sig[j] = sig.get(j, 0) | 1 << (k + 1)
    for j in outs.get(name, ()):
        sig[j] = sig.get(j, 0) | 1
    bits: dict[int, list[int]] = {}
    for j, mask in sorted(sig.items()):
        bits.setdefault(mask, []).append(j)
    who = [-1] + index
    return [(tuple(js), tuple(w for k, w in enumerate(who) if mask >> k & 1)) for mask, js in bits.items()]


def _fits(before: float, d: float, cutoff: float) -> bool:
    """Whether a root of delay ``d`` may follow ``before`` ns of logic in its stage."""
    return d == 0 or before == 0 or before + d <= cutoff


def _asap(g: _Graph, cutoff: float) -> list[int]:
    """The earliest stage of each root (see the module docstring)."""
    stage, arr = [0] * len(g.names), [0.0] * len(g.names)
    for i, ps in enumerate(g.preds):
        if g.port[i]:
            continue
        s = max((stage[p] for p in ps), default=0)
        a = max((arr[p] for p in ps if stage[p] == s), default=0.0)
        if not _fits(a, g.d[i], cutoff):
            s, a = s + 1, 0.0
        stage[i], arr[i] = s, a + g.d[i]
    return stage


def _alap(g: _Graph, last: int, cutoff: float) -> list[int]:
    """The latest stage of each root such that everything after it fits in stages up to ``last``."""
    stage, dep = [0] * len(g.names), [0.0] * len(g.names)
    for i in reversed(range(len(g.names))):
        if g.port[i]:
            continue
        s = min([stage[c] for c in g.cons[i]] + [last])
        after = max((dep[c] for c in g.cons[i] if stage[c] == s), default=0.0)
        if not _fits(after, g.d[i], cutoff):
            s, after = s - 1, 0.0
        stage[i], dep[i] = s, g.d[i] + after
    return stage


def _pairs(g: _Graph, cutoff: float) -> list[tuple[int, int]]:
    """``(p, c)``: roots that cannot share a stage, the longest path from ``p`` to ``c`` being
    over the cutoff (only the first such ``c`` on each path from ``p``)."""
    out = []
    for p, dp in enumerate(g.d):
        if dp == 0:
            continue
        longest, heap = {p: dp}, [p]
        while heap:  # in order of declaration: each longest path is final when popped
            x = heapq.heappop(heap)
            if x != p and g.d[x] > 0 and longest[x] > cutoff:
                out.append((p, x))
                continue
            for c in g.cons[x]:
                if c not in longest:
                    heapq.heappush(heap, c)
                longest[c] = max(longest.get(c, 0.0), longest[x] + g.d[c])
    return out


def _program(g: _Graph, stages: int, lo: list[int], hi: list[int], pairs: list[tuple[int, int]],
             ) -> tuple[list[float], list[tuple[int, int]], list[int], list[int], list[int]]:
    """The linear program of :func:`_min_registers`: costs and bounds of the variables (each
    root's stage, then the last reader's stage of some bit groups) and the rows
    ``x[plus] - x[minus] <= rhs``."""
    col = {i: k for k, i in enumerate(i for i in range(len(g.names)) if not g.port[i])}
    cost, bounds = [0.0] * len(col), [(lo[i], hi[i]) for i in col]
    plus, minus, rhs = [], [], []
    for c in col:  # r(c) >= r(p), unless the bounds say so already
        for p in g.preds[c]:
            if p in col and hi[p] > lo[c]:
                plus.append(col[p]), minus.append(col[c]), rhs.append(0)
    for p, c in pairs:  # r(c) >= r(p) + 1
        if hi[p] >= lo[c]:
            plus.append(col[p]), minus.append(col[c]), rhs.append(-1)
    for u, groups in enumerate(g.groups):
        for bits, who in groups:  # the bits from u's stage to the last of their readers'
            if u in col:
                cost[col[u]] -= len(bits)
            if who[0] == -1:  # read after the last stage
                continue
            if len(who) == 1:
                cost[col[who[0]]] += len(bits)
                continue
            cost.append(len(bits))  # the last reader's stage: a variable at least each reader's
            least = max(lo[c] for c in who)  # (those that cannot be later than that need no row)
            bounds.append((least, stages))
            for c in who:
                if hi[c] > least:
                    plus.append(col[c]), minus.append(len(cost) - 1), rhs.append(0)
    return cost, bounds, plus, minus, rhs


def _min_registers(g: _Graph, stages: int, lo: list[int], hi: list[int], pairs: list[tuple[int, int]],
                   ) -> list[int] | None:
    """The stages (within ``lo..hi``) with the fewest register bits (see the module docstring),
    or None without scipy or an integral solution."""
    try:
        import numpy as np
        from scipy.optimize import linprog
        from scipy.sparse import csr_matrix
    except ImportError:  # pragma: no cover
        return None
    cost, bounds, plus, minus, rhs = _program(g, stages, lo, hi, pairs)
    if not rhs:
        return lo
    n = len(rhs)
    a = csr_matrix((np.tile([1.0, -1.0], n), (np.repeat(np.arange(n), 2), np.column_stack([plus, minus]).ravel())),
                   shape=(n, len(cost)))
    res = linprog(np.array(cost), A_ub=a, b_ub=np.array(rhs, dtype=float), bounds=bounds, method="highs")
    if res.status != 0:
        return None
    x = np.rint(res.x).astype(np.int64)
    b = np.array(bounds)
    if np.any(x[plus] - x[minus] > np.array(rhs)) or np.any(x < b[:, 0]) or np.any(x > b[:, 1]):
        return None
    free = iter(x.tolist())
    return [lo[i] if g.port[i] else next(free) for i in range(len(g.names))]


def schedule(nets: list[Net], ports: list[Net], outputs: Sequence[tuple[int, str]], cutoff: float,
             model: DelayModel, functions: Sequence[str] = ()) -> Pipeline:
    """Stages and registers under ``cutoff`` ns per stage (see the module docstring).

    Args:
        nets: in order of declaration (operands first).
        ports: the input ports (stage 0).
        outputs: each output slice's width and expression.
        cutoff: the largest estimated logic delay between two registers.
        model: the delays.
        functions: the Verilog functions the expressions call (lookup tables).
    """
    vals = values(nets, ports, functions)
    slices = [vals.eval(x, w) for w, x in outputs]
    out_bits = [v for bits in slices for v in bits]
    g = _graph(nets, ports, vals, out_bits, model)
    asap = _asap(g, cutoff)
    stages = max((s for s, o in zip(asap, g.out) if o), default=0) + 1
    stage = _min_registers(g, stages, asap, _alap(g, stages - 1, cutoff), _pairs(g, cutoff)) or asap
    pipe = _pipeline(nets, ports, g, stage, stages, vals, out_bits)
    pipe.outputs = slices
    return pipe


def _pipeline(nets: list[Net], ports: list[Net], g: _Graph, stage: list[int], stages: int, vals: Values,
              out_bits: list[Bit]) -> Pipeline:
    """The registers of a schedule: each root bit from its stage to its last reader's."""
    pipe = Pipeline({n.name: n for n in ports + nets}, stages, bits_of=vals.bits, roots=set(g.names),
                    aliases=vals.aliases, logic=set(vals.deps), masked=vals.masked)
    pipe.stage_delay, pipe.stage_cells = [0.0] * stages, [0] * stages
    for i, name in enumerate(g.names):
        net = pipe.nets[name]
        same = [p for p in g.preds[i] if stage[p] == stage[i]]
        net.stage = stage[i]
        net.arrival = max((pipe.nets[g.names[p]].arrival for p in same), default=0.0) + g.d[i]
        net.cells = max((pipe.nets[g.names[p]].cells for p in same), default=0) + g.cells[i]
        pipe.stage_delay[net.stage] = max(pipe.stage_delay[net.stage], net.arrival)
        pipe.stage_cells[net.stage] = max(pipe.stage_cells[net.stage], net.cells)
    pipe.ff, pipe.srl = _chain_cells([stages])  # the valid bit
    for i, name in enumerate(g.names):
        spans = []
        for bits, who in g.groups[i]:  # registers between the root's stage and each reader's
            at = {stages if c == -1 else stage[c] for c in who}
            taps = sorted(at - {stage[i]})
            if taps:
                for t in taps:
                    pipe.taps.setdefault((name, t - stage[i]), set()).update(bits)
                runs = [b - a for a, b in zip([stage[i]] + taps, taps)]
                reset = 0 if stage[i] in at else sum((name, j) in vals.resets for j in bits)
                for n, chain in ((len(bits) - reset, runs), (reset, [1, runs[0] - 1] + runs[1:])):
                    ff, srl = _chain_cells(chain)  # (a first register taking in a multiplexer: not shifted)
                    pipe.ff, pipe.srl = pipe.ff + ff * n, pipe.srl + srl * n
                spans += [(j, taps[-1] - stage[i]) for j in bits]
        spans.sort()
        for k in range(1, max((n for _, n in spans), default=0) + 1):
            pipe.regs[(name, k)] = [j for j, n in spans if n >= k]
            pipe.copies.append((name, k))
    pipe.dead = {n for n in pipe.logic if n not in pipe.roots}
    pipe.dead |= {a for a in vals.aliases if not any(v.__class__ is tuple and v[0] in pipe.roots
                                                     for v in vals.bits[a])}
    for net in nets:
        if net.name not in pipe.roots:  # wiring: in the stage of its latest root (dead logic: 0)
            net.stage = 0 if net.name in pipe.dead else max(
                (pipe.nets[v[0]].stage for v in vals.bits[net.name] if v.__class__ is tuple and v[0] in pipe.roots),
                default=0)
    return pipe


def _chain_cells(runs: list[int]) -> tuple[int, int]:
    """Flip-flops and shift-register LUTs of one bit's registers: ``runs`` of registers, each
    read only by the next but the last of its run. Synthesis (yosys ``xilinx_srl -fixed
    -minlen 3``, as Vivado) packs a run of 3 or more into SRL16E/SRLC32E cells, keeping one
    flip-flop when the depth is 1 more than a multiple of 16 (17, 33, ...)."""
    ff = srl = 0
    for n in runs:
        if n < 3:
            ff += n
        else:
            extra = int(n % 16 == 1)
            ff, srl = ff + extra, srl + (1 if n - extra <= 16 else -(-(n - extra) // 32))
    return ff, srl
