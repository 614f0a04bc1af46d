"""Per-element fixed-point formats and the minimal format of an array.

Example:
    >>> fmt = minimal_format([0.75, -2.0, 0.0])
    >>> fmt.k, fmt.i, fmt.f
    (array([0, 1, 0]), array([0, 1, 0]), array([ 2, -1,  0]))
    >>> fmt.width
    array([2, 1, 0])
    >>> fmt.reduce().cpp_type()
    'ap_fixed<4,2>'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .core import quantize
from .modes import OverflowMode, RoundingMode

__all__ = ["FORMAT_LIMIT", "FixedFormat", "bit_length", "check_format", "minimal_format"]

#: the largest ``|i|``, ``|f|`` and width hgq_fpga accepts: ``ap_fixed``'s default maximum width
#: (``AP_INT_MAX_W``); anything beyond is a corrupt or crafted model, not a design
FORMAT_LIMIT = 1024


def check_format(k: Any, i: Any, f: Any, what: str) -> None:
    """Refuse absurd formats (``|i|``, ``|f|`` or ``k + i + f`` above :data:`FORMAT_LIMIT`), or NaN.

    >>> check_format(1, 3, 70000, "layer 'dense'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: layer 'dense': fractional bits f=70000 are beyond the limit of 1024 (ap_fixed's widest type): ...
    """
    i_a, f_a = np.asarray(i, np.float64), np.asarray(f, np.float64)
    parts = (("fractional bits f", f_a, True), ("integer bits i", i_a, True),
             ("width k+i+f", np.asarray(k, np.float64) + i_a + f_a, False))
    for label, a, both_signs in parts:
        if not a.size:
            continue
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what}: its {label} contain NaN or infinity (a corrupt model). Retrain or re-save it.")
        worst = a.flat[int(np.argmax(np.abs(a) if both_signs else a))]
        if abs(worst) > FORMAT_LIMIT and (both_signs or worst > 0):
            raise ValueError(
                f"{what}: {label}={int(worst)} are beyond the limit of "
                f"{FORMAT_LIMIT} (ap_fixed's widest type): the model is corrupt or was crafted. Check where "
                "it came from; a calibration on data of absurd magnitude also gives such integer bits."
            )


@dataclass(frozen=True)
class FixedFormat:
    """Per-element format: integer arrays ``k``, ``i``, ``f`` of one shape.

    ``width = k + i + f``; an element with ``width <= 0`` is the constant 0.
    """

    k: np.ndarray
    i: np.ndarray
    f: np.ndarray

    def __post_init__(self) -> None:
        k, i, f = (np.asarray(a, dtype=np.int64) for a in (self.k, self.i, self.f))
        k, i, f = np.broadcast_arrays(k, i, f)
        if np.any((k != 0) & (k != 1)):
            raise ValueError(f"FixedFormat: k must be 0 or 1. Received k={k}")
        object.__setattr__(self, "k", np.array(k))
        object.__setattr__(self, "i", np.array(i))
        object.__setattr__(self, "f", np.array(f))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.k.shape

    @property
    def width(self) -> np.ndarray:
        """Total bits ``k + i + f`` (may be <= 0 for constant-zero elements)."""
        return self.k + self.i + self.f

    @property
    def bits(self) -> np.ndarray:
        """Total bits clipped at 0: the storage an element really needs."""
        return np.maximum(self.width, 0)

    @property
    def max_value(self) -> np.ndarray:
        """Largest representable value ``2**i - 2**-f`` (0 when width <= 0)."""
        v = np.exp2(self.i.astype(float)) - np.exp2(-self.f.astype(float))
        return np.where(self.width > 0, v, 0.0)

    @property
    def min_value(self) -> np.ndarray:
        """Smallest representable value ``-k * 2**i`` (0 when width <= 0)."""
        v = -self.k * np.exp2(self.i.astype(float))
        return np.where(self.width > 0, v, 0.0)

    @classmethod
    def of_mantissas(cls, lo: Any, hi: Any, f: int) -> "FixedFormat":
        """The smallest format, per element, holding every value in ``[lo, hi] * 2**-f``.

        ``lo``/``hi`` are integer mantissas (int64, or Python ints for any width).
        The same rule as :func:`~hgq_fpga.fixed.ki_from_range`, exact on integers:
        ``k = [lo < 0]``, ``i = bit_length(max(hi, -lo - 1)) - f``, and the
        constant-zero element gets ``i = -f`` (width 0).

        >>> fmt = FixedFormat.of_mantissas(np.array([-4, 0]), np.array([3, 0]), 2)
        >>> fmt.k, fmt.i, fmt.width
        (array([1, 0]), array([ 0, -2]), array([3, 0]))
        """
        lo_a, hi_a = np.asarray(lo), np.asarray(hi)
        a = np.maximum(hi_a, -lo_a - 1)
        live = a > 0
        i = np.where(live, bit_length(np.where(live, a, 0)) - int(f), -int(f))
        k = (lo_a < 0).astype(np.int64)
        return cls(k, i.astype(np.int64), np.full(np.shape(a), int(f), dtype=np.int64))

    def quantize(
        self,
        x: Any,
        rounding: RoundingMode | str = RoundingMode.TRN,
        overflow: OverflowMode | str = OverflowMode.WRAP,
    ) -> np.ndarray:
        """Quantize ``x`` (broadcast against this format), see :func:`quantize`."""
        return quantize(x, self.k, self.i, self.f, rounding, overflow)

    def reduce(self, axis: int | tuple[int, ...] | None = None) -> "FixedFormat":
        """The smallest format holding every element's format, over ``axis``.

        ``k`` and ``i`` take the maximum over the non-empty (width > 0)
        elements, ``f`` likewise. Empty elements do not widen the result.
        """
        live = self.width > 0
        low = np.iinfo(np.int64).min // 4
        k = np.max(np.where(live, self.k, 0), axis=axis)
        i = np.max(np.where(live, self.i, low), axis=axis)
        f = np.max(np.where(live, self.f, low), axis=axis)
        empty = ~np.any(live, axis=axis)
        return FixedFormat(k, np.where(empty, 0, i), np.where(empty, 0, f))

    def cpp_type(self) -> str:
        """The C++ type of a scalar format, e.g. ``ap_fixed<8,3>``.

        Raises:
            ValueError: if the format is not a scalar or has no bits.
        """
        if self.k.size != 1:
            raise ValueError(
                f"cpp_type: needs a single format; this one has shape {self.shape}. "
                "Call reduce() first."
            )
        k, i, w = int(self.k.flat[0]), int(self.i.flat[0]), int(self.width.flat[0])
        if w <= 0:
            raise ValueError("cpp_type: a zero-width format has no C++ type (it is constant 0).")
        return f"ap_fixed<{w},{k + i}>" if k else f"ap_ufixed<{w},{i}>"


def bit_length(a: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of non-negative integers of any width."""
    arr = np.asarray(a)
    if arr.dtype == object or (arr.size and int(np.max(arr)) >= 2**53):
        return np.vectorize(lambda v: int(v).bit_length(), otypes=[np.int64])(arr)
    _, e = np.frexp(arr.astype(np.float64))
    return np.where(arr > 0, e, 0).astype(np.int64)


def minimal_format(x: Any, axis: int | tuple[int, ...] | None = "elementwise") -> FixedFormat:  # type: ignore[assignment]
    """The smallest format that holds ``x`` exactly.

    Per element, for ``x = s * 2**e`` with ``s`` odd:

    * ``f = -e`` (the lowest set bit),
    * ``i = floor(log2 x) + 1`` for ``x > 0``, ``i = ceil(log2 |x|)`` for ``x < 0``,
    * ``k = 1`` iff ``x < 0``; zeros get the empty format ``(0, 0, 0)``.

    Args:
        x: finite values.
        axis: ``"elementwise"`` (default) for one format per element, or an
            axis / tuple of axes / ``None`` (all) to reduce over.

    Returns:
        a :class:`FixedFormat`.

    Example:
        >>> minimal_format([3.0, 0.5], axis=None).cpp_type()
        'ap_ufixed<3,2>'
    """
    xv = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(xv)):
        raise ValueError("minimal_format: x must be finite. Received NaN/Inf values.")
    mant, e = np.frexp(xv)  # x = mant * 2**e, |mant| in [0.5, 1)
    ints = (np.abs(mant) * 2.0**53).astype(np.int64)
    low_bit = np.where(ints != 0, ints & -ints, 1)
    tz = np.log2(low_bit.astype(np.float64)).astype(np.int64)
    nz = xv != 0
    f = np.where(nz, 53 - tz - e, 0)
    pow2 = np.abs(mant) == 0.5
    i = np.where(xv > 0, e, np.where(pow2, e - 1, e))
    i = np.where(nz, i, 0)
    k = (xv < 0).astype(np.int64)
    fmt = FixedFormat(k, i, f)
    if isinstance(axis, str):
        if axis != "elementwise":
            raise ValueError(f"minimal_format: unknown axis {axis!r}")
        return fmt
    return fmt.reduce(axis)
