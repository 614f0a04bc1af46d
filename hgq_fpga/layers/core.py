"""QDense and QActivation."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from .. import quantizers as qz
from .base import QuantizedLayerMixin, build_once, check_activation, input_bits

__all__ = ["QDense", "QActivation"]


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QDense(QuantizedLayerMixin, keras.layers.Dense):
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

    _quantizer_keys = ("input_quantizer", "kernel_quantizer", "bias_quantizer")

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
        check_activation("QDense", activation)
        self._init_quantized(ebops_penalty)
        self.input_quantizer = qz.get(input_quantizer, qz.ActivationQuantizer, name="input_quantizer", dtype=self.dtype_policy)
        self.kernel_quantizer = qz.get(kernel_quantizer, qz.WeightQuantizer, name="kernel_quantizer", dtype=self.dtype_policy)
        self.bias_quantizer = qz.get(bias_quantizer, qz.WeightQuantizer, name="bias_quantizer", dtype=self.dtype_policy)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)
        build_once(self.input_quantizer, input_shape)
        build_once(self.kernel_quantizer, tuple(self.kernel.shape))
        if self.use_bias:
            build_once(self.bias_quantizer, tuple(self.bias.shape))
        self._input_shape = tuple(input_shape)
        self._pack_bits()

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        fs = self._bit_values()
        iq, kq, bq = self.input_quantizer, self.kernel_quantizer, self.bias_quantizer
        x = iq.call(inputs, training=training, f=fs.get(id(iq)))
        kernel, qk = kq.forward(self.kernel, fs.get(id(kq)))
        y = ops.matmul(x, kernel)
        if self.use_bias:
            y = ops.add(y, bq.call(self.bias, f=fs.get(id(bq))))
        self._add_cost(training, fs, qk)
        return self.activation(y) if self.activation is not None else y

    @property
    def qkernel(self) -> Any:
        """The kernel exactly as the firmware holds it."""
        return self.kernel_quantizer.quantize_values(self.kernel)

    @property
    def qbias(self) -> Any:
        """The bias exactly as the firmware holds it (``None`` without bias)."""
        return self.bias_quantizer.quantize_values(self.bias) if self.use_bias else None

    def _ebops(self, fs: dict[int, Any], qkernel: Any = None, *, exact: bool = True) -> Any:
        """``sum_ij bits(x_i) * bits(W_ij)``, differentiable in the bit-widths."""
        iq, kq = self.input_quantizer, self.kernel_quantizer
        bx = input_bits(iq, self._input_shape, fs.get(id(iq)), exact=exact)
        bw = kq.bits(self.kernel, qkernel, fs.get(id(kq)), exact=exact)
        return ops.sum(ops.matmul(bx, bw))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._quantized_config()}


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
