"""Exact output bounds of the IR operations (used by :meth:`Op.infer <hgq_fpga.ir.ops.Op.infer>`).

Bounds are integer mantissas at a tensor's scale, computed with the same
exact integer operations as the data (:mod:`hgq_fpga.ir.exact`), so the
format of every tensor is proven, never guessed from data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from ..fixed import FixedFormat, round_shift
from .exact import Constant, Mant, add_op, linear_bounds, quantize_op
from .graph import TensorInfo
from .intmath import as_mantissa, im2col, imatmul

if TYPE_CHECKING:  # pragma: no cover
    from .ops import Linear, Quantize, Scale

__all__ = ["monotone", "quantized", "linear", "scaled", "product", "tabulated", "matmul", "conv"]


def _pair(t: TensorInfo) -> tuple[Mant, Mant]:
    if t.lo is None or t.hi is None:
        raise ValueError(f"tensor {t.name!r} has no fixed-point format (it is the float input)")
    return Mant(t.lo[None], t.f), Mant(t.hi[None], t.f)


def _abs_max(t: TensorInfo) -> np.ndarray:
    return np.maximum(np.abs(t.lo.astype(np.float64)), np.abs(t.hi.astype(np.float64)))


def tensor(shape: tuple[int, ...], lo: Mant, hi: Mant, abs_bound: float | None = None,
           declared: FixedFormat | None = None) -> TensorInfo:
    """A tensor with bounds ``[lo, hi]`` (aligned to the finer scale); ``abs_bound``
    defaults to the largest bound magnitude."""
    scale = max(lo.f, hi.f)
    lo_m = np.asarray(lo.m if lo.f == scale else lo.m << (scale - lo.f))[0]
    hi_m = np.asarray(hi.m if hi.f == scale else hi.m << (scale - hi.f))[0]
    out = TensorInfo("", tuple(shape), lo_m, hi_m, scale, 0.0, declared)
    out.abs_bound = float(np.max(_abs_max(out), initial=0.0)) if abs_bound is None else float(abs_bound)
    return out


def monotone(fn: Callable[[list[Mant]], Mant], ins: list[TensorInfo], shape: tuple[int, ...]) -> TensorInfo:
    """Operations non-decreasing in every input: bounds map through ``fn`` directly."""
    los, his = zip(*(_pair(t) for t in ins))
    out = tensor(shape, fn(list(los)), fn(list(his)))
    out.abs_bound = max([out.abs_bound] + [t.abs_bound * 2.0 ** (out.f - t.f) * len(ins) for t in ins])
    return out


def quantized(q: Quantize, src: TensorInfo, shape: tuple[int, ...]) -> TensorInfo:
    """Bounds of a quantizer: its format's range, tight where the input cannot overflow."""
    k, i, f = q.k, q.i, q.f
    live = (k + i + f) > 0
    top = np.where(live, i + f, 0)
    fmin = -k * (np.ones_like(top) << top) * live
    fmax = ((np.ones_like(top) << top) - 1) * live
    scale = int(np.max(f[live])) if np.any(live) else 0
    up = np.where(live, scale - f, 0)
    lo, hi = Mant((fmin << up)[None], scale), Mant((fmax << up)[None], scale)
    if src.is_fixed:
        in_lo, in_hi = _pair(src)
        s = in_lo.f - f
        r_lo = round_shift(in_lo.m, np.maximum(s, 0), q.rounding) << np.maximum(-s, 0)
        r_hi = round_shift(in_hi.m, np.maximum(s, 0), q.rounding) << np.maximum(-s, 0)
        inside = (r_lo[0] >= fmin) & (r_hi[0] <= fmax)
        if q.overflow in ("SAT", "SAT_SYM"):
            inside = np.ones_like(inside)
        q_lo = quantize_op(in_lo, k, i, f, q.rounding, q.overflow)
        q_hi = quantize_op(in_hi, k, i, f, q.rounding, q.overflow)
        lo = Mant(np.where(inside, q_lo.m, lo.m), lo.f)
        hi = Mant(np.where(inside, q_hi.m, hi.m), hi.f)
    return tensor(shape, lo, hi, declared=q.format)


def matmul(x: np.ndarray, w: np.ndarray, bound: float) -> np.ndarray:
    """``x @ w`` on mantissas (float for bound computations, exact integers otherwise)."""
    if np.isinf(bound) or x.dtype.kind == "f":
        return np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    return imatmul(x, w, bound)


def conv(x: np.ndarray, w: np.ndarray, bound: float, strides: tuple[int, ...], padding: str,
         dilation: tuple[int, ...]) -> np.ndarray:
    """A convolution as patches @ kernel on mantissas."""
    cols = im2col(x, w.shape[:-2], strides, dilation, padding)
    flat = cols.reshape(cols.shape[:-2] + (-1,))
    return matmul(flat, w.reshape(-1, w.shape[-1]), bound)


def _with_bias(lo: Mant, hi: Mant, bias: Constant | None) -> tuple[Mant, Mant]:
    if bias is None:
        return lo, hi
    b = Mant(bias.m[None], bias.f)
    return add_op([lo, b]), add_op([hi, b])


def linear(op: Linear, src: TensorInfo, shape: tuple[int, ...]) -> TensorInfo:
    """A dense/conv node: exact bounds from the split weights, plus bias; sets ``op.bound``."""
    km, kf, bias = op.kernel.m, op.kernel.f, op.bias
    x_lo, x_hi = _pair(src)
    abs_x = _abs_max(src)[None]
    bound = float(np.max(op.apply(abs_x, np.abs(km).astype(np.float64), np.inf), initial=0.0))
    if bias is not None:
        bound += float(np.max(np.abs(bias.m), initial=0)) * 2.0 ** max(0, x_lo.f + kf - bias.f)
    op.bound = bound
    pos, neg = np.where(km > 0, km, 0), np.where(km < 0, km, 0)

    def part(x: Mant, sign: int) -> Mant:
        return Mant(op.apply(x.m, pos if sign > 0 else neg, bound), x.f + kf)

    lo, hi = _with_bias(*linear_bounds(x_lo, x_hi, part), bias)
    return tensor(shape, lo, hi, bound * 2.0 ** max(0, (bias.f if bias else 0) - x_lo.f - kf) + 1)


def scaled(op: Scale, src: TensorInfo, shape: tuple[int, ...]) -> TensorInfo:
    """Per-channel ``x * s + o``: bounds from the sign of each scale."""
    from .exact import scale_op

    x_lo, x_hi = _pair(src)
    sm, sf = op.scale.m, op.scale.f
    pos, neg = np.where(sm > 0, sm, 0), np.where(sm < 0, sm, 0)

    def part(x: Mant, sign: int) -> Mant:
        return scale_op(x, Constant(pos if sign > 0 else neg, sf, op.scale.fmt), None)

    lo, hi = _with_bias(*linear_bounds(x_lo, x_hi, part), op.offset)
    out = tensor(shape, lo, hi)
    out.abs_bound += 1.0
    return out


def product(ins: list[TensorInfo], shape: tuple[int, ...]) -> TensorInfo:
    """Element-wise product; bounds from the four corner products."""
    (alo, ahi), (clo, chi) = (_pair(t) for t in ins)
    corners = [as_mantissa(x.m, wide=True) * as_mantissa(y.m, wide=True) for x in (alo, ahi) for y in (clo, chi)]
    lo, hi = np.minimum.reduce(corners), np.maximum.reduce(corners)
    scale = alo.f + clo.f
    big = max(abs(int(np.min(lo))), abs(int(np.max(hi))))
    wide = big >= 2**62
    return tensor(shape, Mant(as_mantissa(lo, wide=wide), scale), Mant(as_mantissa(hi, wide=wide), scale),
                  float(big) + 1.0)


def tabulated(table: Constant, shape: tuple[int, ...]) -> TensorInfo:
    """A lookup: any table entry can come out."""
    lo = Mant(np.full((1,) + shape, int(np.min(table.m))), table.f)
    hi = Mant(np.full((1,) + shape, int(np.max(table.m))), table.f)
    return tensor(shape, lo, hi, float(np.max(np.abs(table.m), initial=0)) + 1.0)

