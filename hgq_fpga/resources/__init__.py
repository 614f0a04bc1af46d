"""Resources of the firmware: LUT/DSP cost rules (exact, and differentiable for
training), per-layer reports, and validation by open-source synthesis.

* :func:`estimate` -- LUTs, DSPs, carry chains and EBOPs of a calibrated model;
* :mod:`hgq_fpga.resources.rules` -- the cost rules, one pure function per operation;
* :func:`analyze` -- the circuit analysis behind the estimate (signals,
  adder trees, cost per operation), which the RTL backend
  (:mod:`hgq_fpga.backends.rtl`) writes as Verilog;
* :data:`COST` -- the cost rule of each IR operation (one registry entry each);
* :func:`device` -- an FPGA part's LUTs, FFs, DSPs and block RAMs (utilization in %);
* :func:`read_vendor_report` and :func:`fit_cost_model` -- tune the
  coefficients to Vivado/Vitis results of your own flow and part.
"""

from . import cost_rules  # noqa: F401  (registers the cost rules)
from .analysis import COST, CircuitAnalysis, analyze
from .estimate import FEATURES, STRATEGIES, CostModel, LayerCost, ResourceReport, estimate, estimate_graph
from .parts import Device, device
from .vendor import FitResult, VendorReport, fit_cost_model, read_vendor_report

__all__ = [
    "COST",
    "CircuitAnalysis",
    "analyze",
    "FEATURES",
    "STRATEGIES",
    "CostModel",
    "Device",
    "FitResult",
    "LayerCost",
    "ResourceReport",
    "VendorReport",
    "device",
    "estimate",
    "estimate_graph",
    "fit_cost_model",
    "read_vendor_report",
]
