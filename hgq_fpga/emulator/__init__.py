"""Bit-accurate numpy emulation of the firmware, replaying the IR.

``emulate(model, x)`` returns float64 arrays whose values are exactly what
the firmware computes (every intermediate is an exact integer mantissa);
``emulate_mantissas`` gives the integers and their scales. No compiler, no
Keras in the loop once the IR is built.
"""

from .run import emulate, emulate_mantissas, run_graph

__all__ = ["emulate", "emulate_mantissas", "run_graph"]
