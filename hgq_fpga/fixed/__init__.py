"""Fixed-point numbers: the one definition used by every part of hgq_fpga.

numpy only -- this subpackage never imports Keras (a test checks it).
"""

from .core import (
    IntegerOps,
    from_mantissa,
    ki_from_range,
    overflow_mantissa,
    quantize,
    quantize_core,
    round_mantissa,
    round_shift,
    to_mantissa,
)
from .format import FixedFormat, bit_length, minimal_format
from .modes import OverflowMode, RoundingMode

__all__ = [
    "FixedFormat",
    "bit_length",
    "OverflowMode",
    "RoundingMode",
    "from_mantissa",
    "ki_from_range",
    "minimal_format",
    "overflow_mantissa",
    "quantize",
    "quantize_core",
    "round_mantissa",
    "round_shift",
    "IntegerOps",
    "to_mantissa",
]
