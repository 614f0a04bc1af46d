"""QDense and QActivation."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from .. import quantizers as qz
from .base import QuantizedLayerMixin, build_once, check_activation
from .weighted import WeightedLayerMixin

__all__ = ["QDense", "QActivation"]


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


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QActivation(QuantizedLayerMixin, keras.layers.Activation):
    """Quantize the input per element, then apply ``relu`` or ``linear``.

    Args:
        activation: ``"relu"`` or ``"linear"``.
        input_quantizer: options for the input's ``ActivationQuantizer``.
        ebops_penalty: unused (no multiplications); kept for a uniform interface.
        **kwargs: ``keras.layers.Layer`` arguments.

    Example:
        >>> act = QActivation("relu", input_quantizer={"f0": 2})
        >>> np.asarray(act(np.array([[-1.0, 0.3, 1.9]], "float32")))
        array([[0.  , 0.25, 1.75]], dtype=float32)
    """

    def __init__(
        self, activation: Any, *, input_quantizer: Any = None, ebops_penalty: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(activation, **kwargs)
        check_activation("QActivation", activation)
        self._init_quantized(ebops_penalty)
        self.input_quantizer = qz.get(input_quantizer, qz.ActivationQuantizer, name="input_quantizer", dtype=self.dtype_policy)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        build_once(self.input_quantizer, input_shape)
        self._pack_bits()
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        iq = self.input_quantizer
        return self.activation(iq.call(inputs, training=training, f=self._bit_values().get(id(iq))))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._quantized_config()}
