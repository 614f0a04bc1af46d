"""Exact operations on integer mantissas: the semantics of the IR operations,
used twice -- by the emulator on data and by the IR on value bounds.

A :class:`Mant` is integer mantissas ``m`` (batch first) at one scale ``f``:
the values are ``m * 2**-f``; a :class:`Constant` (weights, tables) is the
same for a constant tensor, with the format each element was trained to.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..fixed import FixedFormat, IntegerOps, minimal_format, overflow_mantissa, quantize, round_shift
from .intmath import as_mantissa, im2col, imatmul, shift

__all__ = [
    "Mant",
    "Constant",
    "align",
    "quantize_op",
    "dense_op",
    "conv_op",
    "scale_op",
    "relu_op",
    "add_op",
    "concat_op",
    "max_pool_op",
    "avg_pool_op",
    "table_op",
    "multiply_op",
]


@dataclass
class Mant:
    """Integer mantissas ``m`` at scale ``f`` (values ``m * 2**-f``)."""

    m: np.ndarray
    f: int

    def values(self) -> np.ndarray:
        """Exact float64 values (raises if some mantissa needs more than 53 bits)."""
        m = self.m
        if m.dtype == object:
            big = max((abs(int(v)) for v in m.ravel()), default=0)
            if big >= 2**53:
                raise OverflowError("values wider than 53 bits cannot be float64 exactly; use .m")
            m = m.astype(np.int64)
        return m.astype(np.float64) * np.exp2(-float(self.f))


@dataclass(eq=False)
class Constant:
    """A constant tensor (kernel, bias, table): exact integer mantissas ``m`` at
    one scale ``f`` (values ``m * 2**-f``), and ``fmt``, the per-element format
    the training chose (for a weight: its trained ``f``, with ``k`` and ``i``
    of its value; zero weights have width 0). ``trained`` marks the weights of
    a layer (multiplications by them count in EBOPs), as opposed to constants
    the conversion adds (a softmax's sums, lookup tables).

    Build it with :meth:`from_values`, which checks that ``fmt`` holds the values.
    """

    m: np.ndarray
    f: int
    fmt: FixedFormat
    trained: bool = False

    @classmethod
    def from_values(cls, values: Any, fmt: FixedFormat | None = None, *, trained: bool = False) -> Constant:
        """Exact mantissas of fixed-point ``values`` at their smallest common scale.

        Raises:
            ValueError: if some value is not representable in ``fmt``.
        """
        w = np.asarray(values, np.float64)
        fmt = minimal_format(w) if fmt is None else fmt
        if fmt.shape != w.shape:
            fmt = FixedFormat(*(np.broadcast_to(a, w.shape) for a in (fmt.k, fmt.i, fmt.f)))
        minimal = minimal_format(w)
        nz = w != 0
        scale = int(np.max(minimal.f[nz])) if np.any(nz) else 0
        held = (~nz) | ((fmt.width > 0) & (minimal.f <= fmt.f) & (w >= fmt.min_value) & (w <= fmt.max_value))
        if not np.all(held):
            bad = np.argwhere(~held)[0]
            raise ValueError(
                f"Constant: value {w[tuple(bad)]!r} at {tuple(int(v) for v in bad)} is not representable "
                f"in its format k={int(fmt.k[tuple(bad)])}, i={int(fmt.i[tuple(bad)])}, f={int(fmt.f[tuple(bad)])}"
            )
        return cls(as_mantissa(w * np.exp2(scale)), scale, fmt, trained)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.m))

    @cached_property
    def values(self) -> np.ndarray:
        """Exact float64 values (computed once)."""
        return np.asarray(self.m, np.float64) * np.exp2(-float(self.f))


def align(x: Mant, f: int) -> np.ndarray:
    """Mantissas of ``x`` at a finer scale ``f >= x.f`` (exact)."""
    return shift(x.m, f - x.f)


def _shift_each(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``m * 2**s`` element-wise for non-negative integer array ``s``."""
    if not np.any(s):
        return m
    if m.dtype != object and int(np.max(np.abs(m), initial=0)) < 2 ** (62 - int(np.max(s))):
        return m << s
    return as_mantissa(m, wide=True) * np.vectorize(lambda n: 1 << int(n), otypes=[object])(s)


def quantize_op(
    x: Mant | np.ndarray, k: np.ndarray, i: np.ndarray, f: np.ndarray, rounding: str, overflow: str
) -> Mant:
    """Per-element ``ap_fixed`` quantization to ``(k, i, f)`` (shapes without batch).

    A float input is quantized with the float core (exact for float data);
    integer mantissas are re-rounded with :func:`round_shift` and overflowed
    with :class:`IntegerOps`, the integer twins of the same rules.
    """
    width = k + i + f
    live = width > 0
    scale = int(np.max(np.where(live, f, -(2**30)))) if np.any(live) else 0
    if not isinstance(x, Mant):
        q = quantize(np.asarray(x, np.float64), k, i, f, rounding, overflow)
        return Mant(as_mantissa(q * np.exp2(scale)), scale)
    s = x.f - f
    m = round_shift(x.m, np.maximum(s, 0), rounding)
    m = _shift_each(m, np.maximum(-s, 0))
    m = overflow_mantissa(m, k, width, overflow, xp=IntegerOps)
    return Mant(_shift_each(m, np.where(live, scale - f, 0)), scale)


def dense_op(x: Mant, kernel: Constant, bias: Constant | None, bound: float) -> Mant:
    """``x @ W + b`` exactly; ``bound`` bounds the partial sums (mantissa units)."""
    y = imatmul(x.m, kernel.m, bound)
    return add_bias(Mant(y, x.f + kernel.f), bias)


def add_bias(y: Mant, bias: Constant | None) -> Mant:
    """``y + bias`` (broadcast over the leading axes), at the finer of the two scales."""
    if bias is None:
        return y
    scale = max(y.f, bias.f)
    return Mant(align(y, scale) + shift(bias.m, scale - bias.f), scale)


def conv_op(
    x: Mant,
    kernel: Constant,
    bias: Constant | None,
    strides: tuple[int, ...],
    padding: str,
    dilation: tuple[int, ...],
    bound: float,
) -> Mant:
    """Convolution (channels_last, 1D or 2D) as patches @ kernel, exactly."""
    km = kernel.m
    cols = im2col(x.m, km.shape[:-2], strides, dilation, padding)
    flat = cols.reshape(cols.shape[:-2] + (-1,))
    y = imatmul(flat, km.reshape(-1, km.shape[-1]), bound)
    return add_bias(Mant(y, x.f + kernel.f), bias)


def scale_op(x: Mant, scale: Constant, offset: Constant | None) -> Mant:
    """Per-channel ``x * s + o`` (folded batch normalization)."""
    return add_bias(Mant(x.m * scale.m, x.f + scale.f), offset)


def relu_op(x: Mant) -> Mant:
    return Mant(np.maximum(x.m, 0), x.f)


def add_op(xs: list[Mant]) -> Mant:
    scale = max(x.f for x in xs)
    out = align(xs[0], scale)
    for x in xs[1:]:
        out = out + align(x, scale)
    return Mant(out, scale)


def concat_op(xs: list[Mant], axis: int) -> Mant:
    """Concatenate along ``axis`` of the tensor without batch."""
    scale = max(x.f for x in xs)
    parts = [align(x, scale) for x in xs]
    if any(p.dtype == object for p in parts):
        parts = [as_mantissa(p, wide=True) for p in parts]
    return Mant(np.concatenate(parts, axis=axis + 1 if axis >= 0 else axis), scale)


def max_pool_op(x: Mant, pool: tuple[int, ...], strides: tuple[int, ...], padding: str) -> Mant:
    """Max over each window; padded positions never win."""
    low = int(np.min(x.m, initial=0)) - 1
    cols = im2col(x.m, pool, strides, (1,) * len(pool), padding, pad_value=low)
    return Mant(np.max(cols, axis=-2), x.f)


def avg_pool_op(x: Mant, pool: tuple[int, ...], strides: tuple[int, ...]) -> Mant:
    """Mean over each ('valid') window of ``2**n`` elements: a sum and a shift."""
    count = int(np.prod(pool))
    cols = im2col(x.m, pool, strides, (1,) * len(pool), "valid")
    return Mant(np.sum(cols, axis=-2), x.f + count.bit_length() - 1)


def reshape_op(x: Mant, shape: tuple[int, ...]) -> Mant:
    return Mant(x.m.reshape((x.m.shape[0],) + tuple(shape)), x.f)


def linear_bounds(
    lo: Mant, hi: Mant, apply: Any
) -> tuple[Mant, Mant]:
    """Bounds of a linear map ``apply(x, sign)`` over ``x`` in ``[lo, hi]``.

    ``apply(x, +1)`` uses only the positive weights, ``apply(x, -1)`` only the
    negative ones: ``low = apply(lo, +) + apply(hi, -)``, ``high = apply(hi, +) + apply(lo, -)``.
    """
    low = add_op([apply(lo, +1), apply(hi, -1)])
    high = add_op([apply(hi, +1), apply(lo, -1)])
    return low, high


def table_op(x: Mant, table: Constant, width: int, f: int) -> Mant:
    """Look each value up by its two's complement bit pattern in a ``width``-bit, scale-``f`` format."""
    m = align(x, f)
    if m.dtype == object:
        m = m.astype(np.int64)
    index = np.bitwise_and(m, (1 << width) - 1) if width > 0 else np.zeros_like(m)
    return Mant(np.asarray(table.m)[index], table.f)


def multiply_op(xs: list[Mant]) -> Mant:
    """Element-wise product of two tensors (exact)."""
    a, c = xs
    return Mant(a.m * c.m, a.f + c.f)
