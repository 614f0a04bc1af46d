"""A float batch normalization of a QKeras model, checked value by value: the float32 half of
:mod:`hgq_fpga.qkeras_import`.

Keras computes ``BatchNormalization`` at inference as ``y = x * inv + res`` per channel in float32
(``inv = rsqrt(var + eps) * gamma``, ``res = beta - mean * inv``), which rounds; the firmware
computes ``x * inv + res`` exactly, with the very float32 constants. The two agree wherever the
reader of ``y`` cannot tell them apart. :class:`_Float32Affine` finds every input value (on the
input's grid, per channel) whose exact result lies within float32's error of a rounding boundary
of the reader's quantizer -- elsewhere both sides round alike -- and checks those exactly: the
reader must give the same result on QKeras's float32 value as on the exact one, with the product
and the sum rounded separately (TensorFlow's kernels) and fused into one rounding (an FMA, as a
compiler may contract them). A reader that quantizes nothing needs every float32 value exact.

Example:
    >>> import numpy as np
    >>> from hgq_fpga._qkeras_formats import _Format, _Grid
    >>> bn = _Float32Affine("bn", _Grid(4, -64, 63), np.float32([0.75]), np.float32([0.5]))
    >>> bn.check(_Format(1, 3, 2, "RND_CONV", "SAT"))  # x * 0.75 + 0.5 is exact in float32: nothing to refuse
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._qkeras_formats import _fail, _Format, _Grid
from .fixed.core import IntegerOps, overflow_mantissa, round_shift

__all__ = ["MAX_CHECKED"]

#: most input values x channels enumerated to check one batch normalization
MAX_CHECKED = 2**21


def _exact(value: float) -> tuple[int, int]:
    """``(m, s)`` with ``value == m * 2**-s`` exactly (``s >= 0``)."""
    num, den = float(value).as_integer_ratio()
    return num, den.bit_length() - 1


def _at(values: Any, scale: int) -> np.ndarray:
    """Floats as exact integer mantissas at ``2**-scale`` (Python ints)."""
    out = []
    for v in np.asarray(values, np.float64).ravel().tolist():
        m, s = _exact(v)
        out.append(m << (scale - s))
    return np.array(out, dtype=object)


def _round_to_float32(m: np.ndarray, scale: int) -> np.ndarray:
    """The nearest float32 (ties to even) of ``m * 2**-scale``, as mantissas at the same scale."""
    out = []
    for v in m.tolist():
        drop = max(abs(v).bit_length() - 24, scale - 149, 0)  # 24 significant bits; subnormals below 2**-126
        if drop:
            q, r = divmod(v, 1 << drop)
            half = 1 << (drop - 1)
            q += r > half or (r == half and q & 1)
            v = q << drop
        out.append(v)
    return np.array(out, dtype=object)


def _quantized(m: np.ndarray, scale: int, fmt: _Format | None) -> np.ndarray:
    """What the reader sees of ``m * 2**-scale``: the quantizer's mantissas, or the value itself."""
    if fmt is None:
        return m
    if scale >= fmt.f:
        r = round_shift(m, scale - fmt.f, fmt.rounding)
    else:
        r = m * (1 << (fmt.f - scale))
    return overflow_mantissa(r, fmt.k, fmt.k + fmt.i + fmt.f, fmt.overflow, xp=IntegerOps)


@dataclass
class _Float32Affine:
    """``y = x * inv + res`` per channel, computed by QKeras in float32, for every ``x`` on ``grid``."""

    layer: str
    grid: _Grid
    inv: np.ndarray  # float32, one per channel
    res: np.ndarray

    def check(self, fmt: _Format | None) -> None:
        """Raise unless the reader (quantizer ``fmt``, or None) sees the same as the firmware gives."""
        m_all = np.arange(self.grid.lo, self.grid.hi + 1, dtype=np.int64) if self.grid.hi - self.grid.lo < 64 else None
        checked = differ = 0
        for c in range(self.inv.size):
            m = m_all if m_all is not None else self._candidates(c, fmt)
            checked += m.size
            if checked > MAX_CHECKED:
                raise _fail(self.layer, f"this float BatchNormalization needs over {MAX_CHECKED} values checked "
                            "against QKeras's float32 rounding", f"{self.inv.size} channels",
                            "Use QKeras's QDenseBatchnorm / QConv2DBatchnorm (folded into quantized weights), "
                            "or fewer bits before the batch normalization.")
            if m.size:
                x32 = (m.astype(np.float64) * 2.0**-self.grid.f).astype(np.float32)
                differ += self._differ(m, x32, c, fmt)
        if differ:
            reader = "the quantizer after it" if fmt is not None else "the layer after it, which reads it as it is,"
            raise _fail(self.layer, "QKeras computes this BatchNormalization in float32, and the rounding shows: "
                        f"{reader} gets another value than the exact fixed-point result on {differ} input values",
                        "a float BatchNormalization",
                        "Use QKeras's QDenseBatchnorm / QConv2DBatchnorm (folded into quantized weights), or put "
                        "a QActivation with fewer fractional bits right after the batch normalization.")

    def _candidates(self, c: int, fmt: _Format | None) -> np.ndarray:
        """The input mantissas whose exact result lies within float32's error of a boundary of the reader.

        ``y = x * inv + res`` is monotonic in ``x``; float32 moves it by less than
        ``delta = 2**-21 * (max|x * inv| + |res|)`` (four times the bound of two roundings), so only an
        ``x`` whose exact ``y`` is within ``delta`` of a rounding boundary (a multiple of half the
        reader's step; every value, for a reader that quantizes nothing) can read differently.
        """
        inv, res = float(self.inv[c]), float(self.res[c])
        lo, hi, f = self.grid.lo, self.grid.hi, self.grid.f
        if fmt is None or inv == 0.0:  # every value must be exact: only a small grid is enumerated
            if hi - lo >= MAX_CHECKED:
                return np.arange(MAX_CHECKED + 1, dtype=np.int64)  # over the limit: refused by check()
            return np.arange(lo, hi + 1, dtype=np.int64)
        xmax = max(abs(lo), abs(hi)) * 2.0**-f
        delta = 2.0**-21 * (xmax * abs(inv) + abs(res)) + 2.0**-140
        ends = sorted((lo * 2.0**-f * inv + res, hi * 2.0**-f * inv + res))
        step = 2.0 ** -(fmt.f + 1)
        first, last = int(np.floor((ends[0] - delta) / step)), int(np.ceil((ends[1] + delta) / step))
        if last - first > MAX_CHECKED:
            return np.arange(MAX_CHECKED + 1, dtype=np.int64)
        t = np.arange(first, last + 1, dtype=np.float64) * step
        a, b = (t - delta - res) / inv, (t + delta - res) / inv
        m_lo = np.maximum(np.ceil(np.minimum(a, b) * 2.0**f), lo).astype(np.int64)
        m_hi = np.minimum(np.floor(np.maximum(a, b) * 2.0**f), hi).astype(np.int64)
        keep = m_hi >= m_lo
        spans = [np.arange(p, q + 1, dtype=np.int64) for p, q in zip(m_lo[keep], m_hi[keep])]
        return np.unique(np.concatenate(spans)) if spans else np.zeros(0, np.int64)

    def _differ(self, m: np.ndarray, x32: np.ndarray, c: int, fmt: _Format | None) -> int:
        a, pa = _exact(self.inv[c])
        b, pb = _exact(self.res[c])
        product = (x32 * self.inv[c]).astype(np.float32)  # numpy float32: each operation rounded to nearest even
        separate = (product + self.res[c]).astype(np.float32)
        _, exps = np.frexp(separate.astype(np.float64))
        scale = max(self.grid.f + pa, pb, int(np.max(24 - exps, initial=0)))
        exact = np.array([int(v) * a for v in m.tolist()], dtype=object) * (1 << (scale - self.grid.f - pa)) \
            + (b << (scale - pb))
        want = _quantized(exact, scale, fmt)
        seen = [_quantized(_at(separate, scale), scale, fmt), _quantized(_round_to_float32(exact, scale), scale, fmt)]
        return int(max(np.sum(s != want) for s in seen))
