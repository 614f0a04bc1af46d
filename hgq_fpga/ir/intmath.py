"""Exact integer arithmetic on mantissa arrays, as wide as needed.

Mantissas are int64 while every value fits, Python ints (object arrays)
beyond; matrix products run on float64 BLAS when every partial sum is below
``2**53`` (then exact), else on integers. Widths are decided from bounds the
IR computes, never guessed from data, so nothing overflows silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fixed.format import bit_length

__all__ = [
    "INT64_SAFE",
    "FLOAT_EXACT",
    "as_mantissa",
    "bit_length",
    "imatmul",
    "shift",
    "im2col",
    "pad_amounts",
]

#: largest magnitude kept in int64 arithmetic (headroom for one addition)
INT64_SAFE = 2**62
#: largest magnitude for which float64 integer arithmetic is exact
FLOAT_EXACT = 2**53


def as_mantissa(values: Any, *, wide: bool = False) -> np.ndarray:
    """Integer array from integer-valued data (int64, or Python ints if ``wide``)."""
    arr = np.asarray(values)
    if wide:
        if arr.dtype == object:
            return arr
        if arr.dtype.kind == "f":
            return np.vectorize(lambda v: int(v), otypes=[object])(arr)
        return arr.astype(object)
    return arr.astype(np.int64)


def shift(m: np.ndarray, s: int) -> np.ndarray:
    """``m * 2**s`` for ``s >= 0`` (exact; widens to Python ints if needed)."""
    if s < 0:
        raise ValueError("shift: use round_shift for right shifts")
    if s == 0:
        return m
    if m.dtype != object and m.size and int(np.max(np.abs(m))) < INT64_SAFE >> s:
        return m << s
    return as_mantissa(m, wide=True) * (1 << s)


def imatmul(a: np.ndarray, b: np.ndarray, bound: float) -> np.ndarray:
    """Exact integer ``a @ b`` given ``bound >= sum |a_ik| |b_kj|``.

    float64 BLAS when ``bound < 2**53``, int64 below ``2**62``, else Python ints.
    """
    if bound < FLOAT_EXACT and a.dtype != object and b.dtype != object:
        out = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
        return out.astype(np.int64)
    if bound < INT64_SAFE and a.dtype != object and b.dtype != object:
        return np.asarray(a, np.int64) @ np.asarray(b, np.int64)
    return as_mantissa(a, wide=True) @ as_mantissa(b, wide=True)


def pad_amounts(size: int, window: int, stride: int, dilation: int, padding: str) -> tuple[int, int, int]:
    """``(out_size, pad_before, pad_after)`` exactly as Keras computes them."""
    eff = (window - 1) * dilation + 1
    if padding == "valid":
        return (size - eff) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2, total - total // 2


def im2col(
    x: np.ndarray,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    padding: str,
    pad_value: Any = 0,
) -> np.ndarray:
    """Patches of ``x`` (N, *spatial, C) -> (N, *out_spatial, prod(window), C)."""
    spatial = x.shape[1:-1]
    outs, pads = [], [(0, 0)]
    for size, w, s, d in zip(spatial, window, strides, dilation):
        out, before, after = pad_amounts(size, w, s, d, padding)
        outs.append(out)
        pads.append((before, after))
    pads.append((0, 0))
    xp = np.pad(x, pads, constant_values=pad_value) if any(p != (0, 0) for p in pads) else x
    taps = []
    for offsets in np.ndindex(*window):
        index = [slice(None)]
        for o, out, s, d in zip(offsets, outs, strides, dilation):
            start = o * d
            index.append(slice(start, start + (out - 1) * s + 1, s))
        index.append(slice(None))
        taps.append(xp[tuple(index)])
    return np.stack(taps, axis=-2)
