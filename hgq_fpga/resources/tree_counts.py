"""The cells of a dense or convolution layer's adder trees, counted by compiled code.

:func:`~hgq_fpga.resources.circuit.linear_circuits` builds one adder tree per
output element in Python (:func:`~hgq_fpga.resources.rules.adder_tree`): a
:class:`~hgq_fpga.resources.rules.Signal` per CSD digit, a heap of the terms, an
:class:`~hgq_fpga.resources.rules.Adder` per addition, about 10 us a
multiplication on this project's VM. An estimate needs only three numbers of each tree: its LUTs, its
carry cells and the ``lsb`` of its root. :func:`count_columns` computes them for
all the columns of one input patch in one call of a numba-compiled loop that
takes the very same steps (the same terms in the same order, the same heap order
``(top, lsb, index)``, the same cell rules :func:`~hgq_fpga.resources.rules.adder_cells`
applies), in int64 arithmetic; the full tree is built in Python only where
something reads it (the Verilog writer, the shared adder graphs' timing).

Why a second implementation of the same walk, rather than the Python one
sped up: the Python tree was already tuned (named tuples, a heap, memoized digits)
and an estimate of the 64-256-256-10 MLP still took about a second from an empty
cache, most of it in ``combine`` and the heap, an interpreter's cost per addition;
a budgeted ``fit`` takes several such estimates (BENCHMARKS.md, "How the exact
estimate scales"). The two are kept identical by ``tests/resources/test_tree_counts.py``,
which compares them column by column (compiled, in a process of its own, and
interpreted) on random layers with every kind of term.

The compiled path is taken when numba compiles (``NUMBA_DISABLE_JIT`` unset) and
every integer of the layer fits comfortably in 64 bits (:func:`fits_int64`);
otherwise the Python trees are built, as before.

Example (interpreted or compiled alike)::

    >>> import numpy as np
    >>> x = [Signal(0, 15), Signal(-8, 7)]
    >>> counts = count_columns(x, [0, 1], np.array([[3, 1], [-5, 0]]), 0, [0, 4], [None, None], False, 10)
    >>> counts.luts.tolist(), counts.carry.tolist(), counts.root_lsb.tolist()
    ([14, 0], [6, 1], [0, 0])
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import njit

from .circuit import NO_BITS
from .rules import Signal

__all__ = ["ColumnCounts", "compiled", "count_columns", "fits_int64"]

#: a cap that caps nothing (no tree is this wide)
_NO_CAP = 1 << 40
#: the widest integer a layer may hold for the compiled count (products, shifts and sums included)
_MAX_BITS = 60


class ColumnCounts(NamedTuple):
    """Per column of one patch: LUTs (the final negation included), carry cells, the root's ``lsb``
    (``1 << 30`` without a root), and the DSP products as ``(column, input width, weight width)`` rows."""

    luts: np.ndarray
    carry: np.ndarray
    root_lsb: np.ndarray
    dsp: np.ndarray


def compiled() -> bool:
    """Whether numba compiles here (the count is then the fast path of an estimate)."""
    return not numba.config.DISABLE_JIT


def fits_int64(x: list[Signal], weights: np.ndarray, shift: int, biases: list[int]) -> bool:
    """Whether every integer of the layer's trees fits in :data:`_MAX_BITS` bits: the inputs' ranges
    times the weights, shifted, summed over a column, and the biases (else the Python trees are built).

    >>> fits_int64([Signal(-8, 7)], np.array([[3]]), 2, [1])
    True
    >>> fits_int64([Signal(0, 2**40)], np.array([[2**20]]), 0, [0])
    False
    """
    if shift < 0:
        return False
    x_bits = max((max(abs(s.lo), abs(s.hi)).bit_length() for s in x), default=0)
    w = np.asarray(weights)
    w_bits = int(np.abs(w).max(initial=0)).bit_length()
    b_bits = max((abs(int(b)).bit_length() for b in biases), default=0)
    terms = w.shape[0] * (w_bits + 1) + 2
    return max(x_bits + w_bits + 1 + shift, b_bits) + terms.bit_length() + 2 <= _MAX_BITS


def count_columns(x: list[Signal], sources: list[int], weights: np.ndarray, shift: int, biases: list[int],
                  caps: list[int | None], dsp: bool, dsp_min_bits: int) -> ColumnCounts:
    """The counts of ``sum_k weights[k, j] * x[sources[k]] * 2**shift + biases[j]`` for each column ``j``,
    as :func:`~hgq_fpga.resources.circuit._linear_one` builds its tree (``sources[k] == -1``: padding).

    The caller checks :func:`fits_int64` first.
    """
    n = len(sources)
    src = np.asarray(sources, np.int64).reshape(n)
    lo = np.zeros(n, np.int64)
    hi = np.zeros(n, np.int64)
    lsb = np.zeros(n, np.int64)
    for k, s in enumerate(sources):
        if s >= 0:
            sig = x[s]
            lo[k], hi[k], lsb[k] = sig.lo, sig.hi, sig.lsb
    w = np.ascontiguousarray(np.asarray(weights, np.int64).reshape(n, -1))
    cols = w.shape[1]
    b = np.asarray([int(v) for v in biases], np.int64).reshape(cols)
    c = np.asarray([_NO_CAP if v is None else int(v) for v in caps], np.int64).reshape(cols)
    luts, carry, root = np.zeros(cols, np.int64), np.zeros(cols, np.int64), np.zeros(cols, np.int64)
    dsp_rows = np.zeros((n * cols if dsp else 0, 3), np.int64)
    used = _count(src, lo, hi, lsb, w, int(shift), b, c, bool(dsp), int(dsp_min_bits), luts, carry, root, dsp_rows)
    return ColumnCounts(luts, carry, root, dsp_rows[:used])


@njit(cache=True)
def _bit_length(v: int) -> int:
    """``int.bit_length`` of an int64 (of its magnitude, as Python's)."""
    if v < 0:
        v = -v
    n = 0
    while v >= 256:
        v >>= 8
        n += 8
    while v:
        v >>= 1
        n += 1
    return n


@njit(cache=True)
def _width(lo: int, hi: int) -> int:
    """:func:`~hgq_fpga.resources.rules.width_of`."""
    if lo < 0:
        h, m = _bit_length(hi), _bit_length(-lo - 1)
        return (h if h > m else m) + 1
    return _bit_length(hi)


@njit(cache=True)
def _carry(bits: int) -> int:
    """:func:`~hgq_fpga.resources.rules.carry_cells` (CARRY4)."""
    return (bits + 3) // 4 if bits > 0 else 0


@njit(cache=True)
def _lowest_one(v: int) -> int:
    if v == 0:
        return NO_BITS
    return _bit_length(v & -v) - 1


@njit(cache=True)
def _adder(lo, hi, lsb, top, ka: int, kb: int, subtract: bool, out_top: int) -> tuple[int, int]:
    """:func:`~hgq_fpga.resources.rules._adder_count` of signals ``ka`` and ``kb``: ``(luts, carry)``."""
    a_const, b_const = lo[ka] == hi[ka], lo[kb] == hi[kb]
    if a_const or b_const:
        var = kb if a_const else ka
        if subtract and a_const:
            start = lsb[var]
        else:
            start = max(lsb[var], _lowest_one(lo[ka] if a_const else lo[kb]))
        return 0, _carry(out_top - start + 1)
    start = max(lsb[ka], lsb[kb])
    a_top, b_top = top[ka], top[kb]
    last = min(out_top, max(a_top, b_top))
    if lo[ka] >= 0:
        last = min(last, a_top)
    if lo[kb] >= 0:
        last = min(last, b_top)
    luts = max(0, last - start + 1)
    if subtract and lsb[kb] < lsb[ka]:
        luts += lsb[ka] - lsb[kb]
        start = lsb[kb]
    return luts, _carry(out_top - start + 1)


@njit(cache=True)
def _less(top, lsb, p: int, q: int) -> bool:
    """The pool's order: lowest top bit first, then lower ``lsb``, then order of arrival."""
    if top[p] != top[q]:
        return top[p] < top[q]
    if lsb[p] != lsb[q]:
        return lsb[p] < lsb[q]
    return p < q


@njit(cache=True)
def _push(heap, size: int, k: int, top, lsb) -> int:
    i = size
    heap[i] = k
    while i > 0:
        parent = (i - 1) >> 1
        if _less(top, lsb, heap[i], heap[parent]):
            heap[i], heap[parent] = heap[parent], heap[i]
            i = parent
        else:
            break
    return size + 1


@njit(cache=True)
def _pop(heap, size: int, top, lsb) -> int:
    k = heap[0]
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        small = left
        if left + 1 < size and _less(top, lsb, heap[left + 1], heap[left]):
            small = left + 1
        if _less(top, lsb, heap[small], heap[i]):
            heap[i], heap[small] = heap[small], heap[i]
            i = small
        else:
            break
    return k


@njit(cache=True)
def _combine(lo, hi, lsb, top, sign, n: int, kx: int, ky: int, cap: int, exact: bool, elo: int, ehi: int,
             acc) -> int:
    """:meth:`~hgq_fpga.resources.rules._TreeBuilder.combine`: signal ``n`` is the sum; ``acc`` gets
    its cells; returns ``n + 1``."""
    sx, sy = sign[kx], sign[ky]
    if sx < 0 and sy > 0:
        kx, ky = ky, kx
        sx, sy = sy, sx
    subtract = sx != sy
    s = sx if not subtract else 1
    if subtract:
        wlo, whi = lo[kx] - hi[ky], hi[kx] - lo[ky]
    else:
        wlo, whi = lo[kx] + lo[ky], hi[kx] + hi[ky]
    if exact:
        if s > 0:
            olo, ohi = elo, ehi
        else:
            olo, ohi = -ehi, -elo
    else:
        olo, ohi = wlo, whi
    lo[n], hi[n], lsb[n] = olo, ohi, min(lsb[kx], lsb[ky])
    top[n] = _width(olo, ohi) - 1
    out_top = min(top[n], cap)
    if exact:
        out_top = min(out_top, _width(wlo, whi) - 1)
    luts, carry = _adder(lo, hi, lsb, top, kx, ky, subtract, out_top)
    acc[0] += luts
    acc[1] += carry
    sign[n] = s
    return n + 1


@njit(cache=True)
def _reduce(lo, hi, lsb, top, sign, n: int, heap, members, count: int, cap: int, exact: bool, elo: int,
            ehi: int, acc) -> tuple[int, int]:
    """:meth:`~hgq_fpga.resources.rules._TreeBuilder.reduce` of the signals ``members[:count]``:
    the signals' new count and the one left (``-1`` for none)."""
    if count == 0:
        return n, -1
    size = 0
    for i in range(count):
        size = _push(heap, size, members[i], top, lsb)
    while size > 1:
        x = _pop(heap, size, top, lsb)
        size -= 1
        y = _pop(heap, size, top, lsb)
        size -= 1
        n = _combine(lo, hi, lsb, top, sign, n, x, y, cap, exact and size == 0, elo, ehi, acc)
        size = _push(heap, size, n - 1, top, lsb)
    return n, heap[0]


@njit(cache=True)
def _count(src, xlo, xhi, xlsb, w, shift: int, bias, caps, dsp: bool, dsp_min_bits: int, luts_out, carry_out,
           root_out, dsp_rows) -> int:
    """Every column's counts into ``luts_out``, ``carry_out``, ``root_out``; its DSP products into
    ``dsp_rows``, whose number of rows used it returns."""
    rows, cols = w.shape
    most = 0
    for j in range(cols):  # the most terms a column can have (a digit per bit and one, the bias)
        t = 1
        for k in range(rows):
            t += _bit_length(w[k, j]) + 1
        most = max(most, t)
    size = 2 * most + 2
    sig = np.zeros((5, size), np.int64)  # lo, hi, lsb, top, sign of each signal
    single = np.zeros(size, np.bool_)
    groups = np.zeros((size, 4), np.int64)  # first term, end, exact lo, exact hi
    work = np.zeros((3, size), np.int64)  # heap, pool, members
    acc = np.zeros(2, np.int64)
    used = 0
    for j in range(cols):
        n_terms, n_groups, used = _terms(src, xlo, xhi, xlsb, w, j, shift, bias[j], dsp, dsp_min_bits, sig, single,
                                         groups, dsp_rows, used)
        acc[0], acc[1] = 0, 0
        root = _sum(sig, single, groups, work, n_terms, n_groups, caps[j], acc)
        luts = acc[0]
        if root < 0:
            root_out[j] = NO_BITS
        else:
            root_out[j] = sig[2, root]
            if sig[4, root] < 0 and sig[0, root] != sig[1, root]:  # every term negative: a final 0 - x
                luts += sig[3, root] + 2 - sig[2, root]
        luts_out[j] = luts
        carry_out[j] = acc[1]
    return used


@njit(cache=True)
def _terms(src, xlo, xhi, xlsb, w, j: int, shift: int, bias: int, dsp: bool, dsp_min_bits: int, sig, single,
           groups, dsp_rows, used: int) -> tuple[int, int, int]:
    """Column ``j``'s terms, in :func:`~hgq_fpga.resources.circuit._linear_one`'s order: per weight a
    DSP product or its CSD digits (a group if several), then the bias. Returns the numbers of terms
    and groups and of DSP rows used."""
    lo, hi, lsb, top, sign = sig[0], sig[1], sig[2], sig[3], sig[4]
    n = n_groups = 0
    for k in range(w.shape[0]):
        wk = w[k, j]
        if wk == 0 or src[k] < 0:
            continue
        slo, shi, slsb = xlo[k], xhi[k], xlsb[k]
        const = slo == shi
        if const and slo == 0:
            continue
        aw = abs(wk)
        low = _bit_length(aw & -aw) - 1
        if dsp and not const:
            bx, bw = _width(slo, shi), _bit_length(aw >> low) + 1
            if bw >= dsp_min_bits and bx >= dsp_min_bits:
                plo, phi = min(slo * wk, shi * wk), max(slo * wk, shi * wk)
                lo[n], hi[n], lsb[n], sign[n], single[n] = plo << shift, phi << shift, slsb + low + shift, 1, True
                top[n] = _width(lo[n], hi[n]) - 1
                n += 1
                dsp_rows[used, 0], dsp_rows[used, 1], dsp_rows[used, 2] = j, bx, bw
                used += 1
                continue
        first = n
        m, e = wk, 0
        while m:  # csd_digits
            if m & 1:
                d = 2 - (m & 3)
                sh = e + shift
                lo[n], hi[n], lsb[n], sign[n], single[n] = slo << sh, shi << sh, slsb + sh, d, False
                top[n] = _width(lo[n], hi[n]) - 1
                n += 1
                m -= d
            m >>= 1
            e += 1
        if n - first > 1:  # the product w * x has an exact range: its digits are summed first
            plo, phi = min(slo * wk, shi * wk) << shift, max(slo * wk, shi * wk) << shift
            groups[n_groups, 0], groups[n_groups, 1], groups[n_groups, 2], groups[n_groups, 3] = first, n, plo, phi
            n_groups += 1
        else:
            single[first] = True
    if bias != 0:
        lo[n], hi[n], lsb[n], top[n], sign[n], single[n] = bias, bias, 0, _width(bias, bias) - 1, 1, True
        n += 1
    return n, n_groups, used


@njit(cache=True)
def _sum(sig, single, groups, work, n_terms: int, n_groups: int, cap: int, acc) -> int:
    """:func:`~hgq_fpga.resources.rules.adder_tree` of the terms: each group on its own (its last sum
    with the product's exact range), then the pool of the group sums and the single terms, then the
    constants one by one. Returns the root (``-1``: none)."""
    lo, hi, lsb, top, sign = sig[0], sig[1], sig[2], sig[3], sig[4]
    heap, pool, members = work[0], work[1], work[2]
    n, n_pool = n_terms, 0
    for g in range(n_groups):
        count = 0
        for i in range(groups[g, 0], groups[g, 1]):
            members[count] = i
            count += 1
        n, pool[n_pool] = _reduce(lo, hi, lsb, top, sign, n, heap, members, count, cap, True, groups[g, 2],
                                  groups[g, 3], acc)
        n_pool += 1
    for i in range(n_terms):
        if single[i] and lo[i] != hi[i]:
            pool[n_pool] = i
            n_pool += 1
    n, root = _reduce(lo, hi, lsb, top, sign, n, heap, pool, n_pool, cap, False, 0, 0, acc)
    for i in range(n_terms):
        if single[i] and lo[i] == hi[i]:
            if root < 0:
                root = i
            else:
                n = _combine(lo, hi, lsb, top, sign, n, root, i, cap, False, 0, 0, acc)
                root = n - 1
    return root
