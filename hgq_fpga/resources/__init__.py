"""Resources of the firmware: LUT/DSP cost rules (exact, and differentiable for
training), per-layer reports, and validation by open-source synthesis.

* :func:`estimate` -- LUTs, DSPs, carry chains and EBOPs of a calibrated model;
* :mod:`hgq_fpga.resources.rules` -- the cost rules, one pure function per operation;
* :func:`to_verilog` and :func:`synthesize` -- the same circuits as Verilog,
  synthesized by yosys for LUT counts without vendor tools.
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
from .verilog import PortLayout, UnsupportedForVerilog, VerilogModule, to_verilog

__all__ = [
    "FEATURES",
    "STRATEGIES",
    "CostModel",
    "LayerCost",
    "PortLayout",
    "ResourceReport",
    "UnsupportedForVerilog",
    "VerilogModule",
    "estimate",
    "estimate_graph",
    "to_verilog",
]
