"""QConv1D and QConv2D (channels_last)."""

from __future__ import annotations

from typing import Any

import keras

from .weighted import WeightedLayerMixin

__all__ = ["QConv1D", "QConv2D"]


class _QConvMixin(WeightedLayerMixin):
    """Quantized convolution: channels_last only; the linear map is Keras's convolution."""

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
        super().__init__(filters, kernel_size, **kwargs)  # the Keras ConvND after this mixin
        if self.data_format != "channels_last":
            raise ValueError(
                f"{type(self).__name__}: only data_format='channels_last' is supported. "
                f"Received: data_format={self.data_format!r}"
            )
        self._init_weighted(input_quantizer, kernel_quantizer, bias_quantizer, ebops_penalty)

    def linear(self, x: Any, kernel: Any) -> Any:
        return self.convolution_op(x, kernel)


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
