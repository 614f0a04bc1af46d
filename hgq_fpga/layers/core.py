"""QDense."""

from __future__ import annotations

from typing import Any

import keras

from ..compat import ops64 as ops
from .weighted import WeightedLayerMixin

__all__ = ["QDense"]


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QDense(WeightedLayerMixin, keras.layers.Dense):
    """``keras.layers.Dense`` with per-element quantized input, kernel and bias.

    ``y = activation(q_x(x) @ q_k(W) + q_b(b))`` where every element of the
    input, the kernel and the bias has its own trainable fractional bits.

    Args:
        units: output width.
        activation: ``None``/``"linear"`` or ``"relu"``.
        input_quantizer: options for the :class:`~hgq_fpga.quantizers.ActivationQuantizer`
            of the input (dict, instance or ``None`` for defaults).
        kernel_quantizer: options for the kernel's :class:`~hgq_fpga.quantizers.WeightQuantizer`.
        bias_quantizer: options for the bias' ``WeightQuantizer``.
        ebops_penalty: weight of the EBOPs loss term (0: none).
        **kwargs: every other ``keras.layers.Dense`` argument.

    Example:
        >>> layer = QDense(4, activation="relu", kernel_quantizer={"f0": 3})
        >>> y = layer(np.ones((2, 8), "float32"))
        >>> tuple(y.shape), np.asarray(layer.qkernel).shape
        ((2, 4), (8, 4))
    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        *,
        input_quantizer: Any = None,
        kernel_quantizer: Any = None,
        bias_quantizer: Any = None,
        ebops_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, activation=activation, **kwargs)
        self._init_weighted(input_quantizer, kernel_quantizer, bias_quantizer, ebops_penalty)

    def linear(self, x: Any, kernel: Any) -> Any:
        return ops.matmul(x, kernel)
