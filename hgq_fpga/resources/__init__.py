"""Resources of the firmware: LUT/DSP cost rules (exact, and differentiable for
training), per-layer reports, and validation by open-source synthesis.

* :func:`estimate` -- LUTs, DSPs, carry chains and EBOPs of a calibrated model;
* :mod:`hgq_fpga.resources.rules` -- the cost rules, one pure function per operation;
* :func:`to_verilog` and :func:`synthesize` -- the same circuits as Verilog,
  synthesized by yosys for LUT counts without vendor tools (:func:`synthesize`)
  and simulated by Icarus Verilog (:func:`simulate_model`);
* :func:`read_vendor_report` and :func:`fit_cost_model` -- tune the
  coefficients to Vivado/Vitis results of your own flow and part.
"""

from .estimate import (
    FEATURES,
    STRATEGIES,
    CostModel,
    LayerCost,
    ResourceReport,
    estimate,
    estimate_graph,
)
from .synth import SynthResult, ToolMissingError, simulate, simulate_model, synthesize
from .vendor import FitResult, VendorReport, fit_cost_model, read_vendor_report
from .verilog import PortLayout, UnsupportedForVerilog, VerilogModule, to_verilog

__all__ = [
    "FEATURES",
    "STRATEGIES",
    "CostModel",
    "FitResult",
    "LayerCost",
    "PortLayout",
    "ResourceReport",
    "SynthResult",
    "ToolMissingError",
    "UnsupportedForVerilog",
    "VendorReport",
    "VerilogModule",
    "estimate",
    "estimate_graph",
    "fit_cost_model",
    "read_vendor_report",
    "simulate",
    "simulate_model",
    "synthesize",
    "to_verilog",
]
