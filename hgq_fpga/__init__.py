"""hgq_fpga: from Keras training to FPGA firmware with per-element trainable
bit-widths.

Public entry points:

* :mod:`hgq_fpga.fixed` -- the fixed-point numbers (numpy only);
* :mod:`hgq_fpga.quantizers` -- Keras quantizers with trainable bits;
* :mod:`hgq_fpga.layers` -- ``QDense``, ``QConv2D``, ... ;
* :func:`calibrate` -- set activation integer bits from data;
* :func:`bit_summary` -- bit statistics of a model.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import fixed, layers, quantizers
from .calibration import CalibrationResult, calibrate, is_calibrated, iter_quantizers
from .summary import BitSummary, bit_summary

__all__ = [
    "BitSummary",
    "CalibrationResult",
    "__version__",
    "bit_summary",
    "calibrate",
    "fixed",
    "is_calibrated",
    "iter_quantizers",
    "layers",
    "quantizers",
]
