"""Matrix-vector products of the RTL backend as adder graphs whose subexpressions are
shared across outputs (a constant matrix-vector multiplication, CMVM), counted adder
by adder.

The Latency circuit (:mod:`.circuit`) sums each output's own shifted copies of the
inputs: ``a*x0 + b*x1`` and ``a*x0 + b*x1 + c*x2`` pay twice for ``a*x0 + b*x1``.
Synthesis run flattened merges such repeats (and the estimate of the per-output
trees then overstates flattened yosys by about a quarter, BENCHMARKS.md). Here the
repeats are found before the Verilog is written, by da4ml's greedy CMVM (the
``wmc`` method of ``da4ml.cmvm``, run by :func:`~.da_cmvm.cmvm_stage`; HGQ2 and
hls4ml's ``distributed_arithmetic`` strategy use the same algorithm): it takes the
most frequent pair of signed digits of the kernel, ``x_i + x_k << s``, makes it a
new input and repeats. Each pair is one two-input adder, written once and read by
every output that contains it.

What is taken from da4ml is the graph only. Every node's range is recomputed
exactly here: a node is a linear form ``sum_i c_i x_i`` of the independent
inputs, so its range is ``[sum_i min(c_i lo_i, c_i hi_i), sum_i max(...)]`` and its
zero low bits ``min_i v2(c_i) + lsb_i``; the adders are sized and counted from these
(:func:`~.rules.adder_cells`, the same rule as the Latency trees). The graph is
checked to reproduce the kernel exactly, coefficient by coefficient.

Example:
    >>> from hgq_fpga.resources.rules import Signal
    >>> g = shared_graph(np.array([[3, 3], [5, 5]]), [Signal(0, 15), Signal(-8, 7)])
    >>> len(g.adders) < 6  # 3*x0 + 5*x1 once, read by both outputs
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..ir import Graph
from ..ir import ops as ir
from .circuit import LinearCircuit, Term, aligned_bias, kernel_patches, linear_circuits
from .rules import Adder, Signal, adder_cells, adder_tree

__all__ = ["Position", "SharedGraph", "scaled", "shared_circuits", "shared_graph"]


@dataclass
class SharedGraph:
    """One kernel applied to one set of input signals, as an adder graph.

    ``signals[k]`` is node ``k``'s value at the scale of the kernel product times
    ``2**extra`` (the graph's own scale); the first ``len(inputs)`` nodes are the
    inputs, shifted (``input_shifts``). ``adders[m]`` computes node
    ``len(inputs) + m`` as ``a + (b << shift)`` or ``a - (b << shift)``
    (``shifts[m]``, negative: an exact right shift). Column ``j`` of the kernel is
    ``outputs[j] = (node, sign, shift)``: ``sign * node * 2**shift`` at the graph's
    scale (node ``-1``: the column is zero).
    """

    inputs: list[int]  # node k < len(inputs): the input slot it reads
    input_shifts: list[int]
    signals: list[Signal]
    adders: list[Adder]
    shifts: list[int]
    outputs: list[tuple[int, int, int]]
    extra: int

    @property
    def luts(self) -> int:
        return sum(a.luts for a in self.adders)

    @property
    def carry(self) -> int:
        return sum(a.carry for a in self.adders)


def scaled(s: Signal, d: int) -> Signal:
    """``s * 2**d``; a negative ``d`` is an exact right shift (``s``'s low bits are zero)."""
    if d >= 0:
        return s.shifted(d)
    if s.lsb < -d and not s.constant:
        raise ValueError(f"scaled: a right shift by {-d} would drop bits of {s}")
    return Signal(s.lo >> -d, s.hi >> -d, max(s.lsb + d, 0))


def _v2(c: int) -> int:
    return (c & -c).bit_length() - 1


def _node(coef: list[int], xs: list[Signal]) -> Signal:
    """The exact range of ``sum_i coef[i] * xs[i]`` (independent inputs)."""
    lo = hi = 0
    lsb = 1 << 30
    for c, s in zip(coef, xs):
        if c:
            a, b = c * s.lo, c * s.hi
            lo, hi = lo + min(a, b), hi + max(a, b)
            lsb = min(lsb, _v2(c) + s.lsb)
    return Signal(lo, hi, 0 if lo == hi else lsb)


def shared_graph(kernel: np.ndarray, xs: list[Signal]) -> SharedGraph:
    """The shared adder graph of ``x @ kernel`` for integer ``kernel`` (``n_in x n_out``)
    and non-constant input signals ``xs`` (one per row).

    Raises:
        MissingDependencyError: da4ml 0.5.x is not installed (an ImportError; the CLI exits 3).
        RuntimeError: the solver's graph does not reproduce ``kernel``.
    """
    try:
        from .da_cmvm import cmvm_stage
    except ImportError as e:
        from ..optional import MissingDependencyError

        raise MissingDependencyError(f"The RTL backend solves its adder graphs with da4ml 0.5.x, a dependency of hgq_fpga "
                          f"that is missing here ({e}). Install it with: pip install 'da4ml>=0.5.2,<0.6'") from None

    k = np.asarray(kernel, dtype=np.int64)
    n_in, n_out = k.shape
    qints = [(float(s.lo), float(s.hi), float(2.0 ** s.lsb)) for s in xs]
    sol = cmvm_stage(k.astype(np.float64), "wmc", qints, [0.0] * n_in, -1, -1)
    # exact coefficients of every node over the inputs, as floats (sums of powers of two)
    coefs: list[np.ndarray] = []
    inputs: list[int] = []
    in_shifts = [int(v) for v in sol.inp_shifts]
    for op in sol.ops:
        if op.opcode == -1:
            c = np.zeros(n_in)
            c[op.id0] = 2.0 ** in_shifts[op.id0]
        elif op.opcode in (0, 1):
            c = coefs[op.id0] + (1 if op.opcode == 0 else -1) * 2.0 ** op.data * coefs[op.id1]
        else:
            raise RuntimeError(f"shared_graph: unexpected da4ml operation (opcode {op.opcode})")
        coefs.append(c)
    values = np.unique(np.concatenate([np.abs(c) for c in coefs]))
    extra = max(Fraction(float(v)).denominator.bit_length() - 1 for v in values)  # bits that make all integers
    ints = [[int(v) for v in (c * 2.0 ** extra).tolist()] for c in coefs]
    signals = [_node(c, xs) for c in ints]
    adders, shifts = [], []
    for m, op in enumerate(sol.ops):
        if op.opcode == -1:
            inputs.append(int(op.id0))
            continue
        a, b = signals[op.id0], scaled(signals[op.id1], int(op.data))
        luts, carry, _ = adder_cells(a, b, op.opcode == 1, top=signals[m].top)
        adders.append(Adder(int(op.id0), int(op.id1), op.opcode == 1, m, luts, carry))
        shifts.append(int(op.data))
    n = len(inputs)
    if inputs != list(range(n)) or any(op.opcode == -1 for op in sol.ops[n:]):
        raise RuntimeError("shared_graph: the solver's inputs are not the first nodes")
    outputs = []
    for j in range(n_out):
        idx, sh, neg = int(sol.out_idxs[j]), int(sol.out_shifts[j]), bool(sol.out_negs[j])
        got = np.zeros(n_in) if idx < 0 else (-1 if neg else 1) * 2.0 ** sh * coefs[idx]
        if not np.array_equal(got, k[:, j].astype(np.float64)):
            raise RuntimeError(f"shared_graph: the solver's column {j} is not the kernel's")
        outputs.append((idx, -1 if neg else 1, sh))
    return SharedGraph(inputs, [in_shifts[i] for i in inputs], signals, adders, shifts, outputs, extra)


@dataclass
class Position:
    """One output position of a dense or convolution layer: its graph (None: no input
    varies, or one tree per output was cheaper) and, per graph input, the flat index of
    the input element it reads."""

    graph: SharedGraph | None
    sources: list[int]


def shared_circuits(graph: Graph, node: ir.Linear, x: list[Signal],
                    caps: list[int | None] | None = None) -> tuple[list[Position], list[LinearCircuit]]:
    """The positions of a dense/conv node and one :class:`~.circuit.LinearCircuit` per output
    element (flat, C order), whose terms' sources are nodes of its position's graph.

    Constant inputs (a padding zero, an input quantized to one value) are folded into
    the bias; the other rows with a nonzero weight are the graph's inputs. Positions
    with the same input signals share one graph (solved once). An output that no
    output of the model reads (its highest needed bit ``-1``, :func:`~.liveness.needed_bits`)
    is left out of the graph: it is written as its bias, and synthesis would remove
    its logic anyway. Where the graph costs
    more LUTs than one adder tree per output (a sparse kernel, few outputs: little to
    share), the position keeps the trees (``graph`` None; the circuits' sources are
    then the node's flat input elements, as in :func:`~.circuit.linear_circuits`).
    """
    out_t = graph.tensors[node.outputs[0]]
    shift = out_t.f - (graph.tensors[node.inputs[0]].f + node.kernel.f)
    if shift < 0:
        raise ValueError(f"shared_circuits: {node.name}'s output is coarser than its product")
    bias = aligned_bias(node.bias, out_t.f, out_t.shape[-1])
    km = np.asarray(node.kernel.m)
    w2 = km.reshape(-1, km.shape[-1]).astype(np.int64)
    n_out = w2.shape[1]
    solved: dict[tuple, SharedGraph] = {}
    positions: list[Position] = []
    circuits: list[LinearCircuit] = []
    # one tree per output, every product in LUTs (the Latency circuits, cached across positions)
    all_trees = linear_circuits(graph, node, x, dsp=False, caps=caps)
    for p, patch in enumerate(kernel_patches(graph, node).tolist()):
        rows = [r for r, s in enumerate(patch) if s >= 0 and not x[s].constant and w2[r].any()]
        consts = [(r, x[s].lo) for r, s in enumerate(patch) if s >= 0 and x[s].constant and x[s].lo]
        folded = [sum(int(w2[r, j]) * v for r, v in consts) << shift for j in range(n_out)]
        cap = [caps[p * n_out + j] if caps is not None else None for j in range(n_out)]
        dead = tuple(j for j in range(n_out) if cap[j] is not None and cap[j] < 0)  # no output reads it
        g = None
        if rows and len(dead) < n_out:
            key = (tuple(rows), tuple(x[patch[r]] for r in rows), dead)
            g = solved.get(key)
            if g is None:
                k = w2[rows].copy()
                k[:, list(dead)] = 0  # dead columns take no part in the graph (synthesis removes them)
                g = solved[key] = shared_graph(k, [x[patch[r]] for r in rows])
        cols = [_column(g, j, shift, int(bias[j]) + folded[j], cap[j]) for j in range(n_out)]
        trees = all_trees[p * n_out:(p + 1) * n_out]
        if g is not None and sum(c.tree.luts for c in trees) < g.luts + sum(c.tree.luts for c in cols):
            g, cols = None, trees  # too little to share here: one tree per output is cheaper
        positions.append(Position(g, [patch[r] for r in rows] if g is not None else []))
        circuits += cols
    return positions, circuits


def _column(g: SharedGraph | None, j: int, shift: int, bias: int, cap: int | None) -> LinearCircuit:
    """Output ``j`` of a position as a (one- or two-term) tree over its graph's nodes."""
    terms: list[Term] = []
    signals: list[tuple[int, Signal]] = []
    idx, sign, sh = g.outputs[j] if g is not None else (-1, 1, 0)
    if idx >= 0:
        d = sh + shift - g.extra
        terms.append(Term(sign, idx, d))
        signals.append((sign, scaled(g.signals[idx], d)))
    if bias:
        terms.append(Term(1, None, 0, value=bias))
        signals.append((1, Signal(bias, bias, 0)))
    nodes = list(range(len(g.signals))) if g is not None else []
    return LinearCircuit(terms, adder_tree(signals, None, cap), [], nodes)
