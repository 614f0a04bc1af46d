"""The concrete circuit of each IR operation, shared by the estimator and the
Verilog writer (so the estimate counts the cells of the very circuit that
synthesis is run on).

Each tensor element is a :class:`~hgq_fpga.resources.rules.Signal`: its exact
range (integer mantissas at the tensor's scale, from the IR) and the number
of low bits known to be zero. A linear operation (dense, convolution, folded
batch normalization, average pooling, addition) becomes one adder tree per
output element; its terms are shifted copies of inputs, one per nonzero
canonical signed digit of the weight (or a DSP product, see
:func:`~hgq_fpga.resources.rules.uses_dsp`), and the bias. The digits of
one weight are summed first (the product ``w * x``, with its exact range),
then the products, narrowest first, then the bias.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..ir import Constant, Graph, Op, ops as ir
from ..ir.intmath import im2col
from .recent import Recent
from .rules import AdderTree, Signal, adder_tree, csd_digits, uses_dsp, width_of

__all__ = [
    "CACHED_CIRCUITS", "NO_BITS", "CountedTree", "LinearCircuit", "Term", "add_circuits", "aligned_bias",
    "clear_cache", "kernel_patches", "linear_circuits", "tensor_signals", "weight_width",
]

#: ``lsb`` of an element that is always zero
NO_BITS = 1 << 30

#: at most this many dense/convolution adder trees are kept from one estimate to the next
CACHED_CIRCUITS = 8192

# The adder trees of dense/convolution columns, kept across estimates (least recently used
# input patches go first): (the patch's input signals, shift, dsp, dsp_min_bits) ->
# (integer weights of the column, bias, cap) -> circuit. A tree is a function of exactly
# these, so a re-estimate (a repair round, a layer sensitivity, a check while the bits are
# frozen) builds only the columns whose inputs, weights or bias changed. The cache has its
# lock (estimates may run in several threads); a patch's own dict of trees takes single
# insertions, which are atomic.
_TREES: Recent[dict[tuple, LinearCircuit]] = Recent(CACHED_CIRCUITS, weight=len)


def clear_cache() -> None:
    """Forget the adder trees kept from earlier estimates."""
    _TREES.clear()


class Term(NamedTuple):
    """One term of an adder tree: ``sign * source * 2**shift``.

    ``source`` is a slot of the circuit's ``inputs``; ``None`` for a constant (``value``).
    ``multiplier`` is set for a product computed by a DSP (``source * multiplier``).
    (A named tuple: an estimate makes one a CSD digit.)
    """

    sign: int
    source: int | None
    shift: int
    value: int = 0
    multiplier: int = 0


class LinearCircuit:
    """The adder tree of one output element and the origin of each term.

    ``tree`` is an :class:`~hgq_fpga.resources.rules.AdderTree`, or a :class:`CountedTree` (a dense or
    convolution column counted by compiled code) that builds its signals, adders and the terms on
    first use of them.
    """

    __slots__ = ("_terms", "tree", "dsp_products", "inputs")

    def __init__(self, terms: list[Term] | None, tree: AdderTree | CountedTree,
                 dsp_products: list[tuple[int, int]], inputs: list[int]) -> None:
        self._terms = terms
        self.tree = tree
        self.dsp_products = dsp_products  # (input width, weight width) per DSP multiplication
        self.inputs = inputs  # slot -> flat index into the node's (concatenated) input elements

    @property
    def terms(self) -> list[Term]:
        return self._terms if self._terms is not None else self.tree.terms

    def at(self, inputs: list[int]) -> LinearCircuit:
        """The same tree reading other input elements (a convolution's positions with equal inputs)."""
        return LinearCircuit(self._terms, self.tree, self.dsp_products, inputs)


class CountedTree:
    """A dense or convolution column's adder tree known by its counts
    (:func:`~hgq_fpga.resources.tree_counts.count_columns`): ``luts``, ``carry`` and ``root_lsb`` are
    those of the tree :func:`_linear_one` builds, which is built (in Python) when its ``signals``,
    ``adders``, ``root``, ``sign`` or ``terms`` are first read (by the Verilog writer, for instance).
    Its arguments are kept, not a closure, so it pickles."""

    __slots__ = ("luts", "carry", "root_lsb", "_args", "_built")

    def __init__(self, luts: int, carry: int, root_lsb: int, args: tuple) -> None:
        self.luts, self.carry, self.root_lsb = luts, carry, root_lsb
        self._args = args
        self._built: LinearCircuit | None = None

    def _full(self) -> LinearCircuit:
        if self._built is None:  # (two threads may both build it: the same tree, either kept)
            self._built = _linear_one(*self._args)
        return self._built

    @property
    def terms(self) -> list[Term]:
        return self._full().terms

    @property
    def signals(self) -> list[Signal]:
        return self._full().tree.signals

    @property
    def adders(self) -> list:
        return self._full().tree.adders

    @property
    def root(self) -> int | None:
        return self._full().tree.root

    @property
    def sign(self) -> int:
        return self._full().tree.sign

    @property
    def negation_luts(self) -> int:
        return self._full().tree.negation_luts


def tensor_signals(graph: Graph, name: str, lsb: np.ndarray | None = None) -> list[Signal]:
    """Signals of a tensor's elements, flat (C order); ``lsb`` per element (default 0)."""
    t = graph.tensors[name]
    lo = np.asarray(t.lo).reshape(-1)
    hi = np.asarray(t.hi).reshape(-1)
    lsbs = np.zeros(lo.shape, np.int64) if lsb is None else np.asarray(lsb).reshape(-1)
    out = []
    for a, b, s in zip(lo.tolist(), hi.tolist(), lsbs.tolist()):
        a, b = int(a), int(b)
        out.append(Signal(a, b, 0 if a == b else int(s)))
    return out


def weight_width(m: int) -> int:
    """Width of the multiplier a constant needs in a circuit: a sign bit plus the
    digits from the highest to the lowest set bit of its magnitude (``0`` for
    ``0``). A property of the circuit (it decides DSP use), not the weight's
    format: the format, and so EBOPs, is the constant's ``fmt``.

    >>> weight_width(0), weight_width(1), weight_width(-3), weight_width(12)
    (0, 2, 3, 3)
    """
    m = int(m)
    if m == 0:
        return 0
    a = abs(m)
    low = (a & -a).bit_length() - 1
    return (a >> low).bit_length() + 1


def _linear_one(
    x: list[Signal],
    sources: list[int],
    weights: list[int],
    shift: int,
    bias: int,
    dsp: bool,
    dsp_min_bits: int,
    cap: int | None = None,
    memo: dict | None = None,
) -> LinearCircuit:
    """``sum_k weights[k] * x[sources[k]] * 2**shift + bias`` as an adder tree
    (a source ``-1`` is padding: zero); ``cap``: the highest bit used downstream.
    ``memo``: a dict kept across the calls of one layer, for the CSD digits of each
    weight value and each shifted input (the same ones recur in every column)."""
    memo = {} if memo is None else memo
    terms: list[Term] = []
    signals: list[tuple[int, Signal]] = []
    products: list[tuple[int, int]] = []
    groups: list[tuple[list[int], tuple[int, int]]] = []
    for slot, (src, w) in enumerate(zip(sources, weights)):
        if w == 0 or src < 0:
            continue
        s = x[src]
        if s.constant and s.lo == 0:
            continue
        if dsp:
            bx, bw = width_of(s.lo, s.hi), weight_width(w)
            if uses_dsp(bw, bx, dsp_min_bits) and not s.constant:
                lo, hi = sorted((s.lo * w, s.hi * w))
                low = (abs(w) & -abs(w)).bit_length() - 1
                terms.append(Term(1, slot, shift, multiplier=w))
                signals.append((1, Signal(lo << shift, hi << shift, s.lsb + low + shift)))
                products.append((bx, bw))
                continue
        digits = memo.get(w)
        if digits is None:
            digits = memo[w] = csd_digits(w)
        if len(digits) > 1:  # the product w * x has an exact range: sum its digits first
            lo, hi = sorted((s.lo * w << shift, s.hi * w << shift))
            groups.append((list(range(len(terms), len(terms) + len(digits))), (lo, hi)))
        for sign, e in digits:
            terms.append(Term(sign, slot, e + shift))
            key = (src, e + shift)  # (a tuple key: the weights' int keys above cannot collide with it)
            copy = memo.get(key)
            if copy is None:
                copy = memo[key] = s.shifted(e + shift)
            signals.append((sign, copy))
    if bias:
        terms.append(Term(1, None, 0, value=bias))
        signals.append((1, Signal(bias, bias, 0)))
    return LinearCircuit(terms, adder_tree(signals, groups, cap), products, list(sources))


def linear_circuits(
    graph: Graph, node: Op, x: list[Signal], *, dsp: bool = False, dsp_min_bits: int = 10,
    caps: list[int | None] | None = None,
) -> list[LinearCircuit]:
    """One :class:`LinearCircuit` per output element (flat, C order) of a linear node.

    ``caps[e]``: the highest bit of output element ``e`` that is used downstream
    (None: all).

    Supported ops: :class:`~hgq_fpga.ir.Dense`, ``Conv``, ``Scale``, ``AvgPool``.
    Output positions whose inputs have identical signals share one circuit
    object (a convolution's interior positions, for instance).
    """
    out_t = graph.tensors[node.outputs[0]]
    f_out = out_t.f

    def cap(e: int) -> int | None:
        return caps[e] if caps is not None else None

    if isinstance(node, ir.Linear):
        return _kernel_circuits(graph, node, x, dsp, dsp_min_bits, caps)
    if isinstance(node, ir.Scale):
        f_y = graph.tensors[node.inputs[0]].f + node.scale.f
        bm = aligned_bias(node.offset, f_out, out_t.shape[-1])
        c = out_t.shape[-1]
        sm = np.asarray(node.scale.m).reshape(-1)
        return [_linear_one(x, [e], [int(sm[e % c])], f_out - f_y, int(bm[e % c]), dsp, dsp_min_bits, cap(e))
                for e in range(len(x))]
    if isinstance(node, ir.AvgPool):
        n_in = graph.tensors[node.inputs[0]].shape
        idx = np.arange(int(np.prod(n_in))).reshape((1,) + tuple(n_in))
        cols = im2col(idx, node.pool, node.strides, (1,) * len(node.pool), "valid")
        patches = np.moveaxis(cols, -2, -1).reshape(-1, cols.shape[-2])
        return [_linear_one(x, p.tolist(), [1] * len(p), 0, 0, False, dsp_min_bits, cap(e))
                for e, p in enumerate(patches)]
    raise ValueError(f"linear_circuits: op {type(node).__name__} is not linear")


def kernel_patches(graph: Graph, node: ir.Linear) -> np.ndarray:
    """Flat input indices read by each output position of a dense/conv node
    (``-1``: padding), shape ``(positions, kernel rows)``."""
    km = node.kernel.m
    n_in = graph.tensors[node.inputs[0]].shape
    if isinstance(node, ir.Conv):
        idx = np.arange(int(np.prod(n_in))).reshape((1,) + tuple(n_in))
        cols = im2col(idx, km.shape[:-2], node.strides, node.dilation, node.padding, pad_value=-1)
        return cols.reshape(-1, int(np.prod(km.shape[:-1])))
    return np.arange(int(np.prod(n_in))).reshape(-1, km.shape[0])  # a dense layer acts on the last axis


def _kernel_circuits(graph: Graph, node: ir.Linear, x: list[Signal], dsp: bool, dsp_min_bits: int,
                     caps: list[int | None] | None) -> list[LinearCircuit]:
    out_t = graph.tensors[node.outputs[0]]
    shift = out_t.f - (graph.tensors[node.inputs[0]].f + node.kernel.f)
    biases = [int(b) for b in aligned_bias(node.bias, out_t.f, out_t.shape[-1]).tolist()]
    km = node.kernel.m
    w2 = np.asarray(km).reshape(-1, km.shape[-1])
    columns = [tuple(w2[:, j].tolist()) for j in range(w2.shape[1])]
    # the columns' counts from compiled code where numba compiles and the layer's integers fit in int64
    # (tree_counts: the same trees, counted about 15x faster); the trees themselves are built if read.
    # (Imported here: numba's import is a tenth of a second that `import hgq_fpga` does not need.)
    from . import tree_counts

    counted = tree_counts.compiled() and w2.dtype != object and tree_counts.fits_int64(x, w2, shift, biases)
    out = []
    memo: dict = {}  # (every patch reads the same x: its shifted copies recur across patches too)
    for p, patch in enumerate(kernel_patches(graph, node)):
        srcs = patch.tolist()
        key = (tuple(x[s] if s >= 0 else None for s in srcs), shift, dsp, dsp_min_bits)  # hashed once per patch
        same_inputs = _TREES.setdefault(key, dict)
        cap_of = [caps[p * len(columns) + j] if caps is not None else None for j in range(len(columns))]
        if counted:
            missing = [j for j, column in enumerate(columns) if (column, biases[j], cap_of[j]) not in same_inputs]
            if missing:
                _count_missing(same_inputs, x, srcs, w2, columns, missing, shift, biases, cap_of, dsp, dsp_min_bits)
        for j, column in enumerate(columns):
            c = same_inputs.get((column, biases[j], cap_of[j]))
            if c is None:
                c = same_inputs[(column, biases[j], cap_of[j])] = _linear_one(x, srcs, list(column), shift, biases[j],
                                                                             dsp, dsp_min_bits, cap_of[j], memo)
            out.append(c if c.inputs == srcs else c.at(srcs))
    _TREES.trim()  # (the least recently used patches' trees beyond CACHED_CIRCUITS)
    return out


def _count_missing(same_inputs: dict, x: list[Signal], srcs: list[int], w2: np.ndarray, columns: list[tuple],
                   missing: list[int], shift: int, biases: list[int], caps: list[int | None], dsp: bool,
                   dsp_min_bits: int) -> None:
    """The trees of the columns ``missing`` of one patch, counted by :mod:`.tree_counts`, into the cache."""
    from . import tree_counts

    counts = tree_counts.count_columns(x, srcs, w2[:, missing], shift, [biases[j] for j in missing],
                                       [caps[j] for j in missing], dsp, dsp_min_bits)
    products: dict[int, list[tuple[int, int]]] = {}
    for i, bx, bw in counts.dsp.tolist():
        products.setdefault(i, []).append((bx, bw))
    for i, j in enumerate(missing):
        tree = CountedTree(int(counts.luts[i]), int(counts.carry[i]), int(counts.root_lsb[i]),
                           (x, srcs, list(columns[j]), shift, biases[j], dsp, dsp_min_bits, caps[j]))
        same_inputs[(columns[j], biases[j], caps[j])] = LinearCircuit(None, tree, products.get(i, []), srcs)


def add_circuits(graph: Graph, node: Op, xs: list[list[Signal]],
                 caps: list[int | None] | None = None) -> list[LinearCircuit]:
    """Element-wise sum of several tensors, each aligned to the output scale."""
    f_out = graph.tensors[node.outputs[0]].f
    shifts = [f_out - graph.tensors[n].f for n in node.inputs]
    n = len(xs[0])
    out = []
    for e in range(n):
        flat = [x[e] for x in xs]
        terms, signals = [], []
        for k, (s, sh) in enumerate(zip(flat, shifts)):
            if s.constant and s.lo == 0:
                continue
            terms.append(Term(1, k, sh))
            signals.append((1, s.shifted(sh)))
        cap = caps[e] if caps is not None else None
        out.append(LinearCircuit(terms, adder_tree(signals, None, cap), [], [k * n + e for k in range(len(xs))]))
    return out


def aligned_bias(bias: Constant | None, f_out: int, n: int) -> np.ndarray:
    if bias is None:
        return np.zeros(n, dtype=object)
    bm, bf = bias.m, bias.f
    return np.array([int(v) << (f_out - bf) for v in np.asarray(bm).reshape(-1).tolist()], dtype=object)
