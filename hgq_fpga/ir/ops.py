"""Exact operations on integer mantissas, used twice: by the emulator on data
and by the IR builder on value bounds.

A :class:`Mant` is integer mantissas ``m`` (batch first) at one scale ``f``:
the values are ``m * 2**-f``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..fixed import IntegerOps, overflow_mantissa, quantize, round_shift
from .intmath import as_mantissa, im2col, imatmul, shift

__all__ = [
    "Mant",
    "align",
    "pair_values",
    "quantize_op",
    "dense_op",
    "conv_op",
    "scale_op",
    "relu_op",
    "add_op",
    "concat_op",
    "max_pool_op",
    "avg_pool_op",
    "weight_mantissas",
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


def pair_values(pair: tuple[np.ndarray, int] | None) -> np.ndarray | None:
    """Float64 values of a ``(mantissas, scale)`` constant (weights, tables), or None."""
    if pair is None:
        return None
    m, f = pair
    return np.asarray(m, np.float64) * np.exp2(-float(f))


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


def weight_mantissas(w: np.ndarray) -> tuple[np.ndarray, int]:
    """Exact integer mantissas of fixed-point weights and their common scale."""
    from ..fixed import minimal_format

    fmt = minimal_format(w)
    nz = w != 0
    scale = int(np.max(fmt.f[nz])) if np.any(nz) else 0
    return as_mantissa(w * np.exp2(scale)), scale


def dense_op(x: Mant, kernel: tuple[np.ndarray, int], bias: tuple[np.ndarray, int] | None, bound: float) -> Mant:
    """``x @ W + b`` exactly; ``bound`` bounds the partial sums (mantissa units)."""
    km, kf = kernel
    y = imatmul(x.m, km, bound)
    return _add_bias(Mant(y, x.f + kf), bias)


def _add_bias(y: Mant, bias: tuple[np.ndarray, int] | None) -> Mant:
    if bias is None:
        return y
    bm, bf = bias
    scale = max(y.f, bf)
    return Mant(align(y, scale) + shift(bm, scale - bf), scale)


def conv_op(
    x: Mant,
    kernel: tuple[np.ndarray, int],
    bias: tuple[np.ndarray, int] | None,
    strides: tuple[int, ...],
    padding: str,
    dilation: tuple[int, ...],
    bound: float,
) -> Mant:
    """Convolution (channels_last, 1D or 2D) as patches @ kernel, exactly."""
    km, kf = kernel
    window = km.shape[:-2]
    cols = im2col(x.m, window, strides, dilation, padding)
    flat = cols.reshape(cols.shape[:-2] + (-1,))
    y = imatmul(flat, km.reshape(-1, km.shape[-1]), bound)
    return _add_bias(Mant(y, x.f + kf), bias)


def scale_op(x: Mant, scale: tuple[np.ndarray, int], offset: tuple[np.ndarray, int]) -> Mant:
    """Per-channel ``x * s + o`` (folded batch normalization)."""
    sm, sf = scale
    return _add_bias(Mant(x.m * sm, x.f + sf), offset)


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


def table_op(x: Mant, table: tuple[np.ndarray, int], width: int, f: int) -> Mant:
    """Look each value up by its two's complement bit pattern in a ``width``-bit, scale-``f`` format."""
    m = align(x, f)
    if m.dtype == object:
        m = m.astype(np.int64)
    index = np.bitwise_and(m, (1 << width) - 1) if width > 0 else np.zeros_like(m)
    tm, tf = table
    return Mant(np.asarray(tm)[index], tf)


def multiply_op(xs: list[Mant]) -> Mant:
    """Element-wise product of two tensors (exact)."""
    a, c = xs
    return Mant(a.m * c.m, a.f + c.f)
