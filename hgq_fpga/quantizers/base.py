"""Shared machinery of the Keras quantizers: trainable fractional bits and the
straight-through / surrogate gradients.

The forward value of a quantized tensor is exactly
:func:`hgq_fpga.fixed.quantize_core` (the one definition of the numbers),
evaluated with ``keras.ops``. The backward pass is

* d q / d x = 1 (straight-through estimator for rounding),
* d q / d f = -ln 2 * (q - x) (HGQ's surrogate: one more fractional bit
  roughly halves the rounding error ``q - x``),

built from ``stop_gradient`` so it works on every Keras backend.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from ..fixed import OverflowMode, RoundingMode
from .granularity import Granularity

__all__ = ["BitQuantizerBase", "surrogate_quantize", "round_bits"]

LN2 = math.log(2.0)


def round_bits(f: Any) -> Any:
    """Round a float bit-width to an integer with a straight-through gradient.

    Uses half-to-even rounding (``keras.ops.round``), which is exact and the
    same as ``numpy.round``, so the converter sees the same integer.
    """
    return f + ops.stop_gradient(ops.round(f) - f)


def surrogate_quantize(x: Any, q: Any, f: Any) -> Any:
    """Return ``q`` in the forward pass with HGQ gradients w.r.t. ``x`` and ``f``.

    ``out = x + sg(q - x) + sg(-ln2 * (q - x)) * (f - sg(f))``, so
    ``d out/d x = 1`` and ``d out/d f = -ln2 * (q - x)``.

    Args:
        x: unquantized values.
        q: quantized values (no gradient needed).
        f: the (float) fractional bits, broadcastable to ``x``.
    """
    err = ops.stop_gradient(q - x)
    return x + err + (-LN2) * err * (f - ops.stop_gradient(f))


class BitQuantizerBase(keras.layers.Layer):
    """Owns the trainable fractional bits ``f`` of one tensor.

    Args:
        f0: initial fractional bits.
        granularity: ``"element"``, ``"channel"`` or ``"tensor"``.
        rounding: an ``ap_fixed`` rounding mode name.
        overflow: an ``ap_fixed`` overflow mode name.
        f_min: lower clip of ``f`` during training.
        f_max: upper clip of ``f``.
        trainable_bits: whether ``f`` is trained.
    """

    def __init__(
        self,
        *,
        f0: float = 6.0,
        granularity: str = "element",
        rounding: str = "TRN",
        overflow: str = "WRAP",
        f_min: float = -12.0,
        f_max: float = 24.0,
        trainable_bits: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not (f_min <= f0 <= f_max):
            raise ValueError(
                f"{type(self).__name__}: need f_min <= f0 <= f_max. "
                f"Received: f0={f0}, f_min={f_min}, f_max={f_max}"
            )
        self.f0 = float(f0)
        self.granularity = Granularity.from_string(granularity)
        self.rounding = RoundingMode.from_string(rounding)
        self.overflow = OverflowMode.from_string(overflow)
        self.f_min = float(f_min)
        self.f_max = float(f_max)
        self.trainable_bits = bool(trainable_bits)
        self.f: keras.Variable | None = None

    def _add_bits(self, shape: tuple[int, ...]) -> None:
        self.f = self.add_weight(
            name="f",
            shape=shape,
            initializer=keras.initializers.Constant(self.f0),
            trainable=self.trainable_bits,
            constraint=ClipConstraint(self.f_min, self.f_max),
        )

    def f_int(self) -> Any:
        """Integer fractional bits used in the forward pass (straight-through)."""
        return round_bits(ops.clip(self.f, self.f_min, self.f_max))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            f0=self.f0,
            granularity=str(self.granularity),
            rounding=str(self.rounding),
            overflow=str(self.overflow),
            f_min=self.f_min,
            f_max=self.f_max,
            trainable_bits=self.trainable_bits,
        )
        return config


@keras.saving.register_keras_serializable(package="hgq_fpga")
class ClipConstraint(keras.constraints.Constraint):
    """Keep a bit-width variable inside ``[low, high]`` after each update."""

    def __init__(self, low: float, high: float) -> None:
        self.low = float(low)
        self.high = float(high)

    def __call__(self, w: Any) -> Any:
        return ops.clip(w, self.low, self.high)

    def get_config(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}
