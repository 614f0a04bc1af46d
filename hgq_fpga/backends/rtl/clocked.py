"""The clocked top module: the combinational Verilog of :func:`to_verilog` with
the registers of :func:`~.pipeline.schedule`.

Ports: ``clk``; ``in_valid`` and ``out_valid`` (``in_valid`` delayed by the
latency: which output words belong to an input); ``in0, ...`` and
``out0, ...`` laid out as in the combinational module (:class:`PortLayout`).
An input word presented at a rising edge's setup time appears on the outputs
``latency`` rising edges later; a new word can be presented every cycle.
Inputs are not registered in the module (drive them from registers); outputs
are. There is no reset: the data path needs none, and ``out_valid`` is
meaningful once ``in_valid`` has been low (or high) for ``latency`` cycles.

The body, stage by stage:

* ``reg <root>_r<k>``: the bits of a root (an input port or a wire with logic)
  that some stage ``k`` or more after the root's own reads, shifted on from
  ``<root>_r<k-1>``; the first register reads them from the wires the later
  logic reads (so that synthesis sees the combinational module's readers);
* ``wire <net>_p<k>``: a net's value ``k`` stages after its own, bit by bit from
  those registers (the bits nobody there reads are 0);
* each root's own lines (every logic wire of the combinational module, each
  adder instance included), and the wiring they read, in its stage;
* the output ports: ``assign out<n> = {...}`` from the registers after the last
  stage, the output register.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .pipeline import NAME, DelayModel, Net, Pipeline, schedule
from .verilog import ADDER_MODULE, PortLayout, VerilogModule

__all__ = ["ClockedModule", "pipelined"]


@dataclass
class ClockedModule:
    """A pipelined module and its counts.

    Attributes:
        source: the Verilog (the top module, then ``hgq_add``).
        top: the top module's name.
        inputs, outputs: the data ports' layouts.
        latency: clock cycles from an input word to its output word.
        ff: flip-flops (pipeline registers, output registers, the valid chain) as synthesis keeps
            them, the chains it packs into shift-register LUTs excepted (see :mod:`.pipeline`).
        clock_period, cutoff: ns; the clock the registers were placed for, and the
            estimated logic delay allowed per stage.
        pipeline: the schedule (stages, register copies, delay per stage).
        srl: the shift-register LUTs (SRL16E/SRLC32E) synthesis makes of register chains.
    """

    source: str
    top: str
    inputs: list[PortLayout]
    outputs: list[PortLayout]
    latency: int
    ff: int
    clock_period: float
    cutoff: float
    pipeline: Pipeline
    srl: int = 0

    @property
    def latency_ns(self) -> float:
        """``latency * clock_period``."""
        return self.latency * self.clock_period


def default_cutoff(clock_period: float) -> float:
    """The logic delay allowed per stage when not given: 70% of the period (the rest is
    for routing between stages, clock-to-out, setup and clock uncertainty).

    >>> default_cutoff(5.0)
    3.5
    """
    return 0.7 * clock_period


def pipelined(module: VerilogModule, *, clock_period: float = 5.0, latency_cutoff: float | None = None,
              delay_model: DelayModel | None = None) -> ClockedModule:
    """Registers placed into ``module`` (from :func:`to_verilog`) for ``clock_period`` ns.

    Args:
        module: the combinational module.
        clock_period: the target clock period, ns.
        latency_cutoff: the estimated logic delay allowed between two registers, ns
            (default :func:`default_cutoff`); ``float("inf")`` registers only the outputs.
        delay_model: the delays registers are placed by.

    Raises:
        ValueError: a period or cutoff that is not a positive number.
    """
    if not (isinstance(clock_period, (int, float)) and clock_period > 0):
        raise ValueError(f"clock_period must be a positive number of ns. Received: clock_period={clock_period!r}")
    cutoff = default_cutoff(clock_period) if latency_cutoff is None else latency_cutoff
    if not (isinstance(cutoff, (int, float)) and cutoff > 0):
        raise ValueError(f"latency_cutoff must be a positive number of ns (or None for 70% of the clock period). "
                         f"Received: latency_cutoff={latency_cutoff!r}")
    model = delay_model or DelayModel()
    ports = [Net(p.name, max(p.bits, 1), False, [], [], "wiring", (max(p.bits, 1) - 1, 0)) for p in module.inputs]
    outputs = [(hi - lo + 1, x) for _, hi, lo, x in module.out_assigns]
    pipe = schedule(module.nets, ports, outputs, float(cutoff), model, module.functions)
    body = _Body(module, pipe).lines()
    valid = _valid_chain(pipe.stages)
    head = ["input clk", "input in_valid"] + [f"input [{max(p.bits, 1) - 1}:0] {p.name}" for p in module.inputs]
    head += ["output out_valid"] + [f"output [{max(p.bits, 1) - 1}:0] {p.name}" for p in module.outputs]
    src = "\n".join([f"module {module.top}(", ",\n".join("    " + h for h in head), ");", *module.functions,
                     *body, *valid, "endmodule", "", *([ADDER_MODULE] if module.adder_instances else [])])
    return ClockedModule(src, module.top, module.inputs, module.outputs, pipe.stages, pipe.ff,
                         float(clock_period), float(cutoff), pipe, pipe.srl)


class _Body:
    """The lines of the clocked module: each stage's registers, the values rebuilt from them,
    its roots' logic and the wiring they read, and the outputs from the last registers."""

    def __init__(self, module: VerilogModule, pipe: Pipeline) -> None:
        self.module, self.pipe = module, pipe
        self.order = {n.name: i for i, n in enumerate(module.nets)}
        self.items: list[tuple[tuple[int, ...], list[str]]] = []
        self.named: dict[tuple[str, int], str] = {}  # (net, stage) -> the name it is read by there
        self.slot = {key: {j: i for i, j in enumerate(bits)} for key, bits in pipe.regs.items()}

    def lines(self) -> list[str]:
        """Every line, each declared before it is read."""
        pipe = self.pipe
        first = self._sources()
        for name, k in pipe.copies:
            bits = pipe.regs[(name, k)]
            src = [first.get((name, j), (name, j)) if k == 1 else (f"{name}_r{k - 1}", self.slot[(name, k - 1)][j])
                   for j in reversed(bits)]
            self.items.append(((pipe.nets[name].stage + k, 0, self.order.get(name, -1), k),
                               [f"reg [{len(bits) - 1}:0] {name}_r{k};",
                                f"always @(posedge clk) {name}_r{k} <= {_concat(src)};"]))
        for net in self.module.nets:  # all logic, as the estimate counts it (synthesis merges the same
            if net.name in pipe.roots or net.name in pipe.dead:  # adders, and drops the logic nobody reads)
                self._own(net, net.stage)
            elif net.name in pipe.aliases:
                self.ref(net.name, net.stage)
        self._outputs()
        return [line for _, lines in sorted(self.items, key=lambda t: t[0]) for line in lines]

    def _sources(self) -> dict[tuple[str, int], tuple[str, int]]:
        """Where each first register reads its root bit: the last declared net holding it, in the
        root's stage, that a later stage reads (what the later logic reads in the combinational
        module: synthesis then sees the same readers of each net, and merges the same adders)."""
        pipe, later = self.pipe, {name for _, _, _, x in self.module.out_assigns for name in NAME.findall(x)}
        for net in self.module.nets:
            if net.name in pipe.roots:
                later.update(o for o in net.operands if pipe.nets[o].stage < net.stage)
        first: dict[tuple[str, int], tuple[str, int]] = {}
        for name in sorted(later, key=lambda n: self.order.get(n, -1)):
            home = pipe.nets[name].stage
            for i, v in enumerate(pipe.bits_of[name]):
                if v.__class__ is tuple and v[0] in pipe.roots and pipe.nets[v[0]].stage == home:
                    first[v] = (name, i)
        return {v: (self.ref(name, pipe.nets[name].stage), i) for v, (name, i) in first.items()}

    def ref(self, name: str, stage: int) -> str:
        """The name by which a line in ``stage`` reads net ``name`` (declaring it there if need be)."""
        pipe, net = self.pipe, self.pipe.nets[name]
        if (name in pipe.roots or name in pipe.dead) and net.stage == stage:
            return name
        if (name, stage) in self.named:
            return self.named[(name, stage)]
        home = net.stage
        alias = name if stage == home else f"{name}_p{stage - home}" if stage > home else f"{name}_m{home - stage}"
        self.named[(name, stage)] = alias
        if stage == home and name not in pipe.logic and not any(o in pipe.dead for o in net.operands):
            self._own(net, stage)  # wiring in its own stage: its own expression
        else:
            self._rebuilt(net, stage, alias)
        return alias

    def _own(self, net: Net, stage: int) -> None:
        """A net's own lines in ``stage``, each operand read by its name there."""
        names = {o: self.ref(o, stage) for o in net.operands}
        renamed = {o: r for o, r in names.items() if r != o}
        lines = [NAME.sub(lambda m: renamed.get(m.group(0), m.group(0)), x) for x in net.lines] if renamed \
            else net.lines
        if net.name in self.pipe.masked and len(lines) == 1:
            lines = _masked(net, lines[0])
        self.items.append(((stage, 1, self.order[net.name], 0), lines))

    def _source(self, v: Any, stage: int) -> tuple[str | None, int]:
        """Where bit value ``v`` is read in ``stage``: ``(wire or register, index)``, or
        ``(None, constant)``: a root bit that no logic of ``stage`` needs reads as 0 (so that
        synthesis sees the readers the registers were counted with)."""
        if v.__class__ is not tuple:
            return None, v if v.__class__ is int else 0
        root, j = v
        net = self.pipe.nets[root]
        if root not in self.pipe.roots or net.stage > stage:
            return None, 0
        if net.stage == stage:
            return v
        k = stage - net.stage
        return (f"{root}_r{k}", self.slot[(root, k)][j]) if j in self.pipe.taps.get((root, k), ()) else (None, 0)

    def _rebuilt(self, net: Net, stage: int, alias: str) -> None:
        """``alias``: net's value in ``stage``, bit by bit from the registers (and that stage's roots)."""
        src = [self._source(v, stage) for v in reversed(self.pipe.bits_of[net.name])]
        here = [self.order.get(s, -1) for s, _ in src if s is not None and s in self.pipe.nets]
        self.items.append(((stage, 1, max(here, default=-1), 1),
                           [f"wire {'signed ' if net.signed else ''}[{net.width - 1}:0] {alias} = {_concat(src)};"]))

    def _outputs(self) -> None:
        """Each output port from the last registers."""
        last = self.pipe.stages
        slices = iter(self.pipe.outputs)
        bits: dict[str, list[Any]] = {p.name: [0] * max(p.bits, 1) for p in self.module.outputs}
        for port, hi, lo, _ in self.module.out_assigns:
            bits[port][lo:hi + 1] = next(slices)
        lines = [f"assign {p} = {_concat([self._source(v, last) for v in reversed(b)])};" for p, b in bits.items()]
        self.items.append(((last, 2), lines))


def _masked(net: Net, line: str) -> list[str]:
    """``net``'s line as ``<net>_v``, and ``<net>`` its payload's bits (the others 0): what the
    analysis knows is 0 is 0, whatever its logic makes of operand bits nobody needs."""
    head, _, expr = line.partition(" = ")
    hi, lo = net.payload
    bits = [(f"{net.name}_v", j) if lo <= j <= hi else (None, 0) for j in reversed(range(net.width))]
    return [f"{head}_v = {expr}", f"{head} = {_concat(bits)};"]


def _concat(src: list[tuple[str | None, int]]) -> str:
    """A Verilog concatenation of bits, most significant first: ``(wire, index)`` or ``(None, 0/1)``."""
    parts, k = [], 0
    while k < len(src):
        name, v = src[k]
        n = 1
        if name is None:
            while k + n < len(src) and src[k + n][0] is None:
                n += 1
            parts.append(f"{n}'b" + "".join(str(b) for _, b in src[k:k + n]))
        else:
            while k + n < len(src) and src[k + n] == src[k]:
                n += 1
            if n > 1:
                parts.append(f"{{{n}{{{name}[{v}]}}}}")
            else:
                while k + n < len(src) and src[k + n] == (name, v - n):
                    n += 1
                parts.append(f"{name}[{v}:{v - n + 1}]" if n > 1 else f"{name}[{v}]")
        k += n
    return parts[0] if len(parts) == 1 else "{" + ", ".join(parts) + "}"


def _valid_chain(stages: int) -> list[str]:
    """``out_valid``: ``in_valid`` through ``stages`` registers."""
    if stages == 1:
        return ["reg valid_q;", "always @(posedge clk) valid_q <= in_valid;", "assign out_valid = valid_q;"]
    return [f"reg [{stages - 1}:0] valid_q;",
            f"always @(posedge clk) valid_q <= {{valid_q[{stages - 2}:0], in_valid}};",
            f"assign out_valid = valid_q[{stages - 1}];"]
