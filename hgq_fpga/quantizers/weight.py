"""Quantizer for constant tensors: kernels, biases, folded batch-norm scales."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ..compat import ops64 as ops
from ..fixed import FixedFormat, ki_from_range, quantize_core, round_mantissa
from .base import BitQuantizerBase, bits_with_gradient, pow2, quantize_with_gradient
from .cost import mantissa_digits_and_bits
from .granularity import granular_shape

__all__ = ["WeightQuantizer"]


@keras.saving.register_keras_serializable(package="hgq_fpga")
class WeightQuantizer(BitQuantizerBase):
    """Per-element trainable fixed-point quantizer for a weight tensor.

    The fractional bits ``f`` are trainable (one per element by default).
    With ``i=None`` (the default) the integer bits of every element are taken
    from its own value, so a weight never overflows and the quantized weight is

    ``q = round(w * 2**f) * 2**-f``

    with the chosen rounding mode (default ``RND``). A weight whose ``f`` is so
    low that it rounds to zero has zero bits: it is pruned. With a fixed ``i``
    (and ``k``), the overflow mode (default ``SAT_SYM``) applies as in
    ``ap_fixed<k+i+f, k+i, AP_RND, AP_SAT_SYM>``.

    Args:
        f0: initial fractional bits.
        granularity: ``"element"`` (default), ``"channel"`` (last axis) or ``"tensor"``.
        rounding: rounding mode, default ``"RND"``.
        overflow: overflow mode, default ``"SAT_SYM"`` (used only with fixed ``i``).
        i: fixed integer bits (excluding sign), or ``None`` to take them from the values.
        k: keep-negative bit used with a fixed ``i`` (default 1).
        **kwargs: see :class:`~hgq_fpga.quantizers.base.BitQuantizerBase`.

    Example:
        >>> import numpy as np
        >>> q = WeightQuantizer(f0=2)
        >>> q.build((3,))
        >>> np.asarray(q.quantize_values(np.array([0.3, -0.1, 1.9], "float32")))
        array([0.25, 0.  , 2.  ], dtype=float32)
    """

    def __init__(
        self,
        *,
        f0: float = 6.0,
        granularity: str = "element",
        rounding: str = "RND",
        overflow: str = "SAT_SYM",
        i: int | None = None,
        k: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            f0=f0, granularity=granularity, rounding=rounding, overflow=overflow, **kwargs
        )
        if k not in (0, 1):
            raise ValueError(f"WeightQuantizer: k must be 0 or 1. Received: k={k}")
        self.fixed_i = None if i is None else int(i)
        self.fixed_k = int(k)

    def build(self, shape: tuple[int, ...]) -> None:
        """Create ``f`` for a weight tensor of ``shape`` (no batch axis)."""
        self._add_bits(granular_shape(shape, self.granularity))
        self.built = True

    def quantize_with(self, w: Any, f: Any, xp: Any = ops) -> Any:
        """Exact quantization of ``w`` with given integer ``f`` (no variables read, no gradient rule).

        ``xp``: ``keras.ops`` (tensors), or numpy for arrays (the same numbers, in the arrays'
        dtype: float64 arrays of float32 weights give the float32 results exactly).
        """
        if self.fixed_i is None:
            scale = pow2(f) if xp is ops else xp.exp2(f)
            return round_mantissa(w * scale, self.rounding, xp=xp) / scale
        k = 0.0 * f + float(self.fixed_k)
        i = 0.0 * f + float(self.fixed_i)
        return quantize_core(w, k, i, f, self.rounding, self.overflow, xp=xp)

    def quantize_values(self, w: Any) -> Any:
        """The exact quantized values (no gradient): what the firmware holds."""
        w = ops.stop_gradient(ops.convert_to_tensor(w))
        return self.quantize_with(w, ops.cast(self.f_exact(), w.dtype))

    def firmware_values(self, w: Any) -> np.ndarray:
        """:meth:`quantize_values` as a numpy array, computed in numpy on float64 copies of float32
        weights (the same numbers: ``tests/quantizers``, every rounding and overflow mode), so that
        reading a model's firmware compiles nothing on JAX, where the eager operations compiled one
        by one (with :meth:`format_of`'s ``f``, the digits MLP's first ``estimate`` in a process
        4.5 s -> 0.44 s). Weights of another dtype take the backend's path."""
        a = np.asarray(ops.convert_to_numpy(w))
        if a.dtype != np.float32:
            return np.asarray(ops.convert_to_numpy(self.quantize_values(w)))
        return self.quantize_with(a.astype(np.float64), self.f_exact_array(), xp=np).astype(np.float32)

    def call(self, w: Any, training: bool | None = None, f: Any | None = None) -> Any:
        """Quantize ``w`` with straight-through and surrogate-bit gradients."""
        return self.forward(w, f)[0]

    def forward(self, w: Any, f: Any | None = None) -> tuple[Any, Any]:
        """``(differentiable quantized w, exact quantized w)`` in one pass.

        Layers that also need :meth:`bits` pass the exact values on, so the
        quantization is computed once per step.

        Args:
            w: the float weights.
            f: the float fractional bits if the caller already read them.
        """
        f = self.f_value() if f is None else f
        q = quantize_with_gradient(w, f, self.quantize_with)
        return q, ops.stop_gradient(q)

    def bits(
        self, w: Any, q: Any | None = None, f: Any | None = None, *, exact: bool = True
    ) -> Any:
        """Differentiable bits per element: ``k + i + f`` where nonzero, else 0.

        ``k`` and ``i`` are those of each quantized value (or the fixed ones);
        the gradient w.r.t. ``f`` is 1 for every live (nonzero) element.

        Args:
            w: the float weights.
            q: their exact quantized values if already known (from :meth:`forward`).
            f: the float fractional bits if already read.
            exact: exact integer bits (reports) or the cheaper estimate (losses).
        """
        q = self.quantize_values(w) if q is None else q
        f = self.f_value() if f is None else f
        if self.fixed_i is None:
            k, i = ki_from_range(q, q, ops.round(ops.stop_gradient(f)), xp=ops, exact=exact)
            base = k + i
        else:
            base = float(self.fixed_k + self.fixed_i)
        return bits_with_gradient(f, base, ops.not_equal(q, 0.0))

    def digits_and_bits(self, w: Any, f: Any = None) -> tuple[Any, Any] | None:
        """Value only: each weight's nonzero CSD digits and :meth:`bits`, from its mantissa.

        With ``i=None`` the quantized weight is ``m 2**-f`` with the integer mantissa
        ``m = round(w 2**f)`` (``f`` the variable's, or the float ``f`` given, rounded): both from ``m``
        (:func:`~hgq_fpga.quantizers.cost.mantissa_digits_and_bits`), the numbers :meth:`bits`
        and :func:`~hgq_fpga.quantizers.cost.csd_count_ops` compute from the quantized value in
        about twice the operations a weight (``2**-f``, ``log2``: for the budget's reads of the
        cost, where it was most of the compute). Exact for every mantissa below ``2**31``, where
        :meth:`bits` forms ``|q| - 2**-f``, which float32 rounds for a negative power of two from
        ``2**25`` LSBs on (one bit more). None with a fixed ``i`` (overflow applies).

        Example:
            >>> q = WeightQuantizer(f0=2)
            >>> q.build((4,))
            >>> digits, bits = q.digits_and_bits(np.array([0.75, -0.25, 0.1, -1.75], "float32"))
            >>> [float(d) for d in digits], [float(b) for b in bits]
            ([2.0, 1.0, 0.0, 2.0], [2.0, 1.0, 0.0, 4.0])
        """
        if self.fixed_i is not None:
            return None
        w = ops.stop_gradient(ops.convert_to_tensor(w))
        f_int = self.f_exact() if f is None else ops.round(ops.stop_gradient(f))
        m = round_mantissa(w * pow2(ops.cast(f_int, w.dtype)), self.rounding, xp=ops)
        return mantissa_digits_and_bits(m)

    def format_of(self, q: Any) -> FixedFormat:
        """The per-element format of quantized values ``q`` (numpy), as :meth:`bits` counts it.

        ``f`` is the trained (rounded) fractional bits of each element; ``k``
        and ``i`` are those of its value (:func:`~hgq_fpga.fixed.ki_from_range`)
        or the fixed ones; a zero element has width 0.
        """
        qv = np.asarray(q, np.float64)
        f = np.broadcast_to(self.f_exact_array(), qv.shape)
        if self.fixed_i is None:
            k, i = ki_from_range(qv, qv, f)
        else:
            k, i = np.full(qv.shape, float(self.fixed_k)), np.full(qv.shape, float(self.fixed_i))
        zero = qv == 0
        return FixedFormat(np.where(zero, 0, k).astype(np.int64), np.where(zero, -f, i).astype(np.int64),
                           f.astype(np.int64))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(i=self.fixed_i, k=self.fixed_k)
        return config
