"""The circuit analysis of a graph: the public result that the estimate counts
and the RTL backend writes.

:func:`analyze` walks the IR once and records, per tensor, its elements'
signals (exact ranges and zero low bits, :attr:`CircuitAnalysis.lsb`), per
linear operation its adder trees (:attr:`CircuitAnalysis.circuits`), and per
operation its cost (:attr:`CircuitAnalysis.costs`). The rule of each
operation is an entry of :data:`COST` (:mod:`hgq_fpga.resources.cost_rules`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import Graph, Op, Registry
from .circuit import NO_BITS, LinearCircuit, tensor_signals
from .costs import CostModel, LayerCost
from .liveness import needed_bits
from .rules import Signal

__all__ = ["COST", "CircuitAnalysis", "analyze"]

#: ``rule(analysis, op) -> LayerCost | None``; a rule also records the zero low
#: bits of the op's output (``analysis.lsb``) and, for adder trees, its circuits
COST = Registry("estimate", hint="Register a cost rule with hgq_fpga.resources.COST.register(OpClass).")


@dataclass
class CircuitAnalysis:
    """Signals, circuits and costs of every operation of ``graph``.

    Attributes:
        graph: the IR.
        strategy: ``'Latency'``, ``'distributed_arithmetic'`` or ``'rtl'`` (dense and
            convolution layers as shared adder graphs, :mod:`.shared`).
        cost_model: coefficients and the DSP rule.
        lsb: per tensor, the number of low bits known to be zero, per element.
        circuits: per output tensor of a linear operation, one adder tree per element.
        costs: per operation name, its cost (None for operations without cost).
        need: per tensor, the bits its consumers use (:func:`needed_bits`).
    """

    graph: Graph
    strategy: str
    cost_model: CostModel
    lsb: dict[str, np.ndarray] = field(default_factory=dict)
    circuits: dict[str, list[LinearCircuit]] = field(default_factory=dict)
    costs: dict[str, LayerCost | None] = field(default_factory=dict)
    need: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: per output tensor of a dense/conv layer under ``'rtl'``: its positions' shared graphs
    shared: dict[str, list] = field(default_factory=dict)
    #: under ``'rtl'``: how each shared graph is chosen (:data:`~.shared.PREFER`)
    prefer: str = "latency"

    def signals(self, name: str) -> list[Signal]:
        """The signals of a tensor's elements (flat, C order)."""
        return tensor_signals(self.graph, name, self.lsb.get(name))

    def caps(self, name: str) -> list[int | None] | None:
        """Per element of a tensor: its highest bit used downstream (None: all)."""
        need = self.need.get(name)
        if need is None:
            return None
        return [None if h >= NO_BITS else int(h) for h in need[1].reshape(-1).tolist()]

    def row(self, node: Op, **counts: float) -> LayerCost:
        """A cost row for ``node`` with the given unscaled counts."""
        row = LayerCost(node.layer or node.name, [node.op])
        for k, v in counts.items():
            row.counts[k] += float(v)
        return row

    def out_shape(self, node: Op) -> tuple[int, ...]:
        return self.graph.tensors[node.outputs[0]].shape


def analyze(graph: Graph, *, strategy: str = "Latency", cost_model: CostModel | None = None,
            prefer: str = "latency") -> CircuitAnalysis:
    """Run every operation's cost rule over ``graph``, in order.

    Raises:
        UnsupportedOp: for an operation without a rule in :data:`COST`.
    """
    from . import cost_rules  # noqa: F401  (registers the rules)

    result = CircuitAnalysis(graph, strategy, cost_model or CostModel(), need=needed_bits(graph), prefer=prefer)
    for node in graph.nodes:
        result.costs[node.name] = COST(node, result)
    return result
