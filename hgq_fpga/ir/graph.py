"""The graph of fixed-point operations: what the firmware computes.

Every tensor (:class:`TensorInfo`) carries

* its **format**: per-element ``(k, i, f)`` arrays (:class:`~hgq_fpga.fixed.FixedFormat`),
  declared by the quantizer that produced it, or else the smallest format of
  its exact range (:meth:`~hgq_fpga.fixed.FixedFormat.of_mantissas`);
* its **exact bounds**: per-element integer mantissas ``lo, hi`` at one scale
  ``f`` (the largest number of fractional bits of any element), so that
  integer mantissas ``m = value * 2**f`` represent it exactly.

Operations are the typed classes of :mod:`hgq_fpga.ir.ops`; every later
stage (emulator, cost model, backends) reads the formats and bounds from here
and never re-derives them. Nothing in this package imports Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..fixed import FixedFormat

if TYPE_CHECKING:  # pragma: no cover
    from .ops import Op

__all__ = ["TensorInfo", "Graph"]


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
        declared: the per-element format a quantizer declared for this tensor
            (None where the format follows from the bounds).
    """

    name: str
    shape: tuple[int, ...]
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    f: int = 0
    abs_bound: float = 0.0
    declared: FixedFormat | None = None

    @property
    def is_fixed(self) -> bool:
        return self.lo is not None

    def format(self) -> FixedFormat:
        """The tensor's per-element format: the declared one if a quantizer set
        it, else the smallest format holding the exact bounds at scale ``f``."""
        if self.declared is not None:
            return self.declared
        if self.lo is None or self.hi is None:
            raise ValueError(f"tensor {self.name!r} is the float input; it has no format")
        return FixedFormat.of_mantissas(self.lo, self.hi, self.f)

    def bits(self) -> int:
        """Largest width of any element (k + i + f)."""
        return int(np.max(self.format().bits, initial=0))


@dataclass
class Graph:
    """Operations in topological order, with every tensor's information."""

    inputs: list[str]
    outputs: list[str]
    nodes: list[Op]
    tensors: dict[str, TensorInfo] = field(default_factory=dict)

    def producer(self, tensor: str) -> Op:
        """The operation that writes ``tensor``."""
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        raise KeyError(f"no operation produces tensor {tensor!r}")

    def consumers(self, tensor: str) -> list[Op]:
        """The operations that read ``tensor``, in order."""
        return [node for node in self.nodes if tensor in node.inputs]

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
