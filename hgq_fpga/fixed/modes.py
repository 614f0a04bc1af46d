"""Rounding and overflow modes, named exactly as in Xilinx ``ap_fixed``.

The enums are plain ``str`` enums, so they serialize as the strings ``"RND"``,
``"SAT_SYM"``... and map straight to the C++ template arguments ``AP_RND``,
``AP_SAT_SYM``...

Example:
    >>> RoundingMode.from_string("rnd_conv")
    <RoundingMode.RND_CONV: 'RND_CONV'>
    >>> OverflowMode.SAT.cpp
    'AP_SAT'
"""

from __future__ import annotations

from enum import Enum

__all__ = ["RoundingMode", "OverflowMode"]


class _Mode(str, Enum):
    """Base class: string enum with a forgiving parser and a C++ spelling."""

    @classmethod
    def from_string(cls, value: "str | _Mode") -> "_Mode":
        """Parse ``value`` (case-insensitive, with or without ``AP_`` prefix).

        Raises:
            ValueError: if ``value`` names no mode of this kind.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise TypeError(
                f"{cls.__name__}: expected a string such as {cls._names()}. "
                f"Received: {value!r} of type {type(value).__name__}"
            )
        key = value.strip().upper()
        if key.startswith("AP_"):
            key = key[3:]
        try:
            return cls[key]
        except KeyError:
            raise ValueError(
                f"{cls.__name__}: unknown mode. Expected one of {cls._names()}. "
                f"Received: {value!r}"
            ) from None

    @classmethod
    def _names(cls) -> list[str]:
        return [m.value for m in cls]

    @property
    def cpp(self) -> str:
        """The ``ap_fixed`` template argument, e.g. ``"AP_RND"``."""
        return "AP_" + self.value

    def __str__(self) -> str:
        return self.value


class RoundingMode(_Mode):
    """How a value between two grid points is mapped onto the grid.

    With ``v = x * 2**f`` the value in units of the least significant bit:

    ============  ==================================================
    ``TRN``       ``floor(v)`` (towards minus infinity)
    ``TRN_ZERO``  towards zero
    ``RND``       nearest; ties towards plus infinity
    ``RND_ZERO``  nearest; ties towards zero
    ``RND_MIN_INF`` nearest; ties towards minus infinity
    ``RND_INF``   nearest; ties away from zero
    ``RND_CONV``  nearest; ties to even (convergent rounding)
    ============  ==================================================
    """

    TRN = "TRN"
    TRN_ZERO = "TRN_ZERO"
    RND = "RND"
    RND_ZERO = "RND_ZERO"
    RND_MIN_INF = "RND_MIN_INF"
    RND_INF = "RND_INF"
    RND_CONV = "RND_CONV"


class OverflowMode(_Mode):
    """What happens to a value outside the representable range.

    ============  ==================================================
    ``WRAP``      two's complement wrap-around (drop the high bits)
    ``SAT``       clamp to the minimum or maximum
    ``SAT_ZERO``  an overflowing value becomes zero
    ``SAT_SYM``   clamp to ``[-max, max]`` (signed, width >= 2), ``[0, max]``
                  unsigned; a 1-bit signed type saturates like ``SAT``
    ============  ==================================================
    """

    WRAP = "WRAP"
    SAT = "SAT"
    SAT_ZERO = "SAT_ZERO"
    SAT_SYM = "SAT_SYM"
