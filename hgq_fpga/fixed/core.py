"""Fixed-point quantization with exact ``ap_fixed`` / ``ap_ufixed`` semantics.

This is the single definition of the numbers used everywhere in hgq_fpga: the
Keras quantizers call :func:`quantize_core` with ``xp=keras.ops``; the
resource model, the converter and the emulator call it (or :func:`quantize`)
with numpy. Nothing here imports Keras.

A format is given per element by three integers:

* ``k`` -- keep-negative (1: signed two's complement, 0: unsigned),
* ``i`` -- integer bits *excluding* the sign bit,
* ``f`` -- fractional bits (may be negative, as may ``i``).

The width is ``W = k + i + f``; the C++ type is ``ap_fixed<W, k + i>`` when
``k = 1`` and ``ap_ufixed<W, i>`` when ``k = 0``. The representable values are
the multiples of ``2**-f`` in ``[-k * 2**i, 2**i - 2**-f]``. A format with
``W <= 0`` holds only the value 0.

Quantization first rounds ``v = x * 2**f`` to an integer mantissa ``m`` with
the rounding mode, then maps ``m`` into ``[lo, hi]`` with the overflow mode,
where ``lo = -2**(W-1), hi = 2**(W-1) - 1`` (signed) or ``lo = 0,
hi = 2**W - 1`` (unsigned). This is the order that
``ap_fixed`` uses, so a rounding carry can overflow.

Every step is exact in float64 while ``|x * 2**f| < 2**52`` and
``W <= 60``: scaling by a power of two is exact, ``floor`` is exact and the
tie tests compare ``v`` against the exactly representable midpoint
``floor(v) + 0.5`` instead of subtracting.

Example:
    >>> quantize([0.3, -1.75, 5.0], k=1, i=2, f=2, rounding="RND", overflow="SAT")
    array([ 0.25, -1.75,  3.75])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .modes import OverflowMode, RoundingMode

__all__ = [
    "quantize",
    "quantize_core",
    "round_mantissa",
    "round_shift",
    "IntegerOps",
    "overflow_mantissa",
    "to_mantissa",
    "from_mantissa",
    "ki_from_range",
]


def _round_rule(mode: RoundingMode, fl: Any, parts: "_RoundParts", xp: Any) -> Any:
    """The one table of ``ap_fixed`` rounding rules.

    ``fl`` is the mantissa rounded towards minus infinity; ``parts`` answers,
    lazily, whether the dropped fraction is above one half, exactly one half,
    at least one half or nonzero, and whether the value is negative.
    """
    if mode is RoundingMode.TRN:
        return fl
    if mode is RoundingMode.TRN_ZERO:
        up = xp.logical_and(parts.negative(), parts.inexact())
    elif mode is RoundingMode.RND:
        up = parts.at_or_above()
    elif mode is RoundingMode.RND_MIN_INF:
        up = parts.above()
    elif mode is RoundingMode.RND_ZERO:
        up = xp.logical_or(parts.above(), xp.logical_and(parts.tie(), parts.negative()))
    elif mode is RoundingMode.RND_INF:
        up = xp.logical_or(parts.above(), xp.logical_and(parts.tie(), xp.logical_not(parts.negative())))
    else:  # RND_CONV: ties to the even neighbour
        odd = xp.not_equal(xp.floor_divide(fl, 2) * 2, fl)
        up = xp.logical_or(parts.above(), xp.logical_and(parts.tie(), odd))
    if xp is np:
        return np.where(up, fl + 1, fl)
    # keras.ops: add the 0/1, not select: TensorFlow's SelectV2 took 33 us on a 256x256
    # kernel on a CPU core, its Cast and AddV2 a few (the same numbers but the sign of a zero)
    return fl + xp.cast(up, fl.dtype)


class _RoundParts:
    """Lazy comparisons of a dropped fraction against one half."""

    def __init__(self, above: Any, tie: Any, at_or_above: Any, inexact: Any, negative: Any):
        self.above, self.tie, self.at_or_above = above, tie, at_or_above
        self.inexact, self.negative = inexact, negative


def round_mantissa(v: Any, rounding: RoundingMode | str, *, xp: Any = np) -> Any:
    """Round ``v`` (a value in units of the LSB) to an integer.

    The comparisons are exact. A tie (and "above") compares ``v`` with the
    midpoint ``floor(v) + 0.5``, representable below ``2**p`` (``p`` the
    mantissa bits: ``2**23`` in float32); from there on ``v`` is a whole number
    (nothing is dropped) and the midpoint rounds onto ``v`` or its neighbour,
    so a tie must also drop something (``v > floor(v)``). "At or above one
    half" (``RND``) compares the dropped fraction ``v - floor(v)`` with 0.5:
    exact for every ``v`` but negative ones above ``-0.5``, where it rounds but
    never across 0.5 (comparing with the midpoint, float32 ``RND`` rounded an
    even whole ``v`` from ``2**23`` to ``2**24`` up to ``v + 1``).

    Args:
        v: values already scaled by ``2**f``.
        rounding: a :class:`RoundingMode` or its name.
        xp: array namespace (``numpy`` or ``keras.ops``).

    Returns:
        integer-valued array of the same dtype as ``v``.
    """
    mode = RoundingMode.from_string(rounding)
    fl = xp.floor(v)
    if mode is RoundingMode.TRN:
        return fl
    mid = lambda: fl + 0.5  # noqa: E731 (only the tie modes need it; RND compares v - floor(v))
    parts = _RoundParts(
        above=lambda: xp.greater(v, mid()),
        tie=lambda: xp.logical_and(xp.equal(v, mid()), xp.greater(v, fl)),
        at_or_above=lambda: xp.greater_equal(v - fl, 0.5),
        inexact=lambda: xp.greater(v, fl),
        negative=lambda: xp.less(v, 0.0),
    )
    return _round_rule(mode, fl, parts, xp)


def round_shift(m: Any, shift: Any, rounding: RoundingMode | str) -> Any:
    """Round integer mantissas ``m * 2**-shift`` to integers (``shift >= 0``).

    The integer twin of :func:`round_mantissa`, with the same rule table, for
    the emulator's exact arithmetic on int64 or Python-int (object) arrays.

    Example:
        >>> round_shift(np.array([5, -5, 6, -6]), 2, "RND_CONV")  # 1.25 -1.25 1.5 -1.5
        array([ 1, -1,  2, -2])
    """
    mode = RoundingMode.from_string(rounding)
    m = np.asarray(m)
    s = np.asarray(shift)
    if np.any(s < 0):
        raise ValueError("round_shift: shift must be >= 0")
    fl = m >> s
    if mode is RoundingMode.TRN:
        return fl
    twice_rem = (m - (fl << s)) * 2
    span = np.ones_like(s) << s if s.dtype != object else np.vectorize(lambda n: 1 << n, otypes=[object])(s)
    parts = _RoundParts(
        above=lambda: twice_rem > span,
        tie=lambda: twice_rem == span,
        at_or_above=lambda: twice_rem >= span,
        inexact=lambda: twice_rem > 0,
        negative=lambda: m < 0,
    )
    return _round_rule(mode, fl, parts, np)


class IntegerOps:
    """numpy on integer mantissas, as an ``xp`` namespace for :func:`overflow_mantissa`.

    ``exp2`` is an exact left shift; arrays may be int64 or object (Python ints).
    """

    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)
    greater = staticmethod(np.greater)
    greater_equal = staticmethod(np.greater_equal)
    less_equal = staticmethod(np.less_equal)
    logical_and = staticmethod(np.logical_and)

    @staticmethod
    def wrap(m: Any, lo: Any, w: Any) -> Any:
        """``lo + ((m - lo) mod 2**w)`` with a bit mask (two's complement)."""
        return ((m - lo) & (IntegerOps.exp2(w) - 1)) + lo

    @staticmethod
    def exp2(w: Any) -> Any:
        w = np.asarray(w)
        if w.dtype == object:
            return np.vectorize(lambda n: 1 << int(n), otypes=[object])(w)
        return np.left_shift(np.int64(1), w.astype(np.int64))


def overflow_mantissa(
    m: Any, k: Any, width: Any, overflow: OverflowMode | str, *, xp: Any = np
) -> Any:
    """Map integer mantissas ``m`` into a ``width``-bit (un)signed range.

    Args:
        m: integer-valued mantissas (floats, or integers with ``xp=IntegerOps``).
        k: 1 for signed, 0 for unsigned (broadcast against ``m``).
        width: total bits ``W`` (broadcast against ``m``); ``W <= 0`` gives 0.
        overflow: an :class:`OverflowMode` or its name.
        xp: array namespace (numpy, ``keras.ops`` or :class:`IntegerOps`).

    Returns:
        the mantissas after overflow handling. For ``WRAP``:
        ``m - 2**W * floor((m - lo) / 2**W)``. ``SAT_SYM`` clamps signed
        mantissas to ``[-hi, hi]``, except for ``W = 1`` where, as in
        ``ap_fixed``, it clamps to ``[lo, hi] = [-1, 0]`` like ``SAT``.
    """
    mode = OverflowMode.from_string(overflow)
    w = xp.maximum(width, 1)
    signed = xp.greater(k, 0)
    lo = xp.where(signed, -_exp2(w - 1, xp), 0 * w)
    hi = xp.where(signed, _exp2(w - 1, xp), _exp2(w, xp)) - 1
    if mode is OverflowMode.WRAP and hasattr(xp, "wrap"):
        out = xp.wrap(m, lo, w)  # integers: the same modulo as a bit mask
    elif mode is OverflowMode.WRAP:
        span = _exp2(w, xp)
        out = m - span * xp.floor((m - lo) / span)  # exact: span is a power of two
    elif mode is OverflowMode.SAT:
        out = xp.minimum(xp.maximum(m, lo), hi)
    elif mode is OverflowMode.SAT_ZERO:
        inside = xp.logical_and(xp.greater_equal(m, lo), xp.less_equal(m, hi))
        out = xp.where(inside, m, 0)
    else:  # SAT_SYM: signed range [-hi, hi]; unsigned, and signed W = 1, as SAT
        # ap_fixed saturates below at lo with its LSB set: lo + 1 = -hi, except
        # for W = 1 where the LSB is the sign bit, giving lo = -1 (hi = 0).
        sym = xp.logical_and(signed, xp.greater(w, 1))
        lo_sym = xp.where(sym, lo + 1, lo)
        out = xp.minimum(xp.maximum(m, lo_sym), hi)
    return _zero_where_empty(out, width, xp)


def _zero_where_empty(out: Any, width: Any, xp: Any) -> Any:
    """0 where ``width <= 0``; skipped for numpy data when every width is positive."""
    live = xp.greater(width, 0)
    if isinstance(live, np.ndarray) and bool(np.all(live)):
        return out
    return xp.where(live, out, 0)


def quantize_core(
    x: Any,
    k: Any,
    i: Any,
    f: Any,
    rounding: RoundingMode | str = RoundingMode.TRN,
    overflow: OverflowMode | str = OverflowMode.WRAP,
    *,
    xp: Any = np,
) -> Any:
    """Quantize with any array namespace; see :func:`quantize` for semantics.

    ``x``, ``k``, ``i`` and ``f`` must already be floating arrays of one dtype
    in the namespace ``xp`` (numpy float64 for exact results).
    """
    if xp is np and isinstance(x, np.ndarray) and x.dtype == np.float64 and x.ndim \
            and np.broadcast_shapes(x.shape, np.shape(k), np.shape(i), np.shape(f)) == x.shape:
        return _quantize_numpy(x, k, i, f, rounding, overflow)  # the emulator's case: x is the full shape
    scale = _exp2(f, xp)
    if OverflowMode.from_string(overflow) is OverflowMode.WRAP and _is_float64(x):
        # a finite extreme (1e308) times 2**f is inf, and inf - inf NaN: beyond 2**52 LSB a value has no
        # fraction to round (so no rounding mode depends on its sign) and wrapping is periodic in x with
        # period 2**(k+i): reduce such x first, exactly (x mod P keeps a subset of x's bits). Only for
        # float64 (Keras's float64 twin, exact data); float32 training never sees such values.
        period = _exp2(k + i, xp)
        big = xp.logical_and(xp.greater_equal(xp.abs(x * scale), 2.0**52),
                             xp.greater_equal(xp.abs(x), 0.5 * period))  # only overflowing values (see numpy)
        x = xp.where(big, x - period * xp.floor(x / period), x)
    v = x * scale
    if _is_float64(x):  # a subnormal x times 2**f (f < 0) underflows to 0: keep its sign (floor(-tiny) = -1)
        v = xp.where(xp.logical_and(xp.equal(v, 0.0), xp.not_equal(x, 0.0)), xp.sign(x) * 2.0**-1074, v)
    m = round_mantissa(v, rounding, xp=xp)
    m = overflow_mantissa(m, k, k + i + f, overflow, xp=xp)
    if _is_keras(xp):  # times 2**-f: the same number while 2**-f is a normal float (|f| <= 126 in float32,
        return m * _exp2(-f, xp)  # the quantizers' F_LIMIT is 120); a division costs several multiplications
    return m / scale


def _is_keras(xp: Any) -> bool:
    """Whether the namespace ``xp`` is ``keras.ops`` (or :mod:`hgq_fpga.compat.ops64`, the same with float64 kept)."""
    return xp is not np and getattr(xp, "__name__", "").startswith(("keras", "hgq_fpga.compat.ops64"))


def _is_float64(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and ("float64" in str(dtype) or dtype == np.float64)


def _quantize_numpy(x: np.ndarray, k: Any, i: Any, f: Any, rounding: Any, overflow: Any) -> np.ndarray:
    """:func:`quantize_core` for float64 numpy data, the emulator's hot path: the
    same operations, in place on one buffer (no temporaries of the batch's size
    but one). ``WRAP`` is ``m - 2**W floor((m - lo) 2**-W)``, exact in float64
    for mantissas below ``2**53`` (powers of two scale exactly)."""
    rmode, omode = RoundingMode.from_string(rounding), OverflowMode.from_string(overflow)
    scale = np.exp2(f)
    with np.errstate(over="ignore"):  # a finite extreme times 2**f: handled below (WRAP) or saturated
        v = x * scale
    if omode is OverflowMode.WRAP and v.size and not (-(2.0**52) < v.min() and v.max() < 2.0**52):
        # beyond 2**52 LSB (up to float64's largest finite values): wrapping is periodic in x with
        # period 2**(k+i), so reduce x first, exactly (x mod P has a subset of x's bits)
        # only where the value overflows (|x| >= P/2): there x mod P has no more bits than x; a small
        # negative x (in range) would become P - |x|, which can need more bits than float64 has
        period = np.exp2(np.asarray(k + i, np.float64))
        with np.errstate(invalid="ignore"):
            big = (np.abs(v) >= 2.0**52) & (np.abs(x) >= 0.5 * period)
        x = np.where(big, x - period * np.floor(x / period), x)
        v = x * scale
    lost = (v == 0) & (x != 0)  # a subnormal x times 2**f (f < 0) underflows to 0: keep its sign
    if lost.any():
        v = np.where(lost, np.copysign(5e-324, x), v)
    m = np.floor(v) if rmode is RoundingMode.TRN else round_mantissa(v, rmode, xp=np)
    width = np.asarray(k + i + f)
    w = np.maximum(width, 1)
    signed = np.greater(k, 0)
    span = np.exp2(w)
    lo = np.where(signed, -0.5 * span, 0.0)
    if omode is OverflowMode.WRAP:
        np.subtract(m, lo, out=v)
        np.multiply(v, 1.0 / span, out=v)
        np.floor(v, out=v)
        np.multiply(v, span, out=v)
        np.subtract(m, v, out=m)
    else:
        m = overflow_mantissa(m, k, width, omode, xp=np)
    if not bool(np.all(width > 0)):
        m = np.where(width > 0, m, 0.0)
    np.divide(m, scale, out=m)
    return m


def _as_float64(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"quantize: {name} must be finite. Received {bad} NaN/Inf value(s) "
            f"in an array of shape {arr.shape}; clean the data first."
        )
    return arr


def _as_bits(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(
                f"quantize: {name} must hold integers. Received {arr!r}"
            )
    elif arr.dtype.kind not in "iub":
        raise TypeError(f"quantize: {name} must be integer. Received dtype {arr.dtype}")
    return arr.astype(np.float64)


def quantize(
    x: Any,
    k: Any,
    i: Any,
    f: Any,
    rounding: RoundingMode | str = RoundingMode.TRN,
    overflow: OverflowMode | str = OverflowMode.WRAP,
) -> np.ndarray:
    """Quantize ``x`` to the fixed-point format ``(k, i, f)``, exactly as ``ap_fixed``.

    ``k``, ``i`` and ``f`` are integers or integer arrays broadcast against
    ``x`` (per-element formats). The result is the float64 value that
    ``ap_fixed<k+i+f, k+i, AP_<rounding>, AP_<overflow>>`` (or ``ap_ufixed``)
    holds after assignment from ``x``:

    ``m = overflow(round(x * 2**f))``, ``q = m * 2**-f``.

    Args:
        x: values (finite).
        k: keep-negative bit, 0 or 1.
        i: integer bits excluding sign.
        f: fractional bits.
        rounding: rounding mode name, default ``"TRN"`` as in ``ap_fixed``.
        overflow: overflow mode name, default ``"WRAP"`` as in ``ap_fixed``.

    Returns:
        float64 array of quantized values.

    Raises:
        ValueError: on NaN/Inf input or non-integer bit counts.

    Example:
        >>> float(quantize(2.5, 1, 1, 0, "RND_CONV", "WRAP"))  # 2 wraps in ap_fixed<2,2>
        -2.0
    """
    xv = _as_float64("x", x)
    kv, iv, fv = _as_bits("k", k), _as_bits("i", i), _as_bits("f", f)
    shape = np.broadcast_shapes(xv.shape, kv.shape, iv.shape, fv.shape)
    full = np.array(np.broadcast_to(xv, shape if shape else (1,)))  # the in-place numpy path
    out = quantize_core(full, kv, iv, fv, rounding, overflow, xp=np)
    return out.reshape(shape)[()] if not shape else out


def to_mantissa(x: Any, f: Any) -> np.ndarray:
    """Integer mantissas ``m = x * 2**f`` of values already on the grid.

    Args:
        x: fixed-point values (e.g. the output of :func:`quantize`).
        f: fractional bits, broadcast against ``x``.

    Returns:
        ``int64`` array.

    Raises:
        ValueError: if some ``x`` is not a multiple of ``2**-f`` or the
            mantissa does not fit into int64.

    Example:
        >>> to_mantissa([0.75, -2.0], 2)
        array([ 3, -8])
    """
    xv = _as_float64("x", x)
    m = xv * np.exp2(_as_bits("f", f))
    if np.any(m != np.floor(m)):
        raise ValueError(
            "to_mantissa: some values are not on the 2**-f grid; quantize them first. "
            f"Received x={xv.ravel()[:4]}... with f={np.asarray(f).ravel()[:4]}..."
        )
    if np.any(np.abs(m) >= 2.0**63):
        raise ValueError("to_mantissa: a mantissa does not fit into int64.")
    return m.astype(np.int64)


def from_mantissa(m: Any, f: Any) -> np.ndarray:
    """Values ``m * 2**-f`` as float64 (exact while ``|m| < 2**53``).

    Example:
        >>> from_mantissa([3, -8], 2)
        array([ 0.75, -2.  ])
    """
    mv = np.asarray(m)
    if mv.dtype.kind not in "iu":
        mv = _as_bits("m", mv)
    return mv.astype(np.float64) * np.exp2(-_as_bits("f", f))


def _exp2(v: Any, xp: Any) -> Any:
    """``2**v`` for whole-number ``v``: ``xp.exp2`` with numpy and :class:`IntegerOps` (exact);
    with ``keras.ops`` :func:`~hgq_fpga.quantizers.base.pow2_any` (XLA's ``exp2`` on a CPU
    is off by an ulp for most exponents beyond +-12 in float32, TensorFlow's is slow)."""
    if not _is_keras(xp):
        return xp.exp2(v)
    from ..quantizers.base import pow2_any  # (xp is keras.ops: Keras is loaded already)

    return pow2_any(v)


def _floor_log2(v: Any, xp: Any, exact: bool = True) -> Any:
    """``floor(log2 v)`` for ``v > 0``; exact: ``log2`` then a power-of-two check. With ``keras.ops``
    on TensorFlow and JAX: from the exponent field (:func:`~hgq_fpga.quantizers.base.floor_log2`,
    exact either way)."""
    if _is_keras(xp):
        from ..quantizers.base import floor_log2

        e = floor_log2(v)
        if e is not None:
            return e
    e = xp.floor(xp.log2(v))
    if not exact:
        return e
    e = xp.where(xp.greater(_exp2(e, xp), v), e - 1.0, e)
    return xp.where(xp.less_equal(_exp2(e + 1.0, xp), v), e + 1.0, e)


def ki_from_range(
    lo: Any, hi: Any, f: Any, *, xp: Any = np, exact: bool = True
) -> tuple[Any, Any]:
    """Smallest ``(k, i)`` whose format with ``f`` fractional bits holds ``[lo, hi]``.

    ``lo <= hi`` must already be on the ``2**-f`` grid (quantized). Then

    * ``k = 1`` iff ``lo < 0``,
    * ``i = max(floor(log2 hi) + 1 if hi > 0, ceil(log2 -lo) if lo < 0)``,
    * an empty range (``lo = hi = 0``) gets ``k = 0, i = -f``: width 0, the
      constant zero.

    On the grid, ``ceil(log2 -lo) = floor(log2(-lo - 2**-f)) + 1`` (and
    ``-f`` when ``-lo = 2**-f``), so one exact ``floor(log2 a)`` of
    ``a = max(hi, -lo - 2**-f)`` gives ``i = floor(log2 a) + 1`` if
    ``a > 0`` and ``i = -f`` otherwise. Generic over ``xp`` (numpy or
    ``keras.ops``); exact because ``log2`` is corrected with exact powers of
    two. ``exact=False`` skips that correction (a cheaper estimate, off by
    one at most where ``log2`` rounds across an integer; used only inside
    training losses).

    Example:
        >>> k, i = ki_from_range(np.array([-2.0, 0.0]), np.array([1.5, 0.0]), np.array([1.0, 3.0]))
        >>> k, i
        (array([1., 0.]), array([ 1., -3.]))
    """
    a = xp.maximum(hi, -lo - _exp2(-f, xp))
    live = xp.greater(a, 0.0)
    e = _floor_log2(xp.where(live, a, 1.0), xp, exact)
    i = xp.where(live, e + 1.0, -f)
    zero = 0.0 * a  # keeps the dtype of the inputs (float32 or float64)
    k = xp.where(xp.less(lo, 0.0), zero + 1.0, zero)
    return k, i
