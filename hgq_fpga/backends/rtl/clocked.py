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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
        ff: flip-flops (pipeline registers, output registers, the valid chain).
        clock_period, cutoff: ns; the clock the registers were placed for, and the
            estimated logic delay allowed per stage.
        pipeline: the schedule (stages, register copies, delay per stage).
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
    outs = list(dict.fromkeys(o for *_, x in module.out_assigns for o in NAME.findall(x)))
    pipe = schedule(module.nets, ports, outs, float(cutoff), model)
    copies, _ = _registers(pipe)
    order = {name: i for i, name in enumerate(pipe.nets)}
    items = copies + [(net.stage, 1, order[net.name], [_renamed(x, net, pipe) for x in net.lines])
                      for net in module.nets]
    body = [line for *_, lines in sorted(items, key=lambda t: t[:3]) for line in lines]  # declared before use
    out_lines, out_ff = _outputs(module, pipe)
    valid = _valid_chain(pipe.stages)
    head = ["input clk", "input in_valid"] + [f"input [{max(p.bits, 1) - 1}:0] {p.name}" for p in module.inputs]
    head += ["output out_valid"] + [f"output [{max(p.bits, 1) - 1}:0] {p.name}" for p in module.outputs]
    ff = _live_flip_flops(body + out_lines, pipe)
    src = "\n".join([f"module {module.top}(", ",\n".join("    " + h for h in head), ");", *module.functions,
                     *body, *out_lines, *valid, "endmodule", "", *([ADDER_MODULE] if module.adder_instances else [])])
    return ClockedModule(src, module.top, module.inputs, module.outputs, pipe.stages, ff + out_ff + pipe.stages,
                         float(clock_period), float(cutoff), pipe)


def _copy(name: str, k: int) -> str:
    return f"{name}_p{k}"


def _renamed(text: str, net: Net | None, pipe: Pipeline, stage: int | None = None) -> str:
    """``text`` with each operand from an earlier stage replaced by its register copy in ``stage``
    (default: the net's own)."""
    at = net.stage if stage is None else stage
    own = net.name if net is not None else ""

    def swap(m: re.Match[str]) -> str:
        name = m.group(0)
        src = pipe.nets.get(name)
        if name == own or src is None or src.stage >= at:
            return name
        return _copy(name, at - src.stage)

    return NAME.sub(swap, text)


def _registers(pipe: Pipeline) -> tuple[list[tuple[int, int, int, list[str]]], int]:
    """The copies as ``(stage, 0, index, lines)``, and their flip-flops: a register of the
    varying bits and a wire rebuilding the full value."""
    items, ff = [], 0
    order = {name: i for i, name in enumerate(pipe.nets)}
    for name, k in pipe.copies:
        net = pipe.nets[name]
        hi, lo = net.payload
        n = hi - lo + 1
        if n <= 0:
            continue
        ff += n
        reg = f"{name}_r{k}"
        src = f"{name}[{hi}:{lo}]" if k == 1 else f"{name}_r{k - 1}"
        parts = ([f"{net.width - 1 - hi}'b0"] if hi < net.width - 1 else []) + [reg] + ([f"{lo}'b0"] if lo else [])
        decl = f"wire {'signed ' if net.signed else ''}[{net.width - 1}:0] {_copy(name, k)}"
        lines = [f"reg [{n - 1}:0] {reg};", f"always @(posedge clk) {reg} <= {src};",
                 f"{decl} = {{{', '.join(parts)}}};" if len(parts) > 1 else f"{decl} = {reg};"]
        items.append((net.stage + k, 0, order[name], lines))
    return items, ff


COPY_READ = re.compile(r"\b((?:[wqy]|in)\d+)_p(\d+)(?:\[(\d+)(?::(\d+))?\])?")


def _live_flip_flops(lines: list[str], pipe: Pipeline) -> int:
    """The register bits that something reads (synthesis removes the others): the bits of each
    copy that the lines read, carried back along each register chain."""
    read: dict[tuple[str, int], set[int]] = {}
    for line in lines:
        rhs = line.split(" = ", 1)[1] if line.startswith("wire") and " = " in line else line
        for name, k, hi, lo in COPY_READ.findall(rhs):
            width = pipe.nets[name].width
            bits = range(width) if not hi else range(int(lo or hi), int(hi) + 1)
            read.setdefault((name, int(k)), set()).update(bits)
    total = 0
    chains: dict[str, int] = {}
    for name, k in pipe.copies:
        chains[name] = max(chains.get(name, 0), k)
    for name, n in chains.items():
        hi, lo = pipe.nets[name].payload
        live: set[int] = set()
        for k in range(n, 0, -1):  # register k holds what copy k reads and what register k + 1 needs
            live |= {b for b in read.get((name, k), ()) if lo <= b <= hi}
            total += len(live)
    return total


def _outputs(module: VerilogModule, pipe: Pipeline) -> tuple[list[str], int]:
    """Each output port's slices from the last stage's copies, through the output register."""
    last = pipe.stages - 1
    lines, ff = [], 0
    for p in module.outputs:
        w = max(p.bits, 1)
        lines.append(f"wire [{w - 1}:0] {p.name}_d;")
        lines.append(f"reg [{w - 1}:0] {p.name}_q;")
        ff += p.bits
    for port, hi, lo, x in module.out_assigns:
        lines.append(f"assign {port}_d[{hi}:{lo}] = {_renamed(x, None, pipe, last)};")
    for p in module.outputs:
        if p.bits:
            lines.append(f"always @(posedge clk) {p.name}_q <= {p.name}_d;")
        else:  # every element constant: nothing varies, nothing to register
            lines.append(f"always @(posedge clk) {p.name}_q <= 1'b0;")
        lines.append(f"assign {p.name} = {p.name}_q;")
    return lines, ff


def _valid_chain(stages: int) -> list[str]:
    """``out_valid``: ``in_valid`` through ``stages`` registers."""
    if stages == 1:
        return ["reg valid_q;", "always @(posedge clk) valid_q <= in_valid;", "assign out_valid = valid_q;"]
    return [f"reg [{stages - 1}:0] valid_q;",
            f"always @(posedge clk) valid_q <= {{valid_q[{stages - 2}:0], in_valid}};",
            f"assign out_valid = valid_q[{stages - 1}];"]
