"""QConv1D and QConv2D (channels_last)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from .. import quantizers as qz
from .base import QuantizedLayerMixin, build_once, check_activation, input_bits

__all__ = ["QConv1D", "QConv2D"]


class _QConvMixin(QuantizedLayerMixin):
    """Shared body of the quantized convolutions (composed with ``keras.layers.ConvND``)."""

    _quantizer_keys = ("input_quantizer", "kernel_quantizer", "bias_quantizer")

    def _init_conv(
        self, input_quantizer: Any, kernel_quantizer: Any, bias_quantizer: Any, ebops_penalty: float
    ) -> None:
        name = type(self).__name__
        check_activation(name, self.activation)
        if self.data_format != "channels_last":
            raise ValueError(
                f"{name}: only data_format='channels_last' is supported. "
                f"Received: data_format={self.data_format!r}"
            )
        self._init_quantized(ebops_penalty)
        self.input_quantizer = qz.get(input_quantizer, qz.ActivationQuantizer, name="input_quantizer", dtype=self.dtype_policy)
        self.kernel_quantizer = qz.get(kernel_quantizer, qz.WeightQuantizer, name="kernel_quantizer", dtype=self.dtype_policy)
        self.bias_quantizer = qz.get(bias_quantizer, qz.WeightQuantizer, name="bias_quantizer", dtype=self.dtype_policy)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)  # type: ignore[misc]
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
        y = self.convolution_op(x, kernel)
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
        """Sum over output positions of ``bits(x) * bits(W)`` in each window.

        Computed as one convolution of the input bits with the kernel bits.
        """
        iq, kq = self.input_quantizer, self.kernel_quantizer
        bx = input_bits(iq, self._input_shape, fs.get(id(iq)), exact=exact)
        bits_w = kq.bits(self.kernel, qkernel, fs.get(id(kq)), exact=exact)
        return ops.sum(self.convolution_op(bx, bits_w))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._quantized_config()}  # type: ignore[misc]


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QConv1D(_QConvMixin, keras.layers.Conv1D):
    """``keras.layers.Conv1D`` with per-element quantized input, kernel and bias.

    Accepts every ``Conv1D`` argument (``strides``, ``padding='valid'|'same'``,
    ...) plus ``input_quantizer``, ``kernel_quantizer``, ``bias_quantizer`` and
    ``ebops_penalty`` as in :class:`QDense`. ``activation`` is ``linear`` or ``relu``.

    Example:
        >>> layer = QConv1D(3, 2, padding="same")
        >>> tuple(layer(np.ones((1, 5, 2), "float32")).shape)
        (1, 5, 3)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        *,
        input_quantizer: Any = None,
        kernel_quantizer: Any = None,
        bias_quantizer: Any = None,
        ebops_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(filters, kernel_size, **kwargs)
        self._init_conv(input_quantizer, kernel_quantizer, bias_quantizer, ebops_penalty)


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QConv2D(_QConvMixin, keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with per-element quantized input, kernel and bias.

    Accepts every ``Conv2D`` argument (``strides``, ``padding='valid'|'same'``,
    ...) plus ``input_quantizer``, ``kernel_quantizer``, ``bias_quantizer`` and
    ``ebops_penalty`` as in :class:`QDense`. ``activation`` is ``linear`` or ``relu``.

    Example:
        >>> layer = QConv2D(4, (3, 3), strides=2, activation="relu")
        >>> tuple(layer(np.ones((1, 8, 8, 1), "float32")).shape)
        (1, 3, 3, 4)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        *,
        input_quantizer: Any = None,
        kernel_quantizer: Any = None,
        bias_quantizer: Any = None,
        ebops_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(filters, kernel_size, **kwargs)
        self._init_conv(input_quantizer, kernel_quantizer, bias_quantizer, ebops_penalty)
