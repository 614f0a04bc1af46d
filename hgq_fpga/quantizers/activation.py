"""Quantizer for data flowing through the network (layer inputs)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ..compat import ops64 as ops
from ..fixed import ki_from_range, quantize_core, round_mantissa
from .base import BitQuantizerBase, bits_with_gradient, pow2, quantize_with_gradient
from .granularity import granular_shape

__all__ = ["ActivationQuantizer", "FRESH", "TRAINED", "CALIBRATED"]

#: ``state`` values: never saw data / ranges tracked in training / calibrated.
FRESH, TRAINED, CALIBRATED = 0.0, 1.0, 2.0


def _across_replicas(lo: Any, hi: Any) -> tuple[Any, Any]:
    """A batch's range over every replica of a ``tf.distribute`` strategy.

    Each replica of a ``MirroredStrategy`` sees its own part of the batch and
    updates its own copy of ``vmin``/``vmax``: without this the copies drift
    apart (and inference on each replica would use its own ranges). On one
    device, and on JAX (whose data-parallel step reduces over the global
    batch itself), the range is returned as it is.
    """
    if keras.backend.backend() != "tensorflow":
        return lo, hi
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return lo, hi
    both = ops.stack([-lo, hi])[None]  # one collective for both ends
    top = ops.max(context.all_gather(both, axis=0), axis=0)
    return -top[0], top[1]


@keras.saving.register_keras_serializable(package="hgq_fpga")
class ActivationQuantizer(BitQuantizerBase):
    """Per-element trainable fixed-point quantizer for activations.

    Fractional bits ``f`` are trainable. Integer bits ``i`` and the sign bit
    ``k`` come from the range ``[vmin, vmax]`` each element has seen
    (``ki_from_range`` of the quantized extremes): tracked during training,
    and set by :func:`hgq_fpga.calibrate`. In inference the quantizer is
    exactly ``ap_fixed<k+i+f, k+i, rounding, overflow>`` per element, default
    ``TRN`` + ``WRAP``, so after calibration nothing overflows on the
    calibration data. In training (and while calibrating) only the rounding is
    applied and ranges are recorded. A fresh quantizer (``state == 0``) also
    only rounds.

    An element whose range is ``{0}`` (e.g. a pixel that is always dark) gets
    zero bits and is the constant 0 in firmware.

    Args:
        f0: initial fractional bits.
        granularity: ``"element"``, ``"channel"`` or ``"tensor"``.
        rounding: rounding mode, default ``"TRN"`` (free in hardware).
        overflow: overflow mode, default ``"WRAP"``.
        i: fixed integer bits instead of calibrated ones (e.g. for ``SAT``).
        k: fixed keep-negative bit (0/1) instead of the calibrated one.
        **kwargs: see :class:`~hgq_fpga.quantizers.base.BitQuantizerBase`.
    """

    def __init__(
        self,
        *,
        f0: float = 6.0,
        granularity: str = "element",
        rounding: str = "TRN",
        overflow: str = "WRAP",
        i: int | None = None,
        k: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            f0=f0, granularity=granularity, rounding=rounding, overflow=overflow, **kwargs
        )
        if k not in (None, 0, 1):
            raise ValueError(f"ActivationQuantizer: k must be 0, 1 or None. Received: k={k}")
        self.fixed_i = None if i is None else int(i)
        self.fixed_k = None if k is None else int(k)
        self.calibrating = False

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create ``f``, the range trackers and ``state`` for ``input_shape``."""
        shape = granular_shape(input_shape, self.granularity, batch_axis=True)
        self._add_bits(shape)
        zeros = keras.initializers.Zeros()
        self.vmin = self.add_weight(name="vmin", shape=shape, initializer=zeros, trainable=False)
        self.vmax = self.add_weight(name="vmax", shape=shape, initializer=zeros, trainable=False)
        self.state = self.add_weight(name="state", shape=(), initializer=zeros, trainable=False)
        self._reduce_axes = tuple(a for a, n in enumerate(shape) if n == 1)
        self.built = True

    def _round(self, x: Any, f: Any, xp: Any = ops) -> Any:
        scale = pow2(f) if xp is ops else xp.exp2(f)
        return round_mantissa(x * scale, self.rounding, xp=xp) / scale

    def _ki(self, vmin: Any, vmax: Any, f: Any, xp: Any, exact: bool) -> tuple[Any, Any]:
        """``(k, i)`` from a range and integer ``f``, with ``xp`` = ``keras.ops`` or numpy.

        With ``exact=False`` (training losses only) the range is not rounded
        and ``log2`` not corrected: a cheaper estimate.
        """
        if exact:
            vmin, vmax = self._round(vmin, f, xp), self._round(vmax, f, xp)
        k, i = ki_from_range(vmin, vmax, f, xp=xp, exact=exact)
        if self.fixed_k is not None:
            k = 0.0 * k + self.fixed_k
        if self.fixed_i is not None:
            i = 0.0 * i + self.fixed_i
        return k, i

    def ki(self, f: Any | None = None, *, exact: bool = True) -> tuple[Any, Any]:
        """``(k, i)`` per granular element for integer fractional bits ``f`` (Keras tensors)."""
        f = self.f_exact() if f is None else f
        return self._ki(ops.convert_to_tensor(self.vmin), ops.convert_to_tensor(self.vmax), f, ops, exact)

    def _track(self, x: Any) -> None:
        lo, hi = _across_replicas(ops.min(x, axis=self._reduce_axes, keepdims=True),
                                  ops.max(x, axis=self._reduce_axes, keepdims=True))
        self.vmin.assign(ops.minimum(self.vmin, lo))
        self.vmax.assign(ops.maximum(self.vmax, hi))

    def _quantize_fn(self, rounding_only: bool) -> Any:
        """The exact quantization ``(x, integer f) -> q``, variables read up front."""
        if rounding_only:
            return self._round
        k, i = self.ki()
        seen = ops.greater(ops.convert_to_tensor(self.state), 0.5)

        def full(x: Any, f: Any) -> Any:
            q = quantize_core(x, k, i, f, self.rounding, self.overflow, xp=ops)
            return ops.where(seen, q, self._round(x, f))

        return full

    def quantize_values(self, x: Any, training: bool = False) -> Any:
        """Exact quantized values (no gradient)."""
        x = ops.stop_gradient(ops.convert_to_tensor(x))
        fn = self._quantize_fn(bool(training) or self.calibrating)
        return fn(x, ops.cast(self.f_exact(), x.dtype))

    def call(self, x: Any, training: bool | None = None, f: Any | None = None) -> Any:
        """Quantize ``x``; track ranges when training or calibrating.

        Args:
            x: input batch.
            training: Keras training flag.
            f: the float fractional bits if the caller already read them.
        """
        rounding_only = bool(training) or self.calibrating
        if rounding_only:
            self._track(ops.stop_gradient(x))
            if training:
                self.state.assign(ops.convert_to_tensor(TRAINED, self.state.dtype))
        f = self.f_value() if f is None else f
        return quantize_with_gradient(x, f, self._quantize_fn(rounding_only))

    def bits(self, f: Any | None = None, *, exact: bool = True) -> Any:
        """Differentiable bits per granular element: ``max(k + i + f, 0)``.

        Args:
            f: the float fractional bits if already read.
            exact: exact integer bits (reports) or the cheaper estimate (losses).
        """
        f = self.f_value() if f is None else f
        k, i = self.ki(ops.round(ops.stop_gradient(f)), exact=exact)
        return bits_with_gradient(f, k + i)

    def kif_numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(k, i, f)`` per granular element, in numpy, exactly as inference uses them.

        The same :meth:`_ki` as the Keras path, on float64 copies of the same
        variables, so the converter and the emulator see the integers the
        Keras model uses.
        """
        def read(v: Any) -> np.ndarray:
            return np.asarray(ops.convert_to_numpy(v), np.float64)

        f = np.round(read(self.f))
        k, i = self._ki(read(self.vmin), read(self.vmax), f, np, exact=True)
        return k.astype(np.int64), i.astype(np.int64), f.astype(np.int64)

    def reset_ranges(self) -> None:
        """Forget the recorded ranges (used by calibration)."""
        self.vmin.assign(np.zeros(self.vmin.shape, "float32"))
        self.vmax.assign(np.zeros(self.vmax.shape, "float32"))

    @property
    def is_calibrated(self) -> bool:
        """True once :func:`hgq_fpga.calibrate` has set the ranges."""
        return float(ops.convert_to_numpy(self.state)) == CALIBRATED

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(i=self.fixed_i, k=self.fixed_k)
        return config
