"""Fixed-point numbers: the one definition used by every part of hgq_fpga.

numpy only -- this subpackage never imports Keras (a test checks it).
"""

from .format import FixedFormat, minimal_format
from .modes import OverflowMode, RoundingMode
from .core import (
    from_mantissa,
    overflow_mantissa,
    quantize,
    quantize_core,
    round_mantissa,
    to_mantissa,
)

__all__ = [
    "FixedFormat",
    "OverflowMode",
    "RoundingMode",
    "from_mantissa",
    "minimal_format",
    "overflow_mantissa",
    "quantize",
    "quantize_core",
    "round_mantissa",
    "to_mantissa",
]
