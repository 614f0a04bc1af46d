"""QActivation: exact activations (relu, linear) and lookup-table ones (sigmoid, tanh).

A table activation is defined by its table, not by a float formula, so that
Keras inference, the emulator and the firmware give the same bits. After
calibration the input quantizer's formats are known; the table then has one
entry for every value of the *index format* -- the union of the per-element
input formats (``k = max k``, ``i = max i``, ``f = max f`` over the elements,
a zero-width element counting as ``(0, 0, 0)``) -- in the order of their
two's complement bit patterns. Entry ``n`` holds

``round(act(v_n) * 2**table_f) * 2**-table_f`` (``RND``, saturated to
``[-1, 1 - 2**-table_f]``; ``k = 0`` for sigmoid),

computed in float64 by numpy. Training uses the smooth function of the
quantized input; inference before calibration too.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from .. import quantizers as qz
from ..compat import ops64 as ops
from ..fixed import quantize
from ..quantizers.base import pow2_any
from .base import SUPPORTED_ACTIVATIONS, QuantizedLayerMixin, build_once

__all__ = ["QActivation", "EXACT_ACTIVATIONS", "TABLE_ACTIVATIONS"]

EXACT_ACTIVATIONS = SUPPORTED_ACTIVATIONS
TABLE_ACTIVATIONS = {"sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "tanh": np.tanh}


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QActivation(QuantizedLayerMixin, keras.layers.Activation):
    """Quantize the input per element, then apply an activation.

    Args:
        activation: ``"relu"``, ``"linear"`` (exact) or ``"sigmoid"``,
            ``"tanh"`` (lookup table).
        input_quantizer: options for the input's ``ActivationQuantizer``.
        table_f: fractional bits of a table's outputs.
        table_bits: largest index width allowed for a table (``2**table_bits``
            entries); calibration raises if the input needs more.
        ebops_penalty: unused (no multiplications).
        **kwargs: ``keras.layers.Layer`` arguments.

    Example:
        >>> act = QActivation("relu", input_quantizer={"f0": 2})
        >>> np.asarray(act(np.array([[-1.0, 0.3, 1.9]], "float32")))
        array([[0.  , 0.25, 1.75]], dtype=float32)
    """

    quantization_config_keys = QuantizedLayerMixin.quantization_config_keys + ("table_f", "table_bits")

    def __init__(
        self,
        activation: Any,
        *,
        input_quantizer: Any = None,
        table_f: int = 8,
        table_bits: int = 12,
        ebops_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(activation, **kwargs)
        name = getattr(self.activation, "__name__", str(activation))
        if name not in EXACT_ACTIVATIONS and name not in TABLE_ACTIVATIONS:
            raise ValueError(
                f"QActivation: activation {name!r} is not supported: exact ones are "
                f"{', '.join(EXACT_ACTIVATIONS)}, lookup tables {', '.join(TABLE_ACTIVATIONS)}."
            )
        if not 1 <= int(table_bits) <= 16 or not 1 <= int(table_f) <= 24:
            raise ValueError(
                "QActivation: need 1 <= table_bits <= 16 and 1 <= table_f <= 24. "
                f"Received: table_bits={table_bits}, table_f={table_f}"
            )
        self.activation_name = name
        self.table_f = int(table_f)
        self.table_bits = int(table_bits)
        self._init_quantized(ebops_penalty)
        self.input_quantizer = qz.get(
            input_quantizer, qz.ActivationQuantizer, name="input_quantizer", dtype=self.dtype_policy
        )

    @property
    def uses_table(self) -> bool:
        return self.activation_name in TABLE_ACTIVATIONS

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        build_once(self.input_quantizer, input_shape)
        if self.uses_table:
            zeros = keras.initializers.Zeros()
            self.table = self.add_weight(name="table", shape=(2**self.table_bits,), initializer=zeros, trainable=False)
            # index format (k, width, f); width 0 means "no table yet"
            self.table_format = self.add_weight(name="table_format", shape=(3,), initializer=zeros, trainable=False)
        self._pack_bits()
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        iq = self.input_quantizer
        q = iq.call(inputs, training=training, f=self._bit_values().get(id(iq)))
        smooth = self.activation(q)
        if not self.uses_table or training or iq.calibrating:
            return smooth
        k, width, f = (self.table_format[n] for n in range(3))
        span = pow2_any(width)
        m = q * pow2_any(f)
        index = ops.cast(m - span * ops.floor(m / span), "int32")  # two's complement bits
        looked_up = ops.take(self.table, ops.minimum(index, 2**self.table_bits - 1))
        return ops.where(ops.greater(width, 0.5), looked_up, smooth)

    @property
    def quantizer_variables(self) -> list[Any]:
        """Quantization state, including the table and its index format."""
        extra = [self.table, self.table_format] if self.uses_table and self.built else []
        return super().quantizer_variables + extra

    def index_format(self) -> tuple[int, int, int]:
        """``(k, width, f)`` of the table index: the union of the input formats."""
        k, i, f = self.input_quantizer.kif_numpy()
        live = (k + i + f) > 0
        k, i, f = (np.where(live, a, 0) for a in (k, i, f))
        ku, iu, fu = int(np.max(k)), int(np.max(i)), int(np.max(f))
        return ku, ku + iu + fu, fu

    def table_values(self) -> tuple[np.ndarray, tuple[int, int, int]]:
        """The table (float64, ordered by input bit pattern) and its index format.

        Raises:
            ValueError: when the index needs more than ``table_bits`` bits.
        """
        k, width, f = self.index_format()
        if width > self.table_bits:
            raise ValueError(
                f"{self.name}: the {self.activation_name} table needs a {width}-bit index "
                f"(input formats up to k={k}, f={f}) but table_bits={self.table_bits}. Lower the "
                "input bits (f0/f_max of input_quantizer) or raise table_bits."
            )
        n = np.arange(2**max(width, 0), dtype=np.int64)
        signed = n - (k * (n >= 2 ** (width - 1)) << width) if width > 0 else n
        x = signed.astype(np.float64) * 2.0**-f
        k_out = 1 if self.activation_name == "tanh" else 0
        values = quantize(TABLE_ACTIVATIONS[self.activation_name](x), k_out, 0, self.table_f, "RND", "SAT")
        return values, (k, width, f)

    def update_table(self) -> None:
        """Compute and store the table from the calibrated input formats."""
        if not self.uses_table:
            return
        values, fmt = self.table_values()
        full = np.zeros(2**self.table_bits, np.float64)
        full[: len(values)] = values
        self.table.assign(full.astype(self.table.dtype))
        self.table_format.assign(np.array(fmt, self.table_format.dtype))

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), **self._quantized_config()}
        config.update(table_f=self.table_f, table_bits=self.table_bits)
        return config
