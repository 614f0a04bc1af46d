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
every output that contains it. No one solution is the cheapest on every kernel, so
several are counted (:func:`graph_candidates`): ``wmc``, its delay-constrained
variant ``wmc-dc``, and, on small kernels, da4ml's search over decompositions
``kernel = M0 @ M1`` (HGQ2's path), whose two stages are composed into one graph
here. The one written has the fewest LUTs, with its output columns, of those whose
longest path is no longer than ``wmc``'s (:func:`path_delay`): a cheaper but deeper
graph would add pipeline stages.

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
from typing import Any

import numpy as np

from ..ir import Graph, ops as ir
from .circuit import LinearCircuit, Term, aligned_bias, kernel_patches, linear_circuits
from .recent import Recent
from .rules import Adder, Signal, adder_cells, adder_tree

__all__ = ["DECOMPOSE_MAX_WEIGHTS", "PREFER", "SOLVED_KEPT", "Position", "SharedGraph", "check_prefer",
           "graph_candidates", "path_delay", "scaled", "shared_circuits", "shared_graph"]

#: how the graph of a layer is chosen among :func:`graph_candidates`: ``"latency"``, the fewest
#: LUTs among those whose longest path is no longer than da4ml's greedy graph's (the pipeline
#: does not get longer); ``"luts"``, the fewest LUTs whatever their depth (da4ml's own choice:
#: its two-stage decompositions can be twice as deep, and take more cycles)
PREFER = ("latency", "luts")


def check_prefer(prefer: object, caller: str, backend: str = "rtl") -> str:
    """``prefer``, or a ValueError naming ``caller`` and the value received: not one of
    :data:`PREFER`, or other than the default for an hls4ml ``backend`` (which writes its own graphs)."""
    if prefer not in PREFER:
        raise ValueError(f"{caller}: prefer must be 'latency' (the fewest LUTs that keep the pipeline as short as "
                         f"da4ml's greedy graphs) or 'luts' (the fewest LUTs, possibly more cycles). "
                         f"Received: prefer={prefer!r}")
    if prefer != "latency" and backend != "rtl":
        raise ValueError(f"{caller}: prefer= chooses the adder graphs of backend='rtl'; hls4ml writes its own. "
                         f"Received: prefer={prefer!r}, backend={backend!r}")
    return str(prefer)


@dataclass(frozen=True)
class SharedGraph:
    """One kernel applied to one set of input signals, as an adder graph (frozen: the
    candidates of a kernel are kept and handed out again, :func:`graph_candidates`).

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
    #: the solution it was written from: ``"wmc"``, ``"wmc-dc"`` or ``"decomposed"``
    #: (da4ml's two stages), and ``"/scale"`` when written by scale (:func:`_composed`)
    source: str = ""

    @property
    def luts(self) -> int:
        return sum(a.luts for a in self.adders)

    @property
    def carry(self) -> int:
        return sum(a.carry for a in self.adders)

    @property
    def depth(self) -> int:
        """Adders on the longest path from an input to an output."""
        level = [0] * len(self.signals)
        for a in self.adders:
            level[a.out] = 1 + max(level[a.a], level[a.b])
        return max((level[i] for i, _, _ in self.outputs if i >= 0), default=0)


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


#: kernels with at most this many weights also try da4ml's decomposed two-stage solutions
#: (``da4ml.cmvm.api.solve``, its search over decomposition depths; slower than one stage)
DECOMPOSE_MAX_WEIGHTS = 1024

#: how many kernels' candidate graphs :func:`graph_candidates` keeps (the least recently used go first)
SOLVED_KEPT = 64
_SOLVED: Recent[tuple[SharedGraph, ...]] = Recent(SOLVED_KEPT)


def shared_graph(kernel: np.ndarray, xs: list[Signal]) -> SharedGraph:
    """The shared adder graph of ``x @ kernel`` for integer ``kernel`` (``n_in x n_out``)
    and non-constant input signals ``xs`` (one per row): of :func:`graph_candidates`,
    the one with the fewest LUTs (the first of equals).

    Raises:
        MissingDependencyError: da4ml 0.5.x is not installed (an ImportError; the CLI exits 3).
        RuntimeError: the solver's graph does not reproduce ``kernel``.
    """
    return min(graph_candidates(kernel, xs), key=lambda g: g.luts)


def graph_candidates(kernel: np.ndarray, xs: list[Signal]) -> list[SharedGraph]:
    """Adder graphs of ``x @ kernel``, each counted by :func:`~.rules.adder_cells`: da4ml's
    greedy CMVM (``wmc``), its delay-constrained variant (``wmc-dc``) and, for a kernel of
    at most :data:`DECOMPOSE_MAX_WEIGHTS` weights, the solution of da4ml's search over
    decompositions ``kernel = M0 @ M1`` when it has two stages (composed here into one
    graph); each written both ways :func:`_composed` can (``source`` says which). No one
    of them is the cheapest on every kernel: on the 30 random layers of
    ``benchmarks/rtl.py`` the decomposition saves 39% of ``wmc``'s LUTs on an 8x8 layer of
    2-bit weights and costs more on others; writing by scale saves up to 5% on about half.

    The last :data:`SOLVED_KEPT` kernels' candidates are kept (keyed by the kernel and the
    input signals, which are all they depend on): a model estimated, then written or
    estimated again unchanged (the budget's result and a report, a conversion after an
    estimate) solves each kernel once. The solvers run interpreted where numba is off
    (``NUMBA_DISABLE_JIT``), and the RTL latency budget test solved each of its four kernels
    twice: 19 of its 33 s.

    Raises:
        MissingDependencyError: da4ml 0.5.x is not installed (an ImportError; the CLI exits 3).
        RuntimeError: a solver's graph does not reproduce ``kernel``.
    """
    # the solvers first, kept graphs or not: a missing da4ml is reported on every call
    try:
        from .da import solve
        from .da_cmvm import cmvm_stage
    except ImportError as e:
        from ..optional import MissingDependencyError

        raise MissingDependencyError(f"The RTL backend solves its adder graphs with da4ml 0.5.x, a dependency of hgq_fpga "
                          f"that is missing here ({e}). Install it with: pip install 'da4ml>=0.5.2,<0.6'") from None
    k = np.asarray(kernel, dtype=np.int64)
    key = (k.shape, k.tobytes(), tuple(xs))
    kept = _SOLVED.get(key)
    if kept is not None:
        return list(kept)
    out = _solve_candidates(k, xs, solve, cmvm_stage)
    _SOLVED.put(key, tuple(out))
    return out


def _solve_candidates(k: np.ndarray, xs: list[Signal], solve: Any, cmvm_stage: Any) -> list[SharedGraph]:
    """:func:`graph_candidates`, solved (not kept) with da4ml's ``solve`` and :func:`~.da_cmvm.cmvm_stage`."""
    qints = [(float(s.lo), float(s.hi), float(2.0 ** s.lsb)) for s in xs]
    lats = [0.0] * k.shape[0]
    kf = k.astype(np.float64)
    solutions = {m: [cmvm_stage(kf, m, qints, lats, -1, -1)] for m in ("wmc", "wmc-dc")}
    if k.size <= DECOMPOSE_MAX_WEIGHTS:
        stages = list(solve(k.astype(np.float32), qintervals=qints, latencies=lats).solutions)
        if len(stages) > 1:
            solutions["decomposed"] = stages
    out = []
    for name, stages in solutions.items():
        for by_scale in (False, True):
            try:
                out.append(_graph(stages, k, xs, by_scale, name + ("/scale" if by_scale else "")))
            except ValueError:  # a right shift that would drop bits (da4ml's order only)
                if by_scale:
                    raise
    return out


def _composed(stages: list, by_scale: bool) -> tuple[list[tuple], list[tuple[int, int, int] | None]]:
    """da4ml's stages (``CombLogic``, each reading the previous one's outputs) as one list of
    nodes: ``("in", slot, shift)`` or ``(a, b, subtract, shift)`` (``a +- b << shift``),
    and the last stage's outputs as ``(node, sign, shift)`` (None: zero).

    A value of a stage is a node times ``sign * 2**scale``; a stage's input reads the
    previous stage's output with its shift and negation. A sum of two values is written
    over the first of them, whose sign is taken out: ``by_scale``, the one with the lower
    scale (no right shifts); else as da4ml orders them, the positive one first where one
    is negative (a single stage is then da4ml's graph op for op), and a negative shift is
    an exact right shift (:func:`_graph` refuses one that is not). The two differ in
    where negations and shifts land, and each is the cheaper on some kernels."""
    nodes: list[tuple] = []
    refs: list[tuple[int, int, int] | None] = []
    for st, sol in enumerate(stages):
        vals: list[tuple[int, int, int] | None] = []
        for op in sol.ops:
            if op.opcode == -1:
                sh = int(sol.inp_shifts[op.id0])
                if st == 0:
                    nodes.append(("in", int(op.id0), sh))
                    vals.append((len(nodes) - 1, 1, 0))
                else:
                    r = refs[op.id0]
                    vals.append(None if r is None else (r[0], r[1], r[2] + sh))
            elif op.opcode in (0, 1):
                a, b = vals[op.id0], vals[op.id1]
                if b is not None:
                    b = (b[0], -b[1] if op.opcode == 1 else b[1], b[2] + int(op.data))
                if a is None or b is None:
                    vals.append(b if a is None else a)
                    continue
                if (a[2] > b[2]) if by_scale else (a[1] < 0 < b[1]):
                    a, b = b, a
                (ia, sa, ea), (ib, sb, eb) = a, b
                nodes.append((ia, ib, sa * sb < 0, eb - ea))
                vals.append((len(nodes) - 1, sa, ea))
            else:
                raise RuntimeError(f"shared_graph: unexpected da4ml operation (opcode {op.opcode})")
        refs = []
        for idx, sh, neg in zip(sol.out_idxs, sol.out_shifts, sol.out_negs):
            v = vals[int(idx)] if int(idx) >= 0 else None
            refs.append(None if v is None else (v[0], -v[1] if neg else v[1], v[2] + int(sh)))
    return nodes, refs


def _graph(stages: list, k: np.ndarray, xs: list[Signal], by_scale: bool, source: str) -> SharedGraph:
    """The :class:`SharedGraph` of da4ml's solution ``stages`` for kernel ``k`` (written as
    :func:`_composed` says), each node's range recomputed exactly and each column checked
    against the kernel.

    Raises:
        ValueError: a right shift that would drop bits.
        RuntimeError: the graph does not reproduce ``k``.
    """
    n_in, n_out = k.shape
    nodes, outs = _composed(stages, by_scale)
    # exact coefficients of every node over the inputs, as floats (sums of powers of two)
    coefs: list[np.ndarray] = []
    for nd in nodes:
        if nd[0] == "in":
            c = np.zeros(n_in)
            c[nd[1]] = 2.0 ** nd[2]
        else:
            c = coefs[nd[0]] + (-1 if nd[2] else 1) * 2.0 ** nd[3] * coefs[nd[1]]
        coefs.append(c)
    values = np.unique(np.concatenate([np.abs(c) for c in coefs]))
    extra = max(Fraction(float(v)).denominator.bit_length() - 1 for v in values)  # bits that make all integers
    ints = [[int(v) for v in (c * 2.0 ** extra).tolist()] for c in coefs]
    signals = [_node(c, xs) for c in ints]
    inputs = [nd[1] for nd in nodes if nd[0] == "in"]
    n = len(inputs)
    if inputs != list(range(n)) or any(nd[0] == "in" for nd in nodes[n:]):
        raise RuntimeError("shared_graph: the solver's inputs are not the first nodes")
    adders, shifts = [], []
    for m, nd in enumerate(nodes[n:], start=n):
        a, b = signals[nd[0]], scaled(signals[nd[1]], nd[3])
        luts, carry, _ = adder_cells(a, b, nd[2], top=signals[m].top)
        adders.append(Adder(nd[0], nd[1], nd[2], m, luts, carry))
        shifts.append(nd[3])
    outputs = []
    for j, r in enumerate(outs):
        idx, sign, sh = r if r is not None else (-1, 1, 0)
        got = np.zeros(n_in) if idx < 0 else sign * 2.0 ** sh * coefs[idx]
        if not np.array_equal(got, k[:, j].astype(np.float64)):
            raise RuntimeError(f"shared_graph: the solver's column {j} is not the kernel's")
        outputs.append((idx, sign, sh))
    return SharedGraph(inputs, [nd[2] for nd in nodes[:n]], signals, adders, shifts, outputs, extra, source)


@dataclass
class Position:
    """One output position of a dense or convolution layer: its graph (None: no input
    varies, or one tree per output was cheaper) and, per graph input, the flat index of
    the input element it reads."""

    graph: SharedGraph | None
    sources: list[int]


def shared_circuits(graph: Graph, node: ir.Linear, x: list[Signal], caps: list[int | None] | None = None,
                    prefer: str = "latency") -> tuple[list[Position], list[LinearCircuit]]:
    """The positions of a dense/conv node and one :class:`~.circuit.LinearCircuit` per output
    element (flat, C order), whose terms' sources are nodes of its position's graph.

    Constant inputs (a padding zero, an input quantized to one value) are folded into
    the bias; the other rows with a nonzero weight are the graph's inputs. Positions
    with the same input signals share one graph (solved once). An output that no
    output of the model reads (its highest needed bit ``-1``, :func:`~.liveness.needed_bits`)
    is left out of the graph: it is written as its bias, and synthesis would remove
    its logic anyway. ``prefer`` (:data:`PREFER`) picks each graph among the candidates.
    Where the graph costs
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
    solved: dict[tuple, list[SharedGraph]] = {}
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
        g, cols = None, [_column(None, j, shift, int(bias[j]) + folded[j], cap[j]) for j in range(n_out)]
        if rows and len(dead) < n_out:
            key = (tuple(rows), tuple(x[patch[r]] for r in rows), dead)
            if key not in solved:
                k = w2[rows].copy()
                k[:, list(dead)] = 0  # dead columns take no part in the graph (synthesis removes them)
                solved[key] = graph_candidates(k, [x[patch[r]] for r in rows])
            g, cols = _cheapest(solved[key], lambda c: [_column(c, j, shift, int(bias[j]) + folded[j], cap[j])
                                                        for j in range(n_out)], prefer)
        trees = all_trees[p * n_out:(p + 1) * n_out]
        if g is not None and sum(c.tree.luts for c in trees) < g.luts + sum(c.tree.luts for c in cols):
            g, cols = None, trees  # too little to share here: one tree per output is cheaper
        positions.append(Position(g, [patch[r] for r in rows] if g is not None else []))
        circuits += cols
    return positions, circuits


def path_delay(g: SharedGraph, columns: list[LinearCircuit]) -> float:
    """The longest path from an input of ``g`` through an output ``column``, in ns by the
    pipeline's own :class:`~hgq_fpga.backends.rtl.pipeline.DelayModel`: each adder (and a
    column's adders or negation) one LUT and its carry chain."""
    from ..backends.rtl.pipeline import DelayModel  # imported late: the RTL backend imports this module

    model = DelayModel()

    def adder(s: Signal) -> float:
        return model.delay("adder", s.top - min(s.lsb, s.top) + 1)

    arrive = [0.0] * len(g.signals)
    for a in g.adders:
        arrive[a.out] = max(arrive[a.a], arrive[a.b]) + adder(g.signals[a.out])
    worst = 0.0
    for (idx, _, _), col in zip(g.outputs, columns):
        t, tree = arrive[idx] if idx >= 0 else 0.0, col.tree
        if tree.root is not None:
            t += (len(tree.adders) + (tree.sign < 0)) * adder(tree.signals[tree.root])
        worst = max(worst, t)
    return worst


def _cheapest(candidates: list[SharedGraph], columns,
              prefer: str = "latency") -> tuple[SharedGraph, list[LinearCircuit]]:
    """Of ``candidates`` (with ``prefer="latency"``: those whose longest path, :func:`path_delay`
    with their output ``columns``, is no longer than the first's, da4ml's greedy ``wmc``, so
    that the pipeline's latency does not grow), the one with the fewest LUTs counted with its
    columns (a negated column, ``-node + bias``, costs its adder); the first of equals.
    da4ml's two-stage decompositions are about twice as deep: on the jet MLP of
    ``benchmarks/rtl.py`` the cheapest graphs whatever their depth (``prefer="luts"``) saved
    0.4% of the LUTs and added 2 cycles; on an 8x8 layer of 2-bit weights, 33% and 1 cycle."""
    best, limit = None, None
    for c in candidates:
        cols = columns(c)
        delay = path_delay(c, cols) if prefer == "latency" else 0.0
        limit = delay if limit is None else limit
        if delay <= limit + 1e-9:
            luts = c.luts + sum(col.tree.luts for col in cols)
            if best is None or luts < best[0]:
                best = (luts, c, cols)
    return best[1], best[2]


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
