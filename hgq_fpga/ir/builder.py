"""Build a :class:`~hgq_fpga.ir.Graph` operation by operation (no Keras here).

A frontend (:mod:`hgq_fpga.frontend.keras`) creates typed operations and adds
them; each operation's :meth:`~hgq_fpga.ir.ops.Op.infer` fixes the exact
bounds and format of its output.

Example:
    >>> import numpy as np
    >>> from hgq_fpga.ir.ops import Quantize, Relu
    >>> b = GraphBuilder()
    >>> x = b.input("x", (2,))
    >>> q = b.add(Quantize(k=np.ones(2, int), i=np.ones(2, int), f=np.full(2, 2)), [x], "q")
    >>> y = b.add(Relu(), [q], "act")
    >>> g = b.graph([x], [y])
    >>> g.tensors[y].lo, g.tensors[y].hi
    (array([0, 0]), array([7, 7]))
"""

from __future__ import annotations

from .graph import Graph, TensorInfo
from .ops import Input, Op

__all__ = ["GraphBuilder"]


class GraphBuilder:
    """Accumulates operations and tensors; names are made unique."""

    def __init__(self) -> None:
        self.nodes: list[Op] = []
        self.tensors: dict[str, TensorInfo] = {}
        self._names: set[str] = set()

    def unique(self, name: str) -> str:
        base, n = name, 1
        while name in self._names:
            name = f"{base}_{n}"
            n += 1
        self._names.add(name)
        return name

    def input(self, layer: str, shape: tuple[int, ...]) -> str:
        """A float input of the network; returns its tensor name."""
        node = Input(name=self.unique(layer), layer=layer)
        out = TensorInfo(self.unique(f"{node.name}_out"), tuple(shape))
        return self._append(node, [], out)

    def add(self, op: Op, inputs: list[str], layer: str, shape: tuple[int, ...] | None = None) -> str:
        """Add ``op`` reading ``inputs`` (output ``shape``: default the first input's).

        Returns the output tensor's name.
        """
        op.name = self.unique(f"{layer}_{op.kind}")
        op.layer = layer
        ins = [self.tensors[n] for n in inputs]
        out = op.infer(ins, tuple(shape) if shape is not None else ins[0].shape)
        out.name = self.unique(f"{op.name}_out")
        return self._append(op, list(inputs), out)

    def _append(self, op: Op, inputs: list[str], out: TensorInfo) -> str:
        op.inputs, op.outputs = inputs, [out.name]
        self.tensors[out.name] = out
        self.nodes.append(op)
        return out.name

    def graph(self, inputs: list[str], outputs: list[str]) -> Graph:
        return Graph(list(inputs), list(outputs), self.nodes, self.tensors)
