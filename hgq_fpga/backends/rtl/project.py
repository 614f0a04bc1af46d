"""``to_rtl``: a complete Verilog project for a calibrated model, and its simulation.

The project (every file a function of the model and the options: the same
model gives byte-identical files; no text of the model's -- layer names
included -- is in a Verilog file, only in ``hgq_fpga_rtl.json``)::

    src/<top>.v                 the pipelined module (see clocked.py) and hgq_add
    tb/tb_<top>.v               a self-checking testbench: one word per clock, prints PASS or FAIL
    tb_data/in<k>.hex           test inputs, one packed word per line
    tb_data/out<k>.hex          the emulator's outputs for them
    constraints/<top>.xdc, .sdc the clock
    build_vivado.tcl            out-of-context synthesis, implementation, utilization and timing reports
    build_yosys.ys              yosys synth_xilinx, flattened (the open-source check)
    Makefile                    make sim | yosys | vivado
    hgq_fpga_rtl.json           ports (each element's bits, scale, user layer), latency, clock, counts

Written into a staging folder and moved into place at the end
(:mod:`hgq_fpga.projects`): an interrupted conversion leaves nothing, and
``overwrite=True`` replaces only an RTL project.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...files import OWNER_FILE, make_staging
from ...projects import ProjectKind, check_project_target, publish_project
from .clocked import ClockedModule, pipelined
from .verilog import PortLayout, to_verilog

__all__ = ["RTL_PROJECT", "RtlProject", "run_testbench", "to_rtl", "yosys_family"]

#: what overwrite=True may replace: a project written by to_rtl
RTL_PROJECT = ProjectKind("to_rtl", "hgq_fpga_rtl.json", "an RTL project written by to_rtl")
FLAVORS = ("verilog",)


class RtlProject:
    """A written RTL project: where it is, its module and its numbers.

    Attributes:
        path: the project folder.
        module: the :class:`~.clocked.ClockedModule` (source, ports, latency, flip-flops).
        part: the FPGA part of the build scripts.
    """

    def __init__(self, path: Path, module: ClockedModule, part: str) -> None:
        self.path, self.module, self.part = path, module, part

    @property
    def latency(self) -> int:
        """Clock cycles from an input word to its output word."""
        return self.module.latency

    def __repr__(self) -> str:
        m = self.module
        return (f"RtlProject({str(self.path)!r}, latency={m.latency} cycles ({m.latency_ns:g} ns at "
                f"{m.clock_period:g} ns), ff={m.ff})")


def yosys_family(part: str) -> str:
    """yosys ``synth_xilinx -family`` for a part: ``xcup`` (UltraScale+), ``xcu`` (UltraScale) or ``xc7``.

    >>> yosys_family("xcvu13p-flga2577-2-e"), yosys_family("xcku115-flvb2104-2-e"), yosys_family("xc7a100t")
    ('xcup', 'xcu', 'xc7')
    """
    from ...resources.parts import device

    d = device(part)
    fam = d.family if d is not None else ""
    return "xcup" if ("UltraScale+" in fam or "Alveo" in fam) else "xcu" if "UltraScale" in fam else "xc7"


def to_rtl(model: Any, output_dir: str | Path, *, flavor: str = "verilog", clock_period: float = 5.0,
           latency_cutoff: float | None = None, part: str = "xcvu13p-flga2577-2-e", top: str = "model",
           test_inputs: Any = None, overwrite: bool = False, graph: Any = None,
           prefer: str = "latency") -> RtlProject:
    """Write a pipelined Verilog project for a calibrated model (see the module docstring).

    Args:
        model: a calibrated hgq_fpga Keras model (or None with ``graph``).
        output_dir: the project folder; refused if it exists unless ``overwrite``.
        flavor: ``"verilog"`` (the only one so far).
        clock_period: ns; registers are placed so that each stage's estimated
            logic delay stays under ``latency_cutoff``.
        latency_cutoff: ns of estimated logic per stage (default 70% of the period).
        part: the FPGA part of the build scripts.
        top: the top module's name (a Verilog identifier).
        test_inputs: inputs for ``tb_data`` (default: 16 samples around each
            input quantizer's range, edges included).
        overwrite: replace an existing RTL project (only once the new one is complete).
        graph: the IR if already built.
        prefer: how each dense/conv layer's adder graph is chosen: ``"latency"`` (the
            fewest LUTs among graphs no deeper than da4ml's greedy one) or ``"luts"`` (the
            fewest LUTs, as da4ml chooses; up to a third fewer, for a cycle or two more).

    Returns:
        an :class:`RtlProject`.

    Raises:
        UnsupportedForVerilog: an operation the writer does not express (named).
        FileExistsError: ``output_dir`` exists (without ``overwrite``, or is not an RTL project).
        ValueError: a bad flavor, top name, period, cutoff or ``prefer``.
    """
    from ...frontend.keras import build_ir
    from ...resources.shared import check_prefer

    check_prefer(prefer, "to_rtl")

    if flavor not in FLAVORS:
        raise ValueError(f"to_rtl: flavor must be one of {FLAVORS} (VHDL is not written yet). "
                         f"Received: flavor={flavor!r}")
    target = Path(output_dir).absolute()
    check_project_target(target, overwrite, RTL_PROJECT)
    graph = graph if graph is not None else build_ir(model)
    # adders as hgq_add instances: flattened, yosys maps them to 10% fewer LUTs than the same sums
    # written as expressions (which it partly re-maps to LUT logic; measured on a 12x8 layer)
    comb = to_verilog(graph, top=top, shared=True, prefer=prefer)
    module = pipelined(comb, clock_period=clock_period, latency_cutoff=latency_cutoff)
    counts = _counts(graph, comb, module, part)
    inputs = _test_inputs(graph, test_inputs)
    feeds, expected = _tb_words(graph, module, inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging(target.parent, f".{target.name}.")
    try:
        _write(staging, module, graph, part, feeds, expected, counts, prefer)
        (staging / OWNER_FILE).unlink()
        publish_project(staging, target, overwrite, RTL_PROJECT)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RtlProject(target, module, part)


def _counts(graph: Any, comb: Any, module: ClockedModule, part: str) -> dict[str, int]:
    """What ``estimate(backend="rtl")`` counts for this project (kept in its name map)."""
    from ...resources.estimate import estimate_graph, rtl_cost_model

    report = estimate_graph(graph, strategy="Latency", part=part, cost_model=rtl_cost_model(part),
                            analysis=comb.analysis)
    return {"lut": int(round(report.lut)), "carry": int(report.carry), "srl": int(module.srl)}


def _test_inputs(graph: Any, test_inputs: Any) -> list[np.ndarray]:
    from ..hls4ml.project import default_test_inputs

    if test_inputs is None:
        return default_test_inputs(graph)
    arrays = list(test_inputs) if isinstance(test_inputs, (list, tuple)) else [test_inputs]
    return [np.asarray(a, np.float64) for a in arrays]


def _tb_words(graph: Any, module: ClockedModule, inputs: list[np.ndarray]) -> tuple[list[list[int]], list[list[int]]]:
    """The packed input words and the emulator's packed output words."""
    from ...emulator import emulate_mantissas
    from .synth import port_feeds

    feeds = port_feeds(graph, module.inputs, inputs)
    outs = emulate_mantissas(graph, inputs)
    expected = [p.pack(_at_scale(o, p)) for o, p in zip(outs, module.outputs)]
    return [p.pack(f) for p, f in zip(module.inputs, feeds)], expected


def _at_scale(m: Any, port: PortLayout) -> np.ndarray:
    """An emulator output's mantissas at the port tensor's scale."""
    v = np.asarray(m.m, dtype=object)
    shift = port.f - int(m.f)
    return v * (1 << shift) if shift >= 0 else v // (1 << -shift)


def _hex(words: list[int], bits: int) -> str:
    digits = max((bits + 3) // 4, 1)
    return "".join(f"{w:0{digits}x}\n" for w in words)


def _write(d: Path, module: ClockedModule, graph: Any, part: str, feeds: list[list[int]],
           expected: list[list[int]], counts: dict[str, int], prefer: str = "latency") -> None:
    from .scripts import build_scripts, names_json, testbench

    top = module.top
    files = {f"src/{top}.v": module.source, f"tb/tb_{top}.v": testbench(module, len(feeds[0]) if feeds else 0)}
    for p, words in zip(module.inputs, feeds):
        files[f"tb_data/{p.name}.hex"] = _hex(words, p.bits)
    for p, words in zip(module.outputs, expected):
        files[f"tb_data/{p.name}.hex"] = _hex(words, p.bits)
    files.update(build_scripts(module, part, yosys_family(part)))
    meta = {**names_json(module, graph, part), "estimate": counts, "prefer": prefer}  # prefer: how graphs were chosen
    files[RTL_PROJECT.marker] = json.dumps(meta, indent=1, sort_keys=True) + "\n"
    for rel, text in sorted(files.items()):
        path = d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run_testbench(project: str | Path | RtlProject, *, workdir: str | Path | None = None,
                  timeout: float = 600.0) -> tuple[bool, list[list[int]], str]:
    """Compile and run a project's testbench with Icarus Verilog.

    The simulation's files go to ``workdir`` (default: a temporary folder);
    nothing is written into the project.

    Returns:
        ``(passed, words, log)``: whether the testbench printed PASS, the output
        words it saw (one list per output port, in order), and its output.

    Raises:
        ToolMissingError: iverilog is not installed.
        RuntimeError: the compilation or simulation failed (with the end of its log).
    """
    from ...processes import run_in_group
    from .synth import require_tool

    root = Path(project.path if isinstance(project, RtlProject) else project).absolute()
    meta = json.loads((root / RTL_PROJECT.marker).read_text())
    top = meta["top"]
    iverilog, vvp = require_tool("iverilog"), require_tool("vvp")
    with tempfile.TemporaryDirectory(prefix="hgq_fpga_rtlsim_") as tmp:
        w = Path(workdir) if workdir is not None else Path(tmp)
        w.mkdir(parents=True, exist_ok=True)
        compile_cmd = [iverilog, "-g2005", "-o", str(w / "sim"), f"tb/tb_{top}.v", f"src/{top}.v"]
        code, log = run_in_group(compile_cmd, root, desc="iverilog", timeout=timeout)
        if code != 0:
            raise RuntimeError(f"iverilog could not compile the project {root} (exit {code}):\n{log[-2000:]}")
        outs = [f"+{p['name']}={w / ('out_' + p['name'] + '.hex')}" for p in meta["outputs"]]
        code, log = run_in_group([vvp, "-n", str(w / "sim"), *outs], root, desc="vvp", timeout=timeout)
        if code != 0:
            raise RuntimeError(f"the simulation of {root} failed (exit {code}):\n{log[-2000:]}")
        words = [[int(x, 16) for x in (w / f"out_{p['name']}.hex").read_text().split()] for p in meta["outputs"]]
    return "PASS" in log and "FAIL" not in log, words, log


def simulate_project(project: RtlProject) -> tuple[bool, list[np.ndarray], str]:
    """:func:`run_testbench`, with the output words unpacked into mantissas per output port."""
    passed, words, log = run_testbench(project)
    outs = [p.unpack(w) if p.bits else p.unpack([0] * len(w)) for p, w in zip(project.module.outputs, words)]
    return passed, outs, log

