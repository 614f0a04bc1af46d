"""QSoftmax: a softmax built from exact fixed-point steps and two lookup tables.

Over the last axis of a ``(batch, n)`` input, after calibration:

1. ``q = input_quantizer(x)`` (per element; the exp table is indexed by the bit
   patterns of the union of those formats, as in ``QActivation``);
2. ``e_j = exp_table[bits(q_j)]`` with ``exp_table = RND/SAT(exp(v), ufixed<i_e, exp_f>)``;
3. ``s = sum_j e_j`` (exact);
4. ``s_q = TRN/SAT(s, ufixed<i_s, f_s>)`` with ``i_s = i_e + ceil(log2 n)`` and
   ``i_s + f_s = inv_bits``;
5. ``r = inv_table[bits(s_q)]`` with ``inv_table = RND/SAT(1/v, ufixed<i_r, inv_f>)``;
6. ``y_j = RND/SAT(e_j * r, ufixed<1, out_f>)``.

Every step is exact fixed-point arithmetic on tables computed once in numpy,
so Keras inference, the emulator and the firmware agree bit for bit. There is
no max subtraction: ``exp`` saturates at ``2**i_e`` (``i_e <= exp_i_max``), so
very large logits lose resolution (the saturation is the accuracy cost of
this latency-style softmax). Training uses the smooth softmax of ``q``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from .. import quantizers as qz
from ..compat import ops64 as ops
from ..fixed import quantize, quantize_core
from ..quantizers.base import pow2_any
from .base import QuantizedLayerMixin, build_once

__all__ = ["QSoftmax"]

_PARAMS = ("k", "width", "f", "i_e", "i_s", "f_s", "i_r")


@keras.saving.register_keras_serializable(package="hgq_fpga")
class QSoftmax(QuantizedLayerMixin, keras.layers.Layer):
    """Softmax over the last axis with per-element quantized input and table arithmetic.

    Args:
        input_quantizer: options for the input's ``ActivationQuantizer``.
        exp_f: fractional bits of ``exp`` values.
        exp_i_max: largest integer bits of ``exp`` values (saturation point ``2**exp_i_max``).
        inv_bits: index bits of the ``1/s`` table.
        inv_f: fractional bits of ``1/s`` values.
        out_f: fractional bits of the outputs.
        table_bits: largest index width of the exp table.

    Example:
        >>> sm = QSoftmax()
        >>> tuple(sm(np.zeros((2, 4), "float32")).shape)
        (2, 4)
    """

    quantization_config_keys = QuantizedLayerMixin.quantization_config_keys + (
        "exp_f", "exp_i_max", "inv_bits", "inv_f", "out_f", "table_bits",
    )

    def __init__(
        self,
        *,
        input_quantizer: Any = None,
        exp_f: int = 8,
        exp_i_max: int = 8,
        inv_bits: int = 12,
        inv_f: int = 10,
        out_f: int = 8,
        table_bits: int = 12,
        ebops_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for key, value, top in (("exp_f", exp_f, 24), ("exp_i_max", exp_i_max, 16), ("inv_bits", inv_bits, 16),
                                ("inv_f", inv_f, 24), ("out_f", out_f, 24), ("table_bits", table_bits, 16)):
            if not 1 <= int(value) <= top:
                raise ValueError(f"QSoftmax: need 1 <= {key} <= {top}. Received: {key}={value}")
        self.exp_f, self.exp_i_max, self.inv_bits = int(exp_f), int(exp_i_max), int(inv_bits)
        self.inv_f, self.out_f, self.table_bits = int(inv_f), int(out_f), int(table_bits)
        self._init_quantized(ebops_penalty)
        self.input_quantizer = qz.get(
            input_quantizer, qz.ActivationQuantizer, name="input_quantizer", dtype=self.dtype_policy
        )

    #: the outputs come from tables after calibration (see hgq_fpga.testing)
    uses_table = True

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"QSoftmax: needs inputs of shape (batch, n). Received: {tuple(input_shape)}")
        build_once(self.input_quantizer, input_shape)
        zeros = keras.initializers.Zeros()
        self.exp_table = self.add_weight(name="exp_table", shape=(2**self.table_bits,), initializer=zeros, trainable=False)
        self.inv_table = self.add_weight(name="inv_table", shape=(2**self.inv_bits,), initializer=zeros, trainable=False)
        self.params = self.add_weight(name="params", shape=(len(_PARAMS),), initializer=zeros, trainable=False)
        self.n = int(input_shape[-1])
        self._pack_bits()
        self.built = True

    @property
    def quantizer_variables(self) -> list[Any]:
        return super().quantizer_variables + [self.exp_table, self.inv_table, self.params]

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        iq = self.input_quantizer
        q = iq.call(inputs, training=training, f=self._bit_values().get(id(iq)))
        smooth = ops.softmax(q, axis=-1)
        if training or iq.calibrating:
            return smooth
        p = {name: self.params[n] for n, name in enumerate(_PARAMS)}
        e = _lookup(self.exp_table, q, p["width"], p["f"], 2**self.table_bits)
        s = ops.sum(e, axis=-1, keepdims=True)
        zero = 0.0 * s
        s_q = quantize_core(s, zero, zero + p["i_s"], zero + p["f_s"], "TRN", "SAT", xp=ops)
        r = _lookup(self.inv_table, s_q, zero + self.inv_bits, zero + p["f_s"], 2**self.inv_bits)
        y = e * r
        zy = 0.0 * y
        out = quantize_core(y, zy, zy + 1.0, zy + self.out_f, "RND", "SAT", xp=ops)
        return ops.where(ops.greater(p["width"], 0.5), out, smooth)

    def tables(self) -> dict[str, Any]:
        """The exp and 1/s tables (float64, by bit pattern) and every format, from calibration."""
        k, i, f = self.input_quantizer.kif_numpy()
        live = (k + i + f) > 0
        k, i, f = (int(np.max(np.where(live, a, 0))) for a in (k, i, f))
        width = k + i + f
        if width > self.table_bits:
            raise ValueError(
                f"{self.name}: the exp table needs a {width}-bit index but table_bits={self.table_bits}. "
                "Lower the input bits (f0/f_max of input_quantizer) or raise table_bits."
            )
        n = np.arange(2**width, dtype=np.int64)
        v = (n - (k * (n >= 2 ** (width - 1)) << width) if width > 0 else n).astype(np.float64) * 2.0**-f
        i_e = int(min(self.exp_i_max, max(1, math.floor(float(np.max(v, initial=0.0)) / math.log(2)) + 1)))
        exp_table = quantize(np.exp(np.minimum(v, 60.0)), 0, i_e, self.exp_f, "RND", "SAT")
        i_s = i_e + max(0, math.ceil(math.log2(self.n)))
        f_s = self.inv_bits - i_s
        i_r = int(min(24, max(1, f_s + 1)))
        sv = np.arange(2**self.inv_bits, dtype=np.float64) * 2.0**-f_s
        with np.errstate(divide="ignore"):
            inv_table = quantize(np.minimum(1.0 / sv, 2.0**(i_r + 1)), 0, i_r, self.inv_f, "RND", "SAT")
        params = dict(k=k, width=width, f=f, i_e=i_e, i_s=i_s, f_s=f_s, i_r=i_r)
        return {"exp": exp_table, "inv": inv_table, **params}

    def update_table(self) -> None:
        """Compute and store both tables from the calibrated input formats."""
        t = self.tables()
        exp_full = np.zeros(2**self.table_bits)
        exp_full[: len(t["exp"])] = t["exp"]
        self.exp_table.assign(exp_full.astype(self.exp_table.dtype))
        self.inv_table.assign(t["inv"].astype(self.inv_table.dtype))
        self.params.assign(np.array([t[name] for name in _PARAMS], self.params.dtype))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), **self._quantized_config()}
        config.update(exp_f=self.exp_f, exp_i_max=self.exp_i_max, inv_bits=self.inv_bits,
                      inv_f=self.inv_f, out_f=self.out_f, table_bits=self.table_bits)
        return config


def _lookup(table: Any, x: Any, width: Any, f: Any, size: int) -> Any:
    """``table[bits(x)]``: the two's complement pattern of ``x`` in a ``width``-bit, scale-``f`` format."""
    span = pow2_any(width)
    m = x * pow2_any(f)
    index = ops.cast(m - span * ops.floor(m / span), "int32")
    return ops.take(table, ops.minimum(index, size - 1))
