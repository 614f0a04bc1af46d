"""QAdd and QConcatenate: each input has its own per-element quantizer."""

from __future__ import annotations

from typing import Any

import keras

from .. import quantizers as qz
from ..compat import ops64 as ops
from .base import QuantizedLayerMixin, build_once, input_bits

__all__ = ["QAdd", "QConcatenate"]


class _QMergeMixin(QuantizedLayerMixin):
    """Builds one :class:`ActivationQuantizer` per input from one options dict."""

    _quantizer_keys = ("input_quantizers_list",)

    def _init_merge(self, input_quantizer: Any, ebops_penalty: float) -> None:
        self._init_quantized(ebops_penalty)
        proto = qz.get(input_quantizer, qz.ActivationQuantizer)
        options = proto.get_config()
        for key in ("name", "trainable", "dtype"):
            options.pop(key, None)
        self._input_quantizer_options = options
        self.input_quantizers_list: list[qz.ActivationQuantizer] = []

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)  # type: ignore[misc]
        self.input_quantizers_list = [
            qz.ActivationQuantizer(
                name=f"input_quantizer_{n}", dtype=self.dtype_policy, **self._input_quantizer_options
            )
            for n in range(len(input_shape))
        ]
        for q, shape in zip(self.input_quantizers_list, input_shape):
            build_once(q, shape)
        self._input_shapes = [tuple(s) for s in input_shape]
        self._pack_bits()

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        fs = self._bit_values()
        xs = [
            q.call(x, training=training, f=fs.get(id(q)))
            for q, x in zip(self.input_quantizers_list, inputs)
        ]
        self._add_cost(training, fs)
        return super().call(xs)  # type: ignore[misc]

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "ebops_penalty": self.ebops_penalty}  # type: ignore[misc]
        config["input_quantizer"] = dict(self._input_quantizer_options)
        return config


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QAdd(_QMergeMixin, keras.layers.Add):
    """Element-wise sum of per-element quantized inputs.

    Args:
        input_quantizer: options shared by the quantizer of every input.
        ebops_penalty: weight of the adder-bits loss term.

    Example:
        >>> a = np.ones((1, 3), "float32")
        >>> np.asarray(QAdd()([a, 2 * a]))
        array([[3., 3., 3.]], dtype=float32)
    """

    def __init__(self, *, input_quantizer: Any = None, ebops_penalty: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_merge(input_quantizer, ebops_penalty)

    def _ebops(self, fs: dict[int, Any], qkernel: Any = None, *, exact: bool = True) -> Any:
        """Adder bits: ``sum max_n bits(x_n)`` per output element."""
        bits = [
            input_bits(q, s, fs.get(id(q)), exact=exact)
            for q, s in zip(self.input_quantizers_list, self._input_shapes)
        ]
        out = bits[0]
        for b in bits[1:]:
            out = ops.maximum(out, b)
        return ops.sum(out)


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QConcatenate(_QMergeMixin, keras.layers.Concatenate):
    """Concatenation of per-element quantized inputs (wires only, no cost).

    Args:
        axis: concatenation axis, as in ``keras.layers.Concatenate``.
        input_quantizer: options shared by the quantizer of every input.
    """

    def __init__(
        self, axis: int = -1, *, input_quantizer: Any = None, ebops_penalty: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(axis=axis, **kwargs)
        self._init_merge(input_quantizer, ebops_penalty)
