"""The differentiable form of the adder-tree rule, in ``keras.ops`` (for training).

For a linear layer ``y_j = sum_i w_ij x_i`` the exact rule
(:func:`~hgq_fpga.resources.rules.adder_tree`) adds one shifted copy of
``x_i`` per nonzero canonical signed digit of ``w_ij`` and sums the copies of
each output with adders that cost one LUT per overlapping bit. In continuous
bit-widths:

.. math::

    \\mathrm{LUT} \\approx a \\sum_{ij} T_{ij} b^x_i + s \\sum_{ij} T_{ij} b^w_{ij}
    - r \\sum_j \\max_{i: T_{ij} > 0} b^x_i

with ``T_ij`` the number of nonzero CSD digits of the quantized ``w_ij``
(exact, from the current weights), ``b^x_i`` the input bits, ``b^w_ij`` the
weight bits; the first term counts one adder of the input's width per
digit, the second the growth of the partial sums, the third the one adder
fewer than terms per output. ``T`` carries the surrogate gradient
``dT/db^w = T / b^w`` (digits per bit), so lowering a weight's bits lowers
the estimate.

The coefficients :data:`SOFT_COEFFS` were fitted (relative least squares)
to the exact form over 60 random dense layers (``benchmarks/estimator.py``
configurations, seed 7); at integer bit-widths the differentiable form is
within 25% of the exact form for every layer and within 8% for the median
layer (``tests/resources/test_soft.py`` checks both bounds on other layers).
"""

from __future__ import annotations

from typing import Any

from ..compat import ops64 as ops
from ..compat.keras import all_layers
from .base import bit_length, pow2

__all__ = [
    "SOFT_COEFFS", "csd_count_ops", "dense_read_luts", "linear_luts", "mantissa_digits_and_bits", "model_luts",
    "set_lut_penalty",
]

#: ``a`` (per digit and input bit), ``s`` (per digit and weight bit), ``r`` (per output).
SOFT_COEFFS = {"a": 1.08, "s": 0.19, "r": 1.24}


def _popcount32(x: Any) -> Any:
    """Set bits of non-negative int32 values (SWAR, no multiplication)."""
    x = ops.subtract(x, ops.bitwise_and(ops.right_shift(x, 1), 0x55555555))
    x = ops.add(ops.bitwise_and(x, 0x33333333), ops.bitwise_and(ops.right_shift(x, 2), 0x33333333))
    x = ops.bitwise_and(ops.add(x, ops.right_shift(x, 4)), 0x0F0F0F0F)
    x = ops.add(x, ops.right_shift(x, 8))
    x = ops.add(x, ops.right_shift(x, 16))
    return ops.bitwise_and(x, 0x3F)


def csd_count_ops(q: Any, f: Any) -> Any:
    """Nonzero canonical signed digits of quantized values ``q`` with ``f`` fractional bits.

    ``m = |q| 2**f`` (an integer below ``2**30``); ``nnz = popcount(h XOR (m + h))``
    with ``h = m >> 1``. Returned as float, without gradient.
    """
    q = ops.stop_gradient(q)
    m = ops.cast(ops.round(ops.abs(q) * pow2(ops.round(ops.stop_gradient(f)))), "int32")
    return ops.cast(_csd_nonzero(m), q.dtype)


def _csd_nonzero(m: Any) -> Any:
    """Nonzero CSD digits of non-negative int32 ``m``: ``popcount(h XOR (m + h))``, ``h = m >> 1``."""
    h = ops.right_shift(m, 1)
    return _popcount32(ops.bitwise_xor(h, ops.add(m, h)))


def mantissa_digits_and_bits(m: Any) -> tuple[Any, Any]:
    """Nonzero CSD digits and bits (``k + i + f``) of fixed-point values with integer mantissas ``m``
    (float, whole numbers below ``2**31``), no gradient. A value ``m 2**-f`` has ``i + f = bitlen(m)``
    if positive and ``bitlen(|m| - 1)`` if negative (two's complement holds ``-2**n`` in ``n + 1``
    bits, sign included), so with ``k = [m < 0]``

    .. math::

        \\mathrm{bits} = k + \\mathrm{bitlen}(|m|) - k \\, [|m| \\text{ a power of two}]

    (0 for ``m = 0``): ``|m| - 1`` itself is not formed (it rounds in float32 from ``2**24`` on,
    where ``|m|`` is exact), and a power of two is ``|m| & (|m| - 1) = 0`` on the integer.
    """
    a = ops.abs(m)
    k = ops.cast(ops.less(m, 0.0), m.dtype)
    whole = ops.cast(a, "int32")
    digits = ops.cast(_csd_nonzero(whole), m.dtype)
    power = ops.cast(ops.equal(ops.bitwise_and(whole, whole - 1), 0), m.dtype)
    return digits, k + bit_length(a) - k * power


def linear_luts(linear: Any, bx: Any, bw: Any, digits: Any, out_bits: Any, value_only: bool = False) -> Any:
    """Differentiable LUTs of a linear map's adder trees.

    Args:
        linear: ``linear(x, w)`` the layer's own linear operation (matmul or
            convolution), applied to bits: it sums over every multiplication.
        bx: input bits, shape ``(1, *input_shape)``.
        bw: weight bits, the kernel's shape.
        digits: CSD digit counts of the quantized kernel (:func:`csd_count_ops`).
        out_bits: ``sum over outputs of max(bits of the inputs with a live weight)``
            (the caller knows its layer's structure).
        value_only: the number alone, for reads outside training (no surrogate-gradient
            terms; a dense layer's reads take :func:`dense_read_luts`).
    """
    c = SOFT_COEFFS
    if value_only:
        t = digits
    else:
        d = ops.stop_gradient(digits)
        b0 = ops.stop_gradient(bw)
        t = d + d * (bw - b0) / ops.maximum(b0, 1.0)  # value T, gradient T / b^w
    per_digit = ops.sum(linear(bx, t))
    growth = ops.sum(linear(ops.ones_like(bx), t * bw))
    return c["a"] * per_digit + c["s"] * growth - c["r"] * out_bits


def dense_read_luts(bx: Any, bw: Any, digits: Any) -> Any:
    """The value of :func:`linear_luts` for a dense layer's ``(1, n_in)`` input bits, in one pass:

    .. math::

        c_{ij} = T_{ij} (a b^x_i + s b^w_{ij}), \\qquad
        \\mathrm{LUT} = \\sum_{ij} c_{ij} - r \\sum_j \\max_{i: c_{ij} > 0} b^x_i

    (``c_ij > 0`` exactly where the weight is live: ``T > 0`` has ``b^w >= 1``). One product a
    weight feeds both reductions: XLA fused each of the three sums of the matmul-free form
    (``a sum bx T``, ``s sum T bw``, the live maximum) with its own copy of the whole
    quantization and digit count, and a read of a 256x256 kernel took 184 us against 72.
    """
    c = SOFT_COEFFS
    column = ops.reshape(bx, (-1, 1))
    per_weight = digits * (c["a"] * column + c["s"] * bw)
    widest = ops.max(ops.where(ops.greater(per_weight, 0.0), column, 0.0), axis=0)
    return ops.sum(per_weight) - c["r"] * ops.sum(widest)


def model_luts(model: Any) -> Any:
    """Differentiable LUTs of a model: the sum of its layers' :meth:`lut_estimate`."""
    total = ops.convert_to_tensor(0.0)
    for layer in all_layers(model):
        if hasattr(layer, "lut_estimate"):
            total = ops.add(total, ops.cast(layer.lut_estimate(), total.dtype))
    return total


def set_lut_penalty(model: Any, value: float) -> None:
    """Add ``value * (differentiable LUTs)`` of every quantized layer to the training loss.

    Set it before ``model.compile``/``fit`` (a compiled step keeps the value it
    was traced with); 0 removes the term.
    """
    if not value >= 0.0:
        raise ValueError(f"set_lut_penalty: value must be >= 0. Received: value={value}")
    for layer in all_layers(model):
        if hasattr(layer, "lut_penalty"):
            layer.lut_penalty = float(value)
