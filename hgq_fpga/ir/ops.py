"""The IR's operations: one small typed class per operation.

An operation declares its attributes as dataclass fields (as hls4ml's layers
declare ``Attribute``s) and defines its own meaning twice, exactly:

* :meth:`Op.evaluate` on integer mantissas (:class:`~hgq_fpga.ir.exact.Mant`):
  what the firmware computes; the emulator replays it;
* :meth:`Op.infer` on bounds: the exact range of every output element, which
  fixes the output's format (:class:`~hgq_fpga.ir.graph.TensorInfo`).

Everything else a stage does with an operation (cost, Verilog, hls4ml layer,
fast float path) lives with that stage, in one :class:`~hgq_fpga.ir.Registry`
per stage keyed by these classes. A new operation is one class here (or in
user code) plus one entry per stage that should handle it.

========== =================================================================
Input      the float input of the network
Quantize   ``k``, ``i``, ``f`` (int arrays of the tensor shape), ``rounding``,
           ``overflow`` -- per-element ``ap_fixed`` quantization
Dense      ``kernel`` (n_in, n_out), ``bias`` (n_out,) or None
Conv       ``kernel`` (*window, c_in, c_out), ``bias``, ``strides``,
           ``padding`` ('valid'/'same'), ``dilation`` -- 1D or 2D, channels_last
Scale      ``scale`` (C,), ``offset`` (C,) -- folded batch normalization
Relu       --
Add        -- element-wise sum of several tensors
Concat     ``axis`` (of the tensor without batch)
MaxPool    ``pool``, ``strides``, ``padding``
AvgPool    ``pool``, ``strides`` (windows of ``2**n`` elements, 'valid')
Reshape    ``shape``
Multiply   -- element-wise product of two tensors
Table      ``table``, ``k``, ``width``, ``f`` of the index format,
           ``function`` -- lookup by two's complement bit pattern
========== =================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from ..fixed import FixedFormat
from ..fixed.format import check_format
from . import bounds as bd
from .exact import (
    Constant,
    Mant,
    add_op,
    avg_pool_op,
    concat_op,
    conv_op,
    dense_op,
    max_pool_op,
    multiply_op,
    quantize_op,
    relu_op,
    reshape_op,
    scale_op,
    table_op,
)
from .graph import TensorInfo

__all__ = [
    "Op", "Input", "Quantize", "Linear", "Dense", "Conv", "Scale", "Relu", "Add", "Concat", "MaxPool", "AvgPool",
    "Reshape", "Multiply", "Table", "LINEAR_OPS",
]


@dataclass(eq=False, kw_only=True)
class Op:
    """Base of every operation: ``outputs = op(inputs)``, from Keras layer ``layer``.

    Subclasses declare their attributes as fields, set :attr:`kind` (the short
    name in reports and generated names) and implement :meth:`evaluate` and
    :meth:`infer`.
    """

    kind: ClassVar[str] = "op"
    name: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    layer: str | None = None

    @property
    def op(self) -> str:
        """The operation's short name (``"dense"``, ``"quantize"``, ...)."""
        return self.kind

    def evaluate(self, xs: list[Mant]) -> Mant:
        """The exact output mantissas for input mantissas ``xs``."""
        raise NotImplementedError(f"IR op {type(self).__name__} does not define evaluate()")

    def infer(self, ins: list[TensorInfo], shape: tuple[int, ...]) -> TensorInfo:
        """The output tensor (exact bounds, scale, format) for inputs ``ins``.

        The default maps the input bounds through :meth:`evaluate`, which is
        exact for operations that are monotone (non-decreasing) in every input.
        """
        return bd.monotone(self.evaluate, ins, shape)


@dataclass(eq=False, kw_only=True)
class Input(Op):
    kind: ClassVar[str] = "input"


@dataclass(eq=False, kw_only=True)
class Quantize(Op):
    """Per-element ``ap_fixed<k+i+f, k+i, rounding, overflow>`` quantization."""

    kind: ClassVar[str] = "quantize"
    k: np.ndarray
    i: np.ndarray
    f: np.ndarray
    rounding: str = "TRN"
    overflow: str = "WRAP"

    @property
    def format(self) -> FixedFormat:
        """The declared per-element format."""
        return FixedFormat(self.k, self.i, self.f)

    @cached_property
    def float_kif(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``k, i, f`` as float64 arrays (for the float fixed-point core)."""
        return tuple(np.asarray(a, np.float64) for a in (self.k, self.i, self.f))  # type: ignore[return-value]

    def evaluate(self, xs: list[Any]) -> Mant:
        return quantize_op(xs[0], self.k, self.i, self.f, self.rounding, self.overflow)

    def infer(self, ins: list[TensorInfo], shape: tuple[int, ...]) -> TensorInfo:
        check_format(self.k, self.i, self.f, f"layer {self.layer!r} (its quantizer)")
        self.k, self.i, self.f = (np.broadcast_to(np.asarray(a, np.int64), shape).copy() for a in (self.k, self.i, self.f))
        return bd.quantized(self, ins[0], shape)


@dataclass(eq=False, kw_only=True)
class Linear(Op):
    """Base of :class:`Dense` and :class:`Conv`: a constant ``kernel`` and ``bias``;
    ``bound`` (set by :meth:`infer`) bounds every partial sum in mantissa units."""

    kernel: Constant
    bias: Constant | None = None
    bound: float = 0.0

    def apply(self, x: np.ndarray, w: np.ndarray, bound: float) -> np.ndarray:
        """The linear map without bias, on mantissas ``x`` with weights ``w``."""
        raise NotImplementedError

    def infer(self, ins: list[TensorInfo], shape: tuple[int, ...]) -> TensorInfo:
        return bd.linear(self, ins[0], shape)


@dataclass(eq=False, kw_only=True)
class Dense(Linear):
    """``x @ kernel + bias``."""

    kind: ClassVar[str] = "dense"

    def evaluate(self, xs: list[Mant]) -> Mant:
        return dense_op(xs[0], self.kernel, self.bias, self.bound)

    def apply(self, x: np.ndarray, w: np.ndarray, bound: float) -> np.ndarray:
        return bd.matmul(x, w, bound)


@dataclass(eq=False, kw_only=True)
class Conv(Linear):
    """Convolution (channels_last, 1D or 2D) as patches @ kernel."""

    kind: ClassVar[str] = "conv"
    strides: tuple[int, ...] = (1,)
    padding: str = "valid"
    dilation: tuple[int, ...] = (1,)

    def evaluate(self, xs: list[Mant]) -> Mant:
        return conv_op(xs[0], self.kernel, self.bias, self.strides, self.padding, self.dilation, self.bound)

    def apply(self, x: np.ndarray, w: np.ndarray, bound: float) -> np.ndarray:
        return bd.conv(x, w, bound, self.strides, self.padding, self.dilation)


@dataclass(eq=False, kw_only=True)
class Scale(Op):
    """Per-channel ``x * scale + offset`` (folded batch normalization)."""

    kind: ClassVar[str] = "scale"
    scale: Constant
    offset: Constant

    def evaluate(self, xs: list[Mant]) -> Mant:
        return scale_op(xs[0], self.scale, self.offset)

    def infer(self, ins: list[TensorInfo], shape: tuple[int, ...]) -> TensorInfo:
        return bd.scaled(self, ins[0], shape)


@dataclass(eq=False, kw_only=True)
class Relu(Op):
    kind: ClassVar[str] = "relu"

    def evaluate(self, xs: list[Mant]) -> Mant:
        return relu_op(xs[0])


@dataclass(eq=False, kw_only=True)
class Add(Op):
    kind: ClassVar[str] = "add"

    def evaluate(self, xs: list[Mant]) -> Mant:
        return add_op(xs)


@dataclass(eq=False, kw_only=True)
class Concat(Op):
    kind: ClassVar[str] = "concat"
    axis: int = -1

    def evaluate(self, xs: list[Mant]) -> Mant:
        return concat_op(xs, self.axis)


@dataclass(eq=False, kw_only=True)
class MaxPool(Op):
    kind: ClassVar[str] = "max_pool"
    pool: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str = "valid"

    def evaluate(self, xs: list[Mant]) -> Mant:
        return max_pool_op(xs[0], self.pool, self.strides, self.padding)


@dataclass(eq=False, kw_only=True)
class AvgPool(Op):
    """Mean over windows of ``2**n`` elements ('valid' padding): a sum and a shift."""

    kind: ClassVar[str] = "avg_pool"
    pool: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str = "valid"

    def evaluate(self, xs: list[Mant]) -> Mant:
        return avg_pool_op(xs[0], self.pool, self.strides)


@dataclass(eq=False, kw_only=True)
class Reshape(Op):
    kind: ClassVar[str] = "reshape"
    shape: tuple[int, ...]

    def evaluate(self, xs: list[Mant]) -> Mant:
        return reshape_op(xs[0], self.shape)


@dataclass(eq=False, kw_only=True)
class Multiply(Op):
    """Element-wise product of two tensors."""

    kind: ClassVar[str] = "multiply"

    def evaluate(self, xs: list[Mant]) -> Mant:
        return multiply_op(xs)

    def infer(self, ins: list[TensorInfo], shape: tuple[int, ...]) -> TensorInfo:
        return bd.product(ins, shape)


@dataclass(eq=False, kw_only=True)
class Table(Op):
    """Lookup of each element by its bit pattern in the index format ``(k, width, f)``."""

    kind: ClassVar[str] = "table"
    table: Constant
    k: int
    width: int
    f: int
    function: str = ""

    def evaluate(self, xs: list[Mant]) -> Mant:
        return table_op(xs[0], self.table, self.width, self.f)

    def infer(self, ins: list[TensorInfo], shape: tuple[int, ...]) -> TensorInfo:
        return bd.tabulated(self.table, shape)


#: operations that are sums of constant multiples of their inputs (adder trees)
LINEAR_OPS = (Linear, Scale, AvgPool, Add)
