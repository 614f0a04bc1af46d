"""Synthesis of an RTL project with its own build scripts (``hgq-fpga synth DIR``).

``yosys``: the project's ``build_yosys.ys`` (flattened ``synth_xilinx``, as synthesis
tools run by default); its cell counts are read from ``reports/yosys_utilization.txt``.
``vivado``: the project's ``build_vivado.tcl`` (out-of-context synthesis, placement and
routing) when ``vivado`` is on PATH; the counts are read from
``reports/utilization.rpt``.

:func:`logic_path` reads the longest logic path between registers that yosys
reported (``ltp``, flip-flops and shift-register LUTs cut it): the deepest
stage as synthesized, to hold against the stage depths the project was
written with (``stage_cells`` in its name map) and, through the
:class:`~.pipeline.DelayModel`, against its ``latency_cutoff``.

Example::

    result = synthesize_project("my_rtl", progress=True)
    result.lut, result.ff, result.carry
    path = logic_path("my_rtl")
    path.cells, path.luts, path.carries, path.delay()
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...processes import run_in_group
from .project import RTL_PROJECT, RtlProject
from .synth import SynthResult, require_tool, stat_result

__all__ = ["TOOLS", "LogicPath", "logic_path", "project_estimate", "synthesize_project"]

TOOLS = ("yosys", "vivado")

#: Vivado utilization rows (7-series and UltraScale names) -> result fields
_VIVADO_ROWS = {"lut": r"(?:CLB|Slice) LUTs\*?", "ff": r"(?:CLB|Slice) Registers", "carry": r"CARRY[48]",
                "dsp": r"DSPs"}


def _root(project: str | Path | RtlProject) -> Path:
    root = Path(project.path if isinstance(project, RtlProject) else project).absolute()
    if not (root / RTL_PROJECT.marker).is_file():
        raise FileNotFoundError(f"{root}: no {RTL_PROJECT.marker}; expected a project written by to_rtl "
                                f"('hgq-fpga convert --backend rtl')")
    return root


def project_estimate(project: str | Path | RtlProject) -> dict[str, Any]:
    """The counts :func:`~.project.to_rtl` wrote into the project (``lut``, ``carry``, ``ff``,
    ``srl``, ``latency_cycles``)."""
    meta = json.loads((_root(project) / RTL_PROJECT.marker).read_text())
    return {**meta.get("estimate", {}), "ff": meta["flip_flops"], "latency_cycles": meta["latency_cycles"],
            "stage_cells": meta.get("stage_cells", []), "latency_cutoff_ns": meta.get("latency_cutoff_ns")}


@dataclass(frozen=True)
class LogicPath:
    """The longest logic path between registers in a yosys synthesis (``ltp``).

    Attributes:
        cells: cells on the path (yosys's ``length``, an input buffer included).
        luts: of which LUT levels.
        muxes: of which wide multiplexers (``MUXF7/8/9``: with the LUTs before them one
            wider LUT, counted in that LUT's level, as the delay model counts a table).
        carries: of which carry cells (CARRY4, or CARRY8 on UltraScale+).
        carry_bits: the bits those carry cells span (4 or 8 each: an upper bound of the
            bits the path runs through).
    """

    cells: int
    luts: int
    muxes: int
    carries: int
    carry_bits: int

    def delay(self, model: Any = None) -> float:
        """The path's delay by the delay model the registers were placed with (ns):
        ``luts * lut + carry_bits * carry_bit``."""
        from .pipeline import DelayModel

        m = model or DelayModel()
        return self.luts * m.lut + self.carry_bits * m.carry_bit


def logic_path(project: str | Path | RtlProject) -> LogicPath:
    """The longest path of the project's last yosys run (``reports/yosys_depth.txt``, written
    by :func:`synthesize_project` or ``make yosys``).

    Raises:
        FileNotFoundError: no yosys run in the project yet.
    """
    report = _root(project) / "reports" / "yosys_depth.txt"
    if not report.is_file():
        raise FileNotFoundError(f"{report}: not found; run synthesize_project (hgq-fpga synth DIR --tool yosys) first")
    text = report.read_text()
    m = re.search(r"length=(\d+)", text)
    via = [v.lower() for v in re.findall(r"^\s*\d+: .*\(via (\S+)\)\s*$", text, re.MULTILINE)]
    via = [v for v in via if "iopadmap" not in v]  # input buffers: no logic
    carry = [v for v in via if "carry" in v]
    mux = [v for v in via if re.search(r"mux[f]?\d", v)]
    bits = sum(8 if "carry8" in v else 4 for v in carry)
    return LogicPath(int(m.group(1)) if m else 0, len(via) - len(carry) - len(mux), len(mux), len(carry), bits)


def synthesize_project(project: str | Path | RtlProject, *, tool: str = "yosys", timeout: float = 3600.0,
                       progress: bool = False) -> SynthResult:
    """Run the project's own build script and read its cell counts.

    Raises:
        ValueError: another tool.
        FileNotFoundError: not an RTL project.
        ToolMissingError: the tool is not on PATH (with install steps).
        RuntimeError: the tool failed (with the end of its log).
    """
    if tool not in TOOLS:
        raise ValueError(f"synthesize_project: tool must be one of {TOOLS}. Received: tool={tool!r}")
    root = _root(project)
    exe = require_tool(tool)
    _reports_folder(root)
    cmd = [exe, "-q", "-l", "reports/yosys.log", "-s", "build_yosys.ys"] if tool == "yosys" else \
        [exe, "-mode", "batch", "-nojournal", "-log", "reports/vivado.log", "-source", "build_vivado.tcl"]
    t0 = time.perf_counter()
    code, output = run_in_group(cmd, root, timeout=timeout, progress=progress, desc=f"{tool} on {root.name}")
    if code != 0:
        raise RuntimeError(f"{tool} failed (exit {code}) in {root}:\n{output[-2000:]}")
    seconds = time.perf_counter() - t0
    if tool == "vivado":
        text = (root / "reports" / "utilization.rpt").read_text()
        counts = {k: _vivado_row(text, pattern) for k, pattern in _VIVADO_ROWS.items()}
        return SynthResult(counts["lut"], counts["carry"], counts["dsp"], counts["ff"], 0, {}, seconds, "vivado")
    return stat_result((root / "reports" / "yosys_utilization.txt").read_text(), seconds, "yosys")


def _reports_folder(root: Path) -> Path:
    """``root/reports``, created if missing; a link there (or inside, where the tools write)
    is refused, so that no report is written outside the project."""
    reports = root / "reports"
    links = [p for p in [reports, *(reports.iterdir() if reports.is_dir() and not reports.is_symlink() else [])]
             if p.is_symlink()]
    if links:
        raise FileExistsError(f"{links[0]} is a symbolic link; the synthesis reports are written only inside the "
                              f"project {root}. Remove the link (or write the project again) and rerun")
    reports.mkdir(exist_ok=True)
    return reports


def _vivado_row(text: str, pattern: str) -> int:
    """``| name | used | ...`` of a Vivado utilization report (0 when absent)."""
    m = re.search(rf"^\|\s*{pattern}\s*\|\s*(\d+)", text, re.MULTILINE)
    return int(m.group(1)) if m else 0
