"""Quantized pooling: the input is quantized per element, then pooled.

Max pooling of fixed-point values is exact. Average pooling divides the sum
of the window by the pool size; for a power-of-two window that is a shift and
exact.
"""

from __future__ import annotations

from typing import Any

import keras

from .. import quantizers as qz
from ..compat import ops64 as ops
from .base import QuantizedLayerMixin, build_once, input_bits

__all__ = ["QMaxPooling1D", "QMaxPooling2D", "QAveragePooling1D", "QAveragePooling2D"]


class _QPoolMixin(QuantizedLayerMixin):
    def _init_pool(self, input_quantizer: Any, ebops_penalty: float) -> None:
        if self.data_format != "channels_last":
            raise ValueError(
                f"{type(self).__name__}: only data_format='channels_last' is supported. "
                f"Received: data_format={self.data_format!r}"
            )
        self._init_quantized(ebops_penalty)
        self.input_quantizer = qz.get(input_quantizer, qz.ActivationQuantizer, name="input_quantizer", dtype=self.dtype_policy)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        build_once(self.input_quantizer, input_shape)
        self._input_shape = tuple(input_shape)
        self._pack_bits()
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        fs = self._bit_values()
        iq = self.input_quantizer
        x = iq.call(inputs, training=training, f=fs.get(id(iq)))
        self._add_cost(training, fs)
        return super().call(x)  # type: ignore[misc]

    def _ebops(self, fs: dict[int, Any], qkernel: Any = None, *, exact: bool = True) -> Any:
        """Comparator/adder bits: the sum of the input bits (each input enters one op)."""
        iq = self.input_quantizer
        return ops.sum(input_bits(iq, self._input_shape, fs.get(id(iq)), exact=exact))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._quantized_config()}  # type: ignore[misc]


def _pool_init(self: Any, base: type, pool_size: Any, kwargs: dict[str, Any]) -> None:
    input_quantizer = kwargs.pop("input_quantizer", None)
    ebops_penalty = kwargs.pop("ebops_penalty", 0.0)
    base.__init__(self, pool_size, **kwargs)
    self._init_pool(input_quantizer, ebops_penalty)


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QMaxPooling1D(_QPoolMixin, keras.layers.MaxPooling1D):
    """``MaxPooling1D`` of the per-element quantized input.

    Takes ``MaxPooling1D``'s arguments plus ``input_quantizer`` and ``ebops_penalty``.
    """

    def __init__(self, pool_size: Any = 2, **kwargs: Any) -> None:
        _pool_init(self, keras.layers.MaxPooling1D, pool_size, kwargs)


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QMaxPooling2D(_QPoolMixin, keras.layers.MaxPooling2D):
    """``MaxPooling2D`` of the per-element quantized input.

    Example:
        >>> tuple(QMaxPooling2D(2)(np.ones((1, 4, 4, 3), "float32")).shape)
        (1, 2, 2, 3)
    """

    def __init__(self, pool_size: Any = (2, 2), **kwargs: Any) -> None:
        _pool_init(self, keras.layers.MaxPooling2D, pool_size, kwargs)


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QAveragePooling1D(_QPoolMixin, keras.layers.AveragePooling1D):
    """``AveragePooling1D`` of the per-element quantized input."""

    def __init__(self, pool_size: Any = 2, **kwargs: Any) -> None:
        _pool_init(self, keras.layers.AveragePooling1D, pool_size, kwargs)


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QAveragePooling2D(_QPoolMixin, keras.layers.AveragePooling2D):
    """``AveragePooling2D`` of the per-element quantized input."""

    def __init__(self, pool_size: Any = (2, 2), **kwargs: Any) -> None:
        _pool_init(self, keras.layers.AveragePooling2D, pool_size, kwargs)
