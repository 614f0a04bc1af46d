"""RTL backend: Verilog of the very circuits the estimate counts -- combinational
(:func:`to_verilog`) or as a pipelined project (:func:`to_rtl`) -- synthesized by
yosys and simulated by Icarus Verilog (:func:`run_testbench`, :func:`verify_rtl`)."""

from .clocked import ClockedModule, pipelined
from .pipeline import DelayModel
from .project import RtlProject, run_testbench, simulate_project, to_rtl
from .synth import SynthResult, ToolMissingError, require_tool, simulate, simulate_model, synthesize
from .verify import verify_rtl
from .verilog import ADDER_MODULE, RTL_RULES, PortLayout, UnsupportedForVerilog, VerilogModule, to_verilog

__all__ = [
    "ADDER_MODULE", "ClockedModule", "DelayModel", "PortLayout", "RTL_RULES", "RtlProject", "SynthResult",
    "ToolMissingError", "UnsupportedForVerilog", "VerilogModule", "pipelined", "require_tool", "run_testbench",
    "simulate", "simulate_model", "simulate_project", "synthesize", "to_rtl", "to_verilog", "verify_rtl",
]
