"""The body shared by QDense and QConv1D/2D: quantized input, kernel and bias
around one linear operation (``matmul`` or the Keras convolution)."""

from __future__ import annotations

from typing import Any

from .. import quantizers as qz
from ..compat import ops64 as ops
from ..quantizers.cost import csd_count_ops, dense_read_luts, linear_luts
from .base import QuantizedLayerMixin, build_once, check_activation, input_bits
from .squares import record_input

__all__ = ["WeightedLayerMixin"]


class WeightedLayerMixin(QuantizedLayerMixin):
    """``y = activation(linear(q_x(x), q_k(W)) + q_b(b))``; subclasses define :meth:`linear`."""

    _quantizer_keys = ("input_quantizer", "kernel_quantizer", "bias_quantizer")

    def _init_weighted(
        self, input_quantizer: Any, kernel_quantizer: Any, bias_quantizer: Any, ebops_penalty: float
    ) -> None:
        check_activation(type(self).__name__, self.activation)
        self._init_quantized(ebops_penalty)
        policy = self.dtype_policy  # type: ignore[attr-defined]
        self.input_quantizer = qz.get(input_quantizer, qz.ActivationQuantizer, name="input_quantizer", dtype=policy)
        self.kernel_quantizer = qz.get(kernel_quantizer, qz.WeightQuantizer, name="kernel_quantizer", dtype=policy)
        self.bias_quantizer = qz.get(bias_quantizer, qz.WeightQuantizer, name="bias_quantizer", dtype=policy)

    def linear(self, x: Any, kernel: Any) -> Any:
        """The layer's linear operation (matmul, convolution)."""
        raise NotImplementedError

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)  # type: ignore[misc]
        build_once(self.input_quantizer, input_shape)
        build_once(self.kernel_quantizer, tuple(self.kernel.shape))
        if self.use_bias:
            build_once(self.bias_quantizer, tuple(self.bias.shape))
        self._input_shape = tuple(input_shape)
        self._pack_bits()

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        record_input(self, inputs)  # (inside a calibration pass: its input's squares, hgq_fpga.layers.squares)
        fs = self._bit_values()
        iq, kq, bq = self.input_quantizer, self.kernel_quantizer, self.bias_quantizer
        x = iq.call(inputs, training=training, f=fs.get(id(iq)))
        kernel, qk = kq.forward(self.kernel, fs.get(id(kq)))
        y = self.linear(x, kernel)
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
        """``sum over multiplications of bits(x) * bits(W)``: the linear map of the bits.

        For a dense layer ``sum_ij bits(x_i) bits(W_ij)``; for a convolution the
        sum over output positions of the window products.
        """
        iq, kq = self.input_quantizer, self.kernel_quantizer
        bx = input_bits(iq, self._input_shape, fs.get(id(iq)), exact=exact)
        bw = kq.bits(self.kernel, qkernel, fs.get(id(kq)), exact=exact)
        return ops.sum(self.linear(bx, bw))

    def luts_for(self, fs: dict[int, Any], qkernel: Any = None, value_only: bool = False) -> Any:
        """Differentiable LUTs of the adder trees (:func:`hgq_fpga.quantizers.cost.linear_luts`).

        A read (``value_only``, no ``qkernel``) takes the kernel's digits and bits from its mantissas
        at its own bits or at the kernel bits in ``fs`` (:meth:`~hgq_fpga.quantizers.WeightQuantizer.digits_and_bits`:
        the kernel quantized at them, as it would be after a step lowered them by a shift; quantized at its
        own bits, such a read counted digits the shift rounds away, and the drop a step was chosen for was
        off by 0.05 of the budget in a test at 1.2 times it)."""
        iq, kq = self.input_quantizer, self.kernel_quantizer
        bx = input_bits(iq, self._input_shape, fs.get(id(iq)), exact=False)
        f_k = fs.get(id(kq))
        # a read: digits and bits from the mantissas (half the operations)
        fast = kq.digits_and_bits(self.kernel, f_k) if value_only and qkernel is None else None
        if fast is not None:
            digits, bw = fast
        else:
            if qkernel is None and value_only and f_k is not None:  # (a fixed i: overflow applies)
                qkernel = kq.quantize_with(ops.stop_gradient(ops.convert_to_tensor(self.kernel)),
                                           ops.round(ops.stop_gradient(f_k)))
            f_k = kq.f_value() if f_k is None else f_k
            q = kq.quantize_values(self.kernel) if qkernel is None else qkernel
            bw = kq.bits(self.kernel, q, f_k, exact=False)
            digits = csd_count_ops(q, f_k)
        if value_only and len(bx.shape) == 2 and len(digits.shape) == 2:  # a dense layer's read
            return dense_read_luts(bx, bw, digits)
        live = ops.cast(ops.greater(digits, 0.0), bx.dtype)
        return linear_luts(self.linear, bx, bw, digits, self._max_live_bits(ops.stop_gradient(bx), live), value_only)

    def _max_live_bits(self, bx: Any, live: Any) -> Any:
        """``sum over outputs of max(bits of the inputs with a live weight)``.

        Dense: exact (on sequences, ``(1, ..., c_in)`` inputs, per position). Convolution:
        per output channel, the widest input channel (over positions) with a live weight,
        times the number of output positions.
        """
        if len(self.kernel.shape) == 2:
            per_position = ops.reshape(bx, (-1, int(self.kernel.shape[0]), 1)) * live
            return ops.sum(ops.max(per_position, axis=1))
        c_in = int(self.kernel.shape[-2])
        per_channel = ops.max(ops.reshape(bx, (-1, c_in)), axis=0)
        widest = ops.max(ops.reshape(live * ops.reshape(per_channel, (c_in, 1)), (-1, int(self.kernel.shape[-1]))), axis=0)
        out_shape = self.compute_output_shape(self._input_shape)  # type: ignore[attr-defined]
        positions = 1
        for d in out_shape[1:-1]:
            positions *= int(d)
        return ops.sum(widest) * float(positions)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._quantized_config()}  # type: ignore[misc]
