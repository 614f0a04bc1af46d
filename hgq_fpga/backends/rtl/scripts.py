"""The text files of an RTL project besides the module: testbench, constraints,
build scripts, Makefile and the name map (see :mod:`~.project`)."""

from __future__ import annotations

from typing import Any

from .clocked import ClockedModule
from .verilog import PortLayout

__all__ = ["build_scripts", "names_json", "testbench"]


def _ports(ports: list[PortLayout]) -> list[tuple[str, int]]:
    return [(p.name, max(p.bits, 1)) for p in ports]


def testbench(m: ClockedModule, n: int) -> str:
    """A self-checking testbench: presents one input word per clock (``tb_data/<port>.hex``),
    compares every output word with the expected one, writes what it saw to the files named by
    the plusargs ``+<port>=FILE`` (default ``sim_<port>.hex``), and prints ``PASS`` or ``FAIL``."""
    ins, outs = _ports(m.inputs), _ports(m.outputs)
    lines = ["`timescale 1ns / 1ps", f"module tb_{m.top};", f"localparam N = {n};", "reg clk = 1'b0;",
             "always #1 clk = ~clk;  // the testbench checks function; timing is the build's report",
             "reg in_valid = 1'b0;", "wire out_valid;", "integer i, seen = 0, errors = 0;", "reg bad;"]
    for name, b in ins:
        lines += [f"reg [{b - 1}:0] {name} = {b}'d0;", f"reg [{b - 1}:0] {name}_mem [0:N-1];"]
    for name, b in outs:
        lines += [f"wire [{b - 1}:0] {name};", f"reg [{b - 1}:0] {name}_exp [0:N-1];",
                  f"reg [8*1024-1:0] {name}_file;", f"integer {name}_fd;"]
    conn = ", ".join([".clk(clk)", ".in_valid(in_valid)"] + [f".{p}({p})" for p, _ in ins]
                     + [".out_valid(out_valid)"] + [f".{p}({p})" for p, _ in outs])
    lines.append(f"{m.top} dut({conn});")
    lines.append("initial begin")
    lines += [f'    $readmemh("tb_data/{p}.hex", {p}_mem);' for p, _ in ins]
    for p, _ in outs:
        lines += [f'    $readmemh("tb_data/{p}.hex", {p}_exp);',
                  f'    if (!$value$plusargs("{p}=%s", {p}_file)) {p}_file = "sim_{p}.hex";',
                  f'    {p}_fd = $fopen({p}_file, "w");']
    feed = " ".join(f"{p} = {p}_mem[i];" for p, _ in ins)
    lines += ["    for (i = 0; i < N; i = i + 1) begin", f"        @(negedge clk); in_valid = 1'b1; {feed}", "    end",
              "    @(negedge clk); in_valid = 1'b0;", "end"]
    lines += ["always @(posedge clk) if (out_valid === 1'b1 && seen < N) begin", "    bad = 1'b0;"]
    for p, _ in outs:
        lines += [f'    $fwrite({p}_fd, "%h\\n", {p});', f"    if ({p} !== {p}_exp[seen]) begin",
                  f'        if (errors < 10) $display("mismatch: sample %0d {p} %h, expected %h", seen, {p}, '
                  f"{p}_exp[seen]);", "        bad = 1'b1;", "    end"]
    lines += ["    errors = errors + bad;", "    seen = seen + 1;", "    if (seen == N) begin"]
    lines += [f"        $fclose({p}_fd);" for p, _ in outs]
    lines += ['        if (errors == 0) $display("PASS: %0d samples bit-exact", N);',
              '        else $display("FAIL: %0d of %0d samples differ", errors, N);', "        $finish;", "    end",
              "end", f"initial begin #({2 * (n + m.latency + 8)}); "
              '$display("FAIL: timeout, %0d of %0d samples seen", seen, N); $finish; end', "endmodule", ""]
    return "\n".join(lines)


def build_scripts(m: ClockedModule, part: str, family: str) -> dict[str, str]:
    """Constraints, the Vivado and yosys scripts and the Makefile, by project path."""
    top, period = m.top, f"{m.clock_period:.3f}"
    tcl = "\n".join([
        f"# Vivado: out-of-context synthesis and implementation of {top} for {part}",
        "# usage: vivado -mode batch -source build_vivado.tcl  (reports in reports/)",
        "set here [file dirname [file normalize [info script]]]", "file mkdir $here/reports",
        f"read_verilog $here/src/{top}.v", f"read_xdc -mode out_of_context $here/constraints/{top}.xdc",
        f"synth_design -top {top} -part {part} -mode out_of_context",
        "report_utilization -file $here/reports/utilization_synth.rpt",
        "opt_design", "place_design", "route_design",
        "report_utilization -file $here/reports/utilization.rpt",
        "report_timing_summary -file $here/reports/timing.rpt", ""])
    ys = "\n".join([
        "# yosys -s build_yosys.ys: synth_xilinx of the shipped source, flattened (as synthesis tools",
        "# run by default); cell counts in reports/yosys_utilization.txt; in reports/yosys_depth.txt the longest",
        "# logic path between registers (flip-flops and the shift-register LUTs of register chains), in cells",
        f"read_verilog src/{top}.v", f"synth_xilinx -flatten -family {family} -top {top}",
        "tee -o reports/yosys_utilization.txt stat", "tee -o reports/yosys_depth.txt ltp * t:FD* %d t:SRL* %d", ""])
    make = "\n".join([
        "# make sim: Icarus Verilog runs the self-checking testbench (PASS/FAIL)",
        "# make yosys: open-source synthesis; make vivado: Vivado synthesis and implementation",
        ".PHONY: sim yosys vivado", "sim:", "\tmkdir -p build",
        f"\tiverilog -g2005 -o build/sim tb/tb_{top}.v src/{top}.v",
        "\tvvp -n build/sim " + " ".join(f"+{p.name}=build/{p.name}.hex" for p in m.outputs),
        "yosys:", "\tmkdir -p reports", "\tyosys -q -l reports/yosys.log -s build_yosys.ys",
        "vivado:", "\tvivado -mode batch -nojournal -nolog -source build_vivado.tcl", ""])
    clock = f"create_clock -period {period} -name clk [get_ports clk]\n"
    return {"build_vivado.tcl": tcl, "build_yosys.ys": ys, "Makefile": make,
            f"constraints/{top}.xdc": clock, f"constraints/{top}.sdc": clock}


def _port_json(p: PortLayout, layer: str) -> dict[str, Any]:
    return {"name": p.name, "tensor": p.tensor, "layer": layer, "shape": list(p.shape), "f": int(p.f),
            "bits": int(p.bits), "offsets": [int(v) for v in p.offsets], "widths": [int(v) for v in p.widths],
            "signed": [bool(v) for v in p.signed], "lsb": [int(v) for v in p.lsb],
            "constants": [None if c is None else int(c) for c in (p.constants or [None] * len(p.widths))]}


def names_json(m: ClockedModule, graph: Any, part: str) -> dict[str, Any]:
    """The name map and the project's numbers: each port element's place, scale and the user's layer."""
    def layer_of(tensor: str) -> str:
        node = graph.producer(tensor)
        return str(getattr(node, "layer", None) or tensor)

    return {
        "format": "hgq_fpga RTL project 1", "top": m.top, "part": part, "clock_period_ns": m.clock_period,
        "latency_cutoff_ns": m.cutoff, "latency_cycles": m.latency, "flip_flops": m.ff,
        "stage_delay_ns": [round(v, 4) for v in m.pipeline.stage_delay],
        "stage_cells": [int(v) for v in m.pipeline.stage_cells],
        "value": "element e of a port = its bits [offsets[e] + widths[e] - 1 : offsets[e]] (two's complement "
                 "if signed[e]) shifted left by lsb[e], times 2**-f; constants[e] when not null (no bits)",
        "inputs": [_port_json(p, layer_of(p.tensor)) for p in m.inputs],
        "outputs": [_port_json(p, layer_of(p.tensor)) for p in m.outputs],
    }
