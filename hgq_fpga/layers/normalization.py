"""QBatchNormalization: batch normalization folded into a quantized
per-channel scale and offset.

A batch-normalization layer computes, per channel ``c``,

``y = gamma_c * (x - mean_c) / sqrt(var_c + eps) + beta_c = x * s_c + o_c``

with ``s_c = gamma_c / sqrt(var_c + eps)`` and ``o_c = beta_c - mean_c * s_c``.
QBatchNormalization quantizes the input per element and ``s`` and ``o`` per
channel (``kernel_quantizer`` and ``bias_quantizer``), so the firmware is one
multiplication by a constant and one addition per element: exactly hls4ml's
``BatchNormalization`` layer with ``scale = qkernel`` and ``bias = qbias``.
Training uses the batch statistics (and updates the moving ones) as Keras
does; inference and the firmware use the moving statistics.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from .. import quantizers as qz
from ..compat import ops64 as ops
from ..compat.keras import batch_moments
from .base import QuantizedLayerMixin, build_once, input_bits

__all__ = ["QBatchNormalization"]


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QBatchNormalization(QuantizedLayerMixin, keras.layers.BatchNormalization):
    """Batch normalization with quantized input and folded, quantized scale/offset.

    Takes ``keras.layers.BatchNormalization``'s arguments (``axis`` must be
    the last axis; ``renorm`` is not supported) plus ``input_quantizer``,
    ``kernel_quantizer`` (for the scale ``s``), ``bias_quantizer`` (for the
    offset ``o``) and ``ebops_penalty``.

    Example:
        >>> bn = QBatchNormalization()
        >>> y = bn(np.ones((2, 3), "float32"))
        >>> np.asarray(bn.qkernel).shape
        (3,)
    """

    _quantizer_keys = ("input_quantizer", "kernel_quantizer", "bias_quantizer")

    def __init__(
        self,
        axis: int = -1,
        *,
        input_quantizer: Any = None,
        kernel_quantizer: Any = None,
        bias_quantizer: Any = None,
        ebops_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(axis=axis, **kwargs)
        if self.renorm:
            raise ValueError("QBatchNormalization: renorm=True is not supported. Received: renorm=True")
        self._init_quantized(ebops_penalty)
        self.input_quantizer = qz.get(input_quantizer, qz.ActivationQuantizer, name="input_quantizer", dtype=self.dtype_policy)
        self.kernel_quantizer = qz.get(kernel_quantizer, qz.WeightQuantizer, name="kernel_quantizer", dtype=self.dtype_policy)
        self.bias_quantizer = qz.get(bias_quantizer, qz.WeightQuantizer, name="bias_quantizer", dtype=self.dtype_policy)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)
        if self.axis not in (-1, len(input_shape) - 1):
            raise ValueError(
                "QBatchNormalization: only the last (channel) axis is supported. "
                f"Received: axis={self.axis} for input shape {tuple(input_shape)}"
            )
        channels = (int(input_shape[-1]),)
        build_once(self.input_quantizer, input_shape)
        build_once(self.kernel_quantizer, channels)
        build_once(self.bias_quantizer, channels)
        self._input_shape = tuple(input_shape)
        self._pack_bits()

    def _fold(self, mean: Any, variance: Any) -> tuple[Any, Any]:
        """Float scale ``s`` and offset ``o`` from the statistics."""
        scale = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            scale = scale * self.gamma
        offset = -mean * scale
        if self.center:
            offset = offset + self.beta
        return scale, offset

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        fs = self._bit_values()
        iq, kq, bq = self.input_quantizer, self.kernel_quantizer, self.bias_quantizer
        x = iq.call(inputs, training=training, f=fs.get(id(iq)))
        if training and self.trainable:
            mean, variance = batch_moments(self, x, mask)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        scale, offset = self._fold(mean, variance)
        qs, q_exact = kq.forward(scale, fs.get(id(kq)))
        qo = bq.call(offset, f=fs.get(id(bq)))
        self._add_cost(training, fs, (scale, q_exact))
        return x * qs + qo

    @property
    def qkernel(self) -> Any:
        """The folded per-channel scale ``s`` exactly as the firmware holds it."""
        scale, _ = self._fold(self.moving_mean, self.moving_variance)
        return self.kernel_quantizer.quantize_values(scale)

    @property
    def qbias(self) -> Any:
        """The folded per-channel offset ``o`` exactly as the firmware holds it."""
        _, offset = self._fold(self.moving_mean, self.moving_variance)
        return self.bias_quantizer.quantize_values(offset)

    def firmware_values(self) -> tuple[np.ndarray, np.ndarray]:
        """``(qkernel, qbias)`` as numpy arrays, what the frontend reads: one fold (the
        backend's operations, as the layer computes it), quantized in numpy
        (:meth:`~hgq_fpga.quantizers.WeightQuantizer.firmware_values`: the same numbers). On JAX
        ``qkernel`` and ``qbias`` compile their operations one by one: 1.17 s of the 1.49 s first
        ``estimate`` of a digits MLP with two batch normalizations, 0.39 s this way (the whole estimate
        1.49 -> 0.71 s)."""
        scale, offset = self._fold(self.moving_mean, self.moving_variance)
        return self.kernel_quantizer.firmware_values(scale), self.bias_quantizer.firmware_values(offset)

    def _ebops(self, fs: dict[int, Any], qkernel: Any = None, *, exact: bool = True) -> Any:
        """``sum bits(x) * bits(s)`` over every element (one multiply each).

        ``qkernel`` is ``(float scale, exact quantized scale)`` when known.
        """
        iq, kq = self.input_quantizer, self.kernel_quantizer
        bx = input_bits(iq, self._input_shape, fs.get(id(iq)), exact=exact)
        if qkernel is None:
            scale, q = self._fold(self.moving_mean, self.moving_variance)[0], None
        else:
            scale, q = qkernel
        return ops.sum(bx * kq.bits(scale, q, fs.get(id(kq)), exact=exact))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._quantized_config()}
