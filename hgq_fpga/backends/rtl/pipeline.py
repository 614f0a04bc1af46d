"""Pipelining the Verilog of :func:`~hgq_fpga.backends.rtl.to_verilog`: registers
placed so that each stage's estimated logic delay stays under a cutoff.

The combinational writer records every wire it declares as a :class:`Net`
(its operands, an estimated delay, the bits that can vary). :func:`schedule`
walks the nets in order (as soon as possible):

* a net starts in the latest stage of its operands; its arrival time is the
  latest arrival among the operands in that stage plus its own delay;
* if that exceeds ``cutoff`` (and the net is logic, not wiring), the net moves
  to the next stage: its operands are registered at the stage boundary and it
  starts from zero.

An operand from an earlier stage reaches the net through a chain of registers,
one per stage boundary, shared by every net that needs the same copy. A
register holds only the bits of its net that can vary (a signal's low bits
that are always zero, the spare zero bit of an unsigned wire are rebuilt as
constants), so that synthesis finds no constant flip-flop to remove. The
outputs are brought to the last stage and registered once more: the latency
is ``stages`` clock cycles, a property of the project.

Delay model (:class:`DelayModel`, nanoseconds, an UltraScale+-like fabric):
a LUT level with its local routing ``lut``; an adder or comparison of ``w``
bits ``lut + carry_bit * w`` (the carry chain); a lookup table three LUT
levels (a LUT6 and two wide multiplexers); wiring (bit selections, shifts,
concatenations) nothing. It is a model to place registers by, not a timing
report: the build scripts' timing report (Vivado) is the check.

Example:
    >>> m = DelayModel()
    >>> round(m.delay("adder", 16), 3), m.delay("wiring", 16)
    (0.82, 0.0)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

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
    """The schedule: each net's stage, the register copies, and the totals.

    Attributes:
        nets: by name (ports included).
        stages: the number of register boundaries from input to output (the
            latency in clock cycles, the output register included).
        copies: ``(net, k)`` for each register copy of ``net`` ``k`` stages after its own.
        stage_delay: the largest estimated delay within each stage (ns).
        stage_cells: the largest logic depth within each stage (cells; see :meth:`DelayModel.cells`).
    """

    nets: dict[str, Net]
    stages: int
    copies: list[tuple[str, int]] = field(default_factory=list)
    stage_delay: list[float] = field(default_factory=list)
    stage_cells: list[int] = field(default_factory=list)

    def bits(self, name: str) -> int:
        """Flip-flops of one register copy of ``name`` (before unread bits are dropped)."""
        hi, lo = self.nets[name].payload
        return max(hi - lo + 1, 0)


def schedule(nets: list[Net], ports: list[Net], outputs: list[str], cutoff: float, model: DelayModel) -> Pipeline:
    """Assign stages as soon as possible under ``cutoff`` ns per stage (see the module docstring).

    Args:
        nets: in order of declaration (operands first).
        ports: the input ports (stage 0, arrival 0).
        outputs: the nets the output ports read.
        cutoff: the largest estimated logic delay between two registers.
        model: the delays.
    """
    by_name = {p.name: p for p in ports}
    for net in nets:
        ops = [by_name[o] for o in net.operands if o in by_name]
        stage = max((o.stage for o in ops), default=0)
        arrival = max((o.arrival for o in ops if o.stage == stage), default=0.0)
        cells = max((o.cells for o in ops if o.stage == stage), default=0)
        d = model.delay(net.kind, net.width)
        if d > 0 and arrival + d > cutoff and arrival > 0:
            stage, arrival, cells = stage + 1, 0.0, 0
        net.stage, net.arrival, net.cells = stage, arrival + d, cells + model.cells(net.kind, net.width)
        by_name[net.name] = net
    last = max((by_name[o].stage for o in outputs), default=0)
    pipe = Pipeline(by_name, last + 1)
    need: dict[str, int] = {}
    for net in nets:
        for o in net.operands:
            if o in by_name and by_name[o].stage < net.stage:
                need[o] = max(need.get(o, 0), net.stage - by_name[o].stage)
    for o in outputs:
        need[o] = max(need.get(o, 0), last - by_name[o].stage)
    order = {name: i for i, name in enumerate(by_name)}
    pipe.copies = [(name, k) for name in sorted(need, key=order.__getitem__) for k in range(1, need[name] + 1)]
    # logic that no output reads may sit in a later stage than the last output (synthesis removes it)
    pipe.stage_delay = [0.0] * max(pipe.stages, max((n.stage for n in by_name.values()), default=0) + 1)
    pipe.stage_cells = [0] * len(pipe.stage_delay)
    for net in by_name.values():
        pipe.stage_delay[net.stage] = max(pipe.stage_delay[net.stage], net.arrival)
        pipe.stage_cells[net.stage] = max(pipe.stage_cells[net.stage], net.cells)
    return pipe
