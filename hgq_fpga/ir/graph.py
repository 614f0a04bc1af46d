"""A small graph of fixed-point operations: what the firmware computes.

Every tensor carries its exact per-element range and a scale ``f`` (the
largest number of fractional bits of any element), so that integer mantissas
``m = value * 2**f`` represent it exactly. Weights are stored as exact float64
values (on their fixed-point grid). Both the emulator and the converter work
from this graph, so the emulator also tests the converter.

Operations (``Node.op``) and their attributes:

========== =================================================================
input      --
quantize   ``k``, ``i``, ``f`` (int arrays of the tensor shape), ``rounding``,
           ``overflow`` -- per-element ``ap_fixed`` quantization
dense      ``kernel`` (n_in, n_out), ``bias`` (n_out,) or None
conv       ``kernel`` (*window, c_in, c_out), ``bias``, ``strides``,
           ``padding`` ('valid'/'same'), ``dilation`` -- 1D or 2D, channels_last
scale      ``scale`` (C,), ``offset`` (C,) -- folded batch normalization
relu       --
add        --
concat     ``axis`` (of the tensor without batch)
max_pool   ``pool``, ``strides``, ``padding``
avg_pool   ``pool``, ``strides``, ``padding`` (window counts powers of two)
reshape    ``shape``
multiply   -- element-wise product of two tensors
table      ``table`` (mantissas, scale), ``k``, ``width``, ``f`` of the index
           format, ``function`` -- lookup by two's complement bit pattern
========== =================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..fixed import FixedFormat

__all__ = ["TensorInfo", "Node", "Graph"]


@dataclass
class TensorInfo:
    """A tensor between operations (shapes exclude the batch axis).

    Attributes:
        name: unique name.
        shape: shape without batch.
        lo, hi: exact per-element bounds as integer mantissas at scale ``f``
            (int64 or Python ints), or None for the float input of the network.
        f: the tensor's scale: values are multiples of ``2**-f``.
        abs_bound: bound on ``|m|`` of every element and every partial sum that
            produces it, in mantissa units (decides the integer width).
    """

    name: str
    shape: tuple[int, ...]
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    f: int = 0
    abs_bound: float = 0.0

    @property
    def is_fixed(self) -> bool:
        return self.lo is not None

    def format(self) -> FixedFormat:
        """Per-element ``(k, i)`` from the bounds, with the tensor's ``f``.

        ``i = bit_length(max(hi, -lo - 1)) - f``; elements that are always 0
        get width 0.
        """
        from .intmath import bit_length

        if self.lo is None or self.hi is None:
            raise ValueError(f"tensor {self.name!r} is the float input; it has no format")
        a = np.maximum(self.hi, -self.lo - 1)
        live = a > 0
        i = np.where(live, bit_length(np.where(live, a, 0)) - self.f, -self.f)
        k = (self.lo < 0).astype(np.int64)
        f = np.full(self.shape, self.f, dtype=np.int64)
        return FixedFormat(k, i.astype(np.int64), f)

    def bits(self) -> int:
        """Largest width of any element (k + i + f)."""
        return int(np.max(self.format().width, initial=0))


@dataclass
class Node:
    """One operation: ``outputs = op(inputs)``, from Keras layer ``layer``."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    layer: str | None = None


@dataclass
class Graph:
    """Nodes in topological order, with every tensor's information."""

    inputs: list[str]
    outputs: list[str]
    nodes: list[Node]
    tensors: dict[str, TensorInfo]

    def __str__(self) -> str:
        lines = [f"{'node':<28} {'op':<9} {'output':<28} {'shape':<14} {'f':>4} {'bits':>5}"]
        for node in self.nodes:
            for out in node.outputs:
                t = self.tensors[out]
                bits = t.bits() if t.is_fixed else "float"
                lines.append(
                    f"{node.name:<28} {node.op:<9} {out:<28} {str(t.shape):<14} {t.f:>4} {bits:>5}"
                )
        return "\n".join(lines)
