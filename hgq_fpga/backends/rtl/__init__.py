"""RTL backend: Verilog of the very circuits the estimate counts, synthesized by
yosys and simulated by Icarus Verilog."""

from .synth import SynthResult, ToolMissingError, require_tool, simulate, simulate_model, synthesize
from .verilog import ADDER_MODULE, RTL_RULES, PortLayout, UnsupportedForVerilog, VerilogModule, to_verilog

__all__ = [
    "ADDER_MODULE", "PortLayout", "RTL_RULES", "SynthResult", "ToolMissingError", "UnsupportedForVerilog",
    "VerilogModule", "require_tool", "simulate", "simulate_model", "synthesize", "to_verilog",
]
