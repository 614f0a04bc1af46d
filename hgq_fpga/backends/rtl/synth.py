"""Open-source ground truth: yosys synthesis and Icarus Verilog simulation of
the Verilog that :func:`~hgq_fpga.backends.rtl.to_verilog` writes.

Neither tool is a Python dependency. Install them from your distribution:

* Debian/Ubuntu: ``sudo apt-get install yosys iverilog``
* conda: ``conda install -c conda-forge yosys iverilog``
* or the OSS CAD Suite (https://github.com/YosysHQ/oss-cad-suite-build).

Example:
    >>> result = hgq_fpga.backends.rtl.synthesize(model)   # doctest: +SKIP
    >>> result.lut, result.carry, result.dsp            # doctest: +SKIP
    (2876, 803, 0)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...processes import run_in_group
from .verilog import PortLayout, VerilogModule, to_verilog

__all__ = ["SynthResult", "ToolMissingError", "port_feeds", "require_tool", "simulate", "simulate_model", "synthesize"]

_INSTALL = {
    "yosys": "install yosys: 'sudo apt-get install yosys' (Debian/Ubuntu), "
    "'conda install -c conda-forge yosys', or the OSS CAD Suite",
    "iverilog": "install Icarus Verilog: 'sudo apt-get install iverilog' (Debian/Ubuntu) "
    "or 'conda install -c conda-forge iverilog'",
    "vvp": "install Icarus Verilog: 'sudo apt-get install iverilog' (Debian/Ubuntu)",
}


class ToolMissingError(RuntimeError):
    """An external tool (yosys, iverilog) is not on PATH."""


def require_tool(name: str) -> str:
    """Path of an executable, or :class:`ToolMissingError` saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(f"{name} was not found on PATH; {_INSTALL.get(name, 'install it')}.")
    return path


@dataclass
class SynthResult:
    """Cell counts from ``yosys synth_xilinx``.

    Attributes:
        lut: LUT1..LUT6 cells (an inverter, ``INV``, is counted apart).
        carry: CARRY4 (7-series) or CARRY8 cells.
        dsp: DSP48E1/DSP48E2 cells.
        ff: flip-flops (0 for the combinational modules hgq_fpga writes).
        inv: inverter cells (absorbed into neighbouring LUTs by vendor tools).
        cells: every cell type and its count.
        seconds: yosys run time.
        family: the ``-family`` given to yosys.
    """

    lut: int
    carry: int
    dsp: int
    ff: int
    inv: int
    cells: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    family: str = "xc7"


def _module(model_or_graph: Any, **kwargs: Any) -> VerilogModule:
    if isinstance(model_or_graph, VerilogModule):
        return model_or_graph
    from ...frontend.keras import build_ir
    from ...ir import Graph

    graph = model_or_graph if isinstance(model_or_graph, Graph) else build_ir(model_or_graph)
    return to_verilog(graph, **kwargs)


def synthesize(
    model_or_graph: Any,
    *,
    family: str = "xc7",
    dsp: bool = False,
    flatten: bool = False,
    workdir: str | Path | None = None,
    timeout: float = 3600.0,
    progress: bool = False,
) -> SynthResult:
    """Synthesize a model's arithmetic with ``yosys synth_xilinx`` and count cells.

    Args:
        model_or_graph: a calibrated model, its IR, or a :class:`VerilogModule`.
        family: yosys's Xilinx family (``xc7``, ``xcu``, ``xcup``).
        dsp: let yosys use DSPs (wide constant multiplications written as
            ``x * c``); default: every multiplication in LUTs (``-nodsp``).
        flatten: flatten the hierarchy first, so yosys may optimize across
            adders (the default keeps each adder instance apart, as the
            estimator's circuit and the HLS tools' netlists do).
        workdir: keep the Verilog and the yosys log there (default: a temporary folder).
        timeout: seconds before yosys is stopped.
        progress: show the elapsed time while yosys runs (seconds for a layer,
            minutes for a whole model).

    Raises:
        ToolMissingError: yosys is not installed (with install steps).
        RuntimeError: yosys failed (with the end of its log).
    """
    yosys = require_tool("yosys")
    module = _module(model_or_graph, dsp_min_bits=10 if dsp else None) if not isinstance(
        model_or_graph, VerilogModule) else model_or_graph
    with tempfile.TemporaryDirectory(prefix="hgq_fpga_yosys_") as tmp:
        d = Path(workdir) if workdir is not None else Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.v").write_text(module.source)
        script = (
            f"read_verilog model.v; synth_xilinx -family {family} -top {module.top}"
            f"{'' if dsp else ' -nodsp'}{' -flatten' if flatten else ''}; tee -o stat.txt stat"
        )
        t0 = time.perf_counter()
        code, output = run_in_group([yosys, "-q", "-l", "yosys.log", "-p", script], d, timeout=timeout,
                                    progress=progress, desc=f"yosys synth_xilinx of {module.top}")
        seconds = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"yosys failed (exit {code}) in {d}:\n{output[-2000:]}")
        stat = (d / "stat.txt").read_text()
    return stat_result(stat, seconds, family)


def stat_result(stat: str, seconds: float, family: str) -> SynthResult:
    """A :class:`SynthResult` from the text of yosys's ``stat`` (its cell counts)."""
    cells = {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", stat, re.MULTILINE)}
    return SynthResult(
        lut=sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k)),
        carry=cells.get("CARRY4", 0) + cells.get("CARRY8", 0),
        dsp=sum(v for k, v in cells.items() if k.startswith("DSP48")),
        ff=sum(v for k, v in cells.items() if re.fullmatch(r"FD\w*", k)),
        inv=cells.get("INV", 0),
        cells=cells,
        seconds=seconds,
        family=family,
    )


def simulate(module: VerilogModule, inputs: list[np.ndarray], *, workdir: str | Path | None = None) -> list[np.ndarray]:
    """Run a module on integer input mantissas with Icarus Verilog.

    Args:
        module: from :func:`to_verilog`.
        inputs: one array of mantissas per input port (at the port tensor's
            scale, shape ``(n, *shape)``), e.g. the emulator's quantized inputs.

    Returns:
        one object array of Python-int mantissas per output port, at the output
        tensor's scale.
    """
    iverilog, vvp = require_tool("iverilog"), require_tool("vvp")
    n = len(inputs[0])
    with tempfile.TemporaryDirectory(prefix="hgq_fpga_iverilog_") as tmp:
        d = Path(workdir) if workdir is not None else Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        regs, feeds, shows = [], [], []
        for p, x in zip(module.inputs, inputs):
            words = p.pack(x)
            (d / f"{p.name}.hex").write_text("\n".join(f"{w:x}" for w in words) + "\n")
            bits = max(p.bits, 1)
            regs.append(f"reg [{bits - 1}:0] {p.name} [0:{n - 1}];")
            regs.append(f"reg [{bits - 1}:0] {p.name}_v;")
            feeds.append(f'$readmemh("{p.name}.hex", {p.name});')
        for p in module.outputs:
            regs.append(f"wire [{max(p.bits, 1) - 1}:0] {p.name}_v;")
            shows.append(f'$fwrite(fd, "%h\\n", {p.name}_v);')
        conn = ", ".join([f".{p.name}({p.name}_v)" for p in module.inputs + module.outputs])
        assign = " ".join(f"{p.name}_v = {p.name}[i];" for p in module.inputs)
        tb = "\n".join([
            "module tb;", *regs, "integer i, fd;",
            f"{module.top} dut({conn});",
            "initial begin", *feeds, 'fd = $fopen("out.txt", "w");',
            f"for (i = 0; i < {n}; i = i + 1) begin {assign} #1; {' '.join(shows)} end",
            "$fclose(fd); $finish; end", "endmodule", "",
        ])
        (d / "model.v").write_text(module.source)
        (d / "tb.v").write_text(tb)
        for cmd in ([iverilog, "-o", "sim", "tb.v", "model.v"], [vvp, "-n", "sim"]):
            proc = subprocess.run(cmd, cwd=d, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{Path(cmd[0]).name} failed in {d}:\n{(proc.stderr or proc.stdout)[-2000:]}")
        lines = (d / "out.txt").read_text().split()
    k = len(module.outputs)
    outs = []
    for j, p in enumerate(module.outputs):
        raw = [lines[i * k + j] for i in range(n)]
        if p.bits == 0:  # every element is a constant: the port has no driven bit ('z')
            words = [0] * n
        else:
            bad = [w for w in raw if not all(c in "0123456789abcdef" for c in w)]
            if bad:
                raise RuntimeError(f"simulate: output {p.name} has undriven or unknown bits ({bad[0]!r})")
            words = [int(w, 16) for w in raw]
        outs.append(p.unpack(words))
    return outs


def simulate_model(graph: Any, x: Any, *, module: VerilogModule | None = None) -> list[np.ndarray]:
    """Simulate a model's Verilog on float inputs; mantissas per output (Python ints).

    The inputs are quantized by the model's input quantizers exactly as the
    emulator does, then fed to :func:`simulate`. Compare with
    ``hgq_fpga.emulate_mantissas(graph, x)[k].m`` (same scale,
    ``module.outputs[k].f``).
    """
    module = module if module is not None else to_verilog(graph)
    return simulate(module, port_feeds(graph, module.inputs, x))


def port_feeds(graph: Any, ports: list[PortLayout], x: Any) -> list[np.ndarray]:
    """The input ports' mantissas for float inputs ``x``: each model input quantized by
    its input quantizer exactly as the emulator does, at the port tensor's scale."""
    from ...ir.exact import quantize_op

    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    by_tensor = {n.outputs[0]: n for n in graph.nodes}
    feeds = []
    for port in ports:
        node = by_tensor[port.tensor]
        data = np.asarray(xs[graph.inputs.index(node.inputs[0])], np.float64)
        q = quantize_op(data, node.k, node.i, node.f, node.rounding, node.overflow)
        feeds.append(np.asarray(q.m) << (port.f - q.f) if port.f > q.f else np.asarray(q.m))
    return feeds
