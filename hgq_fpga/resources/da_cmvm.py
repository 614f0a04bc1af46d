"""da4ml 0.5.2's greedy CMVM stage, re-implemented to pick the very same pairs, faster.

:func:`cmvm_stage` returns what ``da4ml.cmvm.core._solve`` returns (``cmvm`` then
``to_solution``) for the methods ``'wmc'`` and ``'wmc-dc'``: the same
``CombLogic``, op for op. da4ml's loop (``da4ml/cmvm/core/__init__.py``,
``indexers.py``, ``state_opr.py``) keeps a dict of every two-digit pair met at
least twice (millions for a 784-input kernel) and scans all of it several times
per extracted pair. Here:

* a pair keeps the score it was counted with: its count changes only when one of
  its rows changes, and then da4ml deletes it and counts it again; so a heap
  orders the pairs, and a pair counted before its row last changed is dead;
* ties break as ``np.argmax`` over da4ml's insertion-ordered dict does, by
  insertion order, which is the order da4ml's loops first meet each pair (a
  sequence number, part of the heap key);
* the digits of a row in a column are bit masks, and each column lists the rows
  with digits in it, so the recount of a changed row visits only digit pairs.

The tests compare the results with da4ml's on random kernels.
"""

from __future__ import annotations

import numba
import numpy as np
from da4ml.cmvm.core import to_solution
from da4ml.cmvm.core.state_opr import cost_add, qint_add
from da4ml.cmvm.types import DAState, Op, Pair, QInterval
from da4ml.cmvm.util import csd_decompose
from numba import njit

__all__ = ["cmvm_stage"]

_DEBRUIJN = 0x03F79D71B4CB0A89
_CTZ = np.zeros(64, np.int64)  # bit index of a power of two: _CTZ[(x * _DEBRUIJN mod 2**64) >> 58]
for _j in range(64):
    _CTZ[(((1 << _j) * _DEBRUIJN) % 2**64) >> 58] = _j
_DEBRUIJN_SIGNED = _DEBRUIJN - 2**64 if _DEBRUIJN >= 2**63 else _DEBRUIJN
#: limits of the packed heap entries: rows < 2**25, sequence numbers < 2**31, digits < 63
_MAX_ROWS, _MAX_SEQ, _MAX_BITS = 1 << 25, 1 << 31, 62


@njit(cache=True, inline="always")
def _ctz(low: int) -> int:
    """Index of the single set bit of ``low``."""
    return _CTZ[((low * _DEBRUIJN_SIGNED) >> 58) & 63]


if numba.config.DISABLE_JIT:  # interpreted: numpy warns of the wrapping multiply that compiled code does silently
    def _ctz(low: int) -> int:
        """Index of the single set bit of ``low``: the same product, in Python's exact integers (bits
        58-63 of the exact product are those of the product wrapped to 64 bits). Not under
        ``np.errstate``, which cost 4 us a call: 27 s of a 73 s budget test of an RTL project."""
        return int(_CTZ[((int(low) * _DEBRUIJN_SIGNED) >> 58) & 63])


@njit(cache=True)
def _grown(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with room for index ``n`` along its first axis (doubled when full)."""
    if n < a.shape[0]:
        return a
    b = np.zeros((max(2 * a.shape[0], n + 16),) + a.shape[1:], a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True)
def _heap_key(score: float, seq: int) -> int:
    """An int64 that orders (higher score, then lower ``seq``) first, as da4ml's
    ``np.argmax`` over its float32 scores in insertion order does."""
    if score != score:
        raise ValueError("cmvm_stage: a NaN score (da4ml's argmax would take it); use da4ml's solver")
    if seq >= _MAX_SEQ:
        raise ValueError("cmvm_stage: too many pairs for the packed heap; use da4ml's solver")
    buf = np.empty(1, np.float32)
    buf[0] = score if score != 0 else 0.0  # -0.0 ties with 0.0, as in np.argmax
    u = np.int64(buf.view(np.uint32)[0])
    up = (~u) & 0xFFFFFFFF if u & 0x80000000 else u | 0x80000000  # ascending with the score
    return ((0xFFFFFFFF - up) << 31) | seq


@njit(cache=True)
def _terms(qint: QInterval, latency: float) -> tuple[float, float, float, float]:
    """A row's parts of da4ml's ``overlap_and_accum`` (``ceil(log2(max(|min|, |max + step|)))``,
    ``-log2(step)``, ``min < 0``) and its latency; the score takes the smaller parts of two rows,
    which is what da4ml's ``min``/``max`` inside the monotone ``log2`` and ``ceil`` give."""
    top = max(abs(qint.min), abs(qint.max + qint.step))  # inf for a constant-0 output of a first stage
    return np.ceil(np.log2(top)), -np.log2(qint.step), 1.0 if qint.min < 0 else 0.0, latency


@njit(cache=True, inline="always")
def _score(terms, a: int, b: int, count: int, dc: bool) -> float:
    """da4ml's ``idx_wmc`` / ``idx_wmc_dc`` score of a pair, rounded to float32 as there."""
    k = int(terms[a, 2] != 0 or terms[b, 2] != 0)
    n_overlap = (k + min(terms[a, 0], terms[b, 0])) + min(terms[a, 1], terms[b, 1])
    if dc:
        return float(np.float32(count * n_overlap - 256 * abs(terms[a, 3] - terms[b, 3])))
    return float(np.float32(count * n_overlap))


@njit(cache=True)
def _sift_down(h, n: int, pos: int) -> None:
    """Restore the heap (4-ary; rows ``(key, pair)``, smallest key on top) below ``pos``."""
    while True:
        first = 4 * pos + 1
        if first >= n:
            return
        c = first
        for d in range(first + 1, min(first + 4, n)):
            if h[d, 0] < h[c, 0]:
                c = d
        if h[c, 0] >= h[pos, 0]:
            return
        for q in range(2):
            h[c, q], h[pos, q] = h[pos, q], h[c, q]
        pos = c


@njit(cache=True)
def _heapify(h, n: int) -> None:
    for t in range((n - 2) // 4, -1, -1):
        _sift_down(h, n, t)


@njit(cache=True)
def _push(h, n: int, key: int, pair: int) -> int:
    h[n, 0], h[n, 1] = key, pair
    pos = n
    while pos > 0:
        p = (pos - 1) // 4
        if h[p, 0] <= h[pos, 0]:
            break
        for q in range(2):
            h[p, q], h[pos, q] = h[pos, q], h[p, q]
        pos = p
    return n + 1


@njit(cache=True, inline="always")
def _alive(h, t: int, changed) -> bool:
    """Whether heap row ``t``'s pair is current: counted (its sequence number) after the last
    change of either of its rows (``changed``: the sequence number next due at that change)."""
    seq, pair = h[t, 0] & (_MAX_SEQ - 1), h[t, 1]
    return seq >= changed[pair >> 33] and seq >= changed[(pair >> 8) & (_MAX_ROWS - 1)]


@njit(cache=True)
def _purged(h, n: int, changed) -> int:
    """The heap without its dead pairs; returns the new size."""
    m = 0
    for t in range(n):
        if _alive(h, t, changed):
            h[m] = h[t]
            m += 1
    _heapify(h, m)
    return m


@njit(cache=True, inline="always")
def _count_pairs(mr: int, nr: int, ms: int, ns: int, r: int, s: int, slot, mi: int, stride: int, loc, rank,
                 nloc: int, n_bits: int, rank0: int = -1, n_in: int = 0, offset: int = 0) -> int:
    """Count the digit pairs of rows ``r``, ``s`` in a column (digit masks ``mr``, ``ms``; masks of
    the negative ones ``nr``, ``ns``), in da4ml's loop order (digits of the lower row, then of the
    other, ascending), into ``slot[((mi, sub, shift) plane) * stride + s + offset]``. A pair met
    first is appended to ``loc`` (and, when ``rank0 >= 0``, its place in ``create_state``'s loops
    to ``rank``); they have room for ``n_bits**2`` more."""
    a, b, ma, na, mb, nb = (r, s, mr, nr, ms, ns) if r <= s else (s, r, ms, ns, mr, nr)
    sh_n = 2 * n_bits - 1
    x = ma
    while x:
        low0 = x & -x
        x ^= low0
        j0 = _ctz(low0)
        s0 = (na >> j0) & 1
        y = mb
        while y:
            low1 = y & -y
            y ^= low1
            j1 = _ctz(low1)
            if a == b and j1 >= j0:
                break
            idx = ((mi * 2 + (s0 ^ ((nb >> j1) & 1))) * sh_n + j1 - j0 + n_bits - 1) * stride + s + offset
            if slot[idx] == 0:
                loc[nloc] = idx
                if rank0 >= 0:
                    rank[nloc] = ((rank0 * n_bits + j0) * n_in + s) * n_bits + j1
                nloc += 1
            slot[idx] += 1
    return nloc


@njit(cache=True, inline="always")
def _pack(a: int, b: int, sub: int, shift: int) -> int:
    return (a << 33) | (b << 8) | (sub << 7) | (shift + 64)


@njit(cache=True, inline="always")
def _unslot(idx: int, stride: int, n_bits: int) -> tuple[int, int, int, int]:
    """``(mi, row, sub, shift)`` of a ``slot`` index."""
    plane, s = divmod(idx, stride)
    t, sh = divmod(plane, 2 * n_bits - 1)
    mi, sub = divmod(t, 2)
    return mi, s, sub, sh - (n_bits - 1)


@njit(cache=True)
def _initial_pairs(pm, nm, n_in: int, n_bits: int):
    """``create_state``'s count: the pairs met at least twice (packed) and their counts, in
    the order da4ml's loops (column, row, digit, row >= it, digit) first meet them. Counted
    here row pair by row pair (sequential in memory), each pair's first place kept, then sorted."""
    n_out, sh_n = pm.shape[1], 2 * n_bits - 1
    slot, loc, rank = np.zeros(2 * sh_n, np.int32), np.zeros(2 * sh_n, np.int64), np.zeros(2 * sh_n, np.int64)
    first, pairs, counts = np.zeros(1024, np.int64), np.zeros(1024, np.int64), np.zeros(1024, np.int32)
    cols = np.zeros(n_out, np.int64)
    n_keep = 0
    for i0 in range(n_in):
        n_cols = 0
        for c in range(n_out):
            if pm[i0, c] != 0:
                cols[n_cols] = c
                n_cols += 1
        room = n_keep + (n_in - i0) * 2 * sh_n  # at most this many after row i0
        if room > first.shape[0]:
            first, pairs, counts = _grown(first, room), _grown(pairs, room), _grown(counts, room)
        for s in range(i0, n_in):
            nloc = 0
            for q in range(n_cols):
                c = cols[q]
                if pm[s, c] != 0:
                    nloc = _count_pairs(pm[i0, c], nm[i0, c], pm[s, c], nm[s, c], i0, s, slot, 0, 1, loc, rank, nloc,
                                        n_bits, c * n_in + i0, n_in, -s)
            for q in range(nloc):
                count = slot[loc[q]]
                slot[loc[q]] = 0
                if count >= 2:
                    sub, sh = divmod(loc[q], sh_n)
                    first[n_keep], pairs[n_keep], counts[n_keep] = rank[q], _pack(i0, s, sub, sh - (n_bits - 1)), count
                    n_keep += 1
    order = _radix_argsort(first[:n_keep])
    return pairs[order], counts[order]


@njit(cache=True)
def _radix_argsort(keys):
    """``np.argsort`` of distinct non-negative int64 keys, in linear time (11 bits a pass)."""
    n = keys.shape[0]
    k, o = keys.copy(), np.arange(n)
    k2, o2 = np.empty(n, np.int64), np.empty(n, np.int64)
    top = k.max() if n else 0
    shift = 0
    while (top >> shift) > 0:
        start = np.zeros(2049, np.int64)
        for t in range(n):
            start[((k[t] >> shift) & 2047) + 1] += 1
        start = np.cumsum(start)
        for t in range(n):
            d = (k[t] >> shift) & 2047
            k2[start[d]], o2[start[d]] = k[t], o[t]
            start[d] += 1
        k, k2, o, o2 = k2, k, o2, o
        shift += 11
    return o


@njit(cache=True)
def _compact(col, col_len, c: int) -> None:
    """Drop from column ``c``'s list the rows left without digits there (order kept)."""
    m = 0
    for t in range(col_len[c]):
        if col[c, t, 1] != 0:
            col[c, m] = col[c, t]
            m += 1
    col_len[c] = m


@njit(cache=True)
def _recount(pm, nm, col, col_len, mod, slot, rows_cap: int, loc, n_bits: int):
    """``update_stats``' recount of the pairs of the changed rows ``mod`` (new row, ``a``,
    ``b``), in its loop order: the pairs met at least twice (packed) and their counts."""
    n_out, room = pm.shape[1], n_bits * n_bits
    nloc = 0
    for c in range(n_out):
        if pm[mod[0], c] == 0 and pm[mod[1], c] == 0 and pm[mod[-1], c] == 0:
            continue
        _compact(col, col_len, c)
        for mi in range(len(mod)):
            r = mod[mi]
            mr, nr = pm[r, c], nm[r, c]
            if mr == 0:
                continue
            for t in range(col_len[c]):
                s = col[c, t, 0]
                if r > s and (s == mod[0] or s == mod[1] or s == mod[-1]):
                    continue
                if nloc + room > loc.shape[0]:
                    loc = _grown(loc, 2 * loc.shape[0])
                nloc = _count_pairs(mr, nr, col[c, t, 1], col[c, t, 2], r, s, slot, mi, rows_cap, loc, loc, nloc,
                                    n_bits, -1, 0)
    pairs, counts = np.zeros(nloc, np.int64), np.zeros(nloc, np.int32)
    n_keep = 0
    for q in range(nloc):
        count = slot[loc[q]]
        slot[loc[q]] = 0
        if count >= 2:
            mi, s, sub, shift = _unslot(loc[q], rows_cap, n_bits)
            pairs[n_keep], counts[n_keep] = _pack(min(mod[mi], s), max(mod[mi], s), sub, shift), count
            n_keep += 1
    return loc, pairs[:n_keep], counts[:n_keep]


@njit(cache=True)
def _extract(expr, pm, nm, col, col_len, a: int, b: int, sub: int, shift: int):
    """da4ml's ``update_expr`` (``gather_matching_idxs`` order, in place): the new row of the
    digits of ``a`` matched by ``b`` shifted; the matched digits of ``a`` and ``b`` cleared."""
    n_out, n_bits = expr[0].shape
    sign = -1 if sub else 1
    lo, hi, s, flip = (b, a, -shift, True) if shift < 0 else (a, b, shift, False)
    new = np.zeros((n_out, n_bits), np.int8)
    e_lo, e_hi, e_a, e_b = expr[lo], expr[hi], expr[a], expr[b]
    for j0 in range(n_bits - s):
        for i_out in range(n_out):
            if sign * e_hi[i_out, j0 + s] * e_lo[i_out, j0] != 1:
                continue
            ja, jb = (j0 + s, j0) if flip else (j0, j0 + s)
            new[i_out, ja] = e_a[i_out, ja]
            e_a[i_out, ja] = 0
            e_b[i_out, jb] = 0
            for row, j in ((a, ja), (b, jb)):
                pm[row, i_out] &= ~(1 << j)
                nm[row, i_out] &= ~(1 << j)
                t = np.searchsorted(col[i_out, : col_len[i_out], 0], row)
                col[i_out, t, 1], col[i_out, t, 2] = pm[row, i_out], nm[row, i_out]
    return new


@njit(cache=True)
def _pair_op(ops, a: int, b: int, sub: int, shift: int, adder_size: int, carry_size: int):
    """da4ml's ``pair_to_op``: the adder ``ops[a] +/- ops[b] * 2**shift``."""
    q0, q1 = ops[a].qint, ops[b].qint
    dlat, cost = cost_add(q0, q1, shift, sub != 0, adder_size, carry_size)
    lat = max(ops[a].latency, ops[b].latency) + dlat
    return Op(a, b, sub, shift, qint_add(q0, q1, shift, False, sub != 0), lat, cost)


@njit(cache=True)
def _new_row(pm, nm, changed, col, col_len, row, r: int):
    """Register row ``r`` (digits ``row``): its digit masks, its columns, not changed yet."""
    pm, nm, changed = _grown(pm, r), _grown(nm, r), _grown(changed, r)
    changed[r] = 0
    for c in range(row.shape[0]):
        pm[r, c] = nm[r, c] = 0
        for j in range(row.shape[1]):
            if row[c, j] != 0:
                pm[r, c] |= 1 << j
            if row[c, j] < 0:
                nm[r, c] |= 1 << j
        if pm[r, c] != 0:
            if col_len[c] == col.shape[1]:
                wider = np.zeros((col.shape[0], 2 * col.shape[1] + 16, 3), np.int64)
                wider[:, : col.shape[1]] = col
                col = wider
            col[c, col_len[c]] = (r, pm[r, c], nm[r, c])
            col_len[c] += 1
    return pm, nm, changed, col


@njit(cache=True)
def _setup(kernel, qlo, qhi, qstep, lats):
    """da4ml's ``create_state`` without the pair count: CSD digits, input ops, masks, columns."""
    csd, shift0, shift1 = csd_decompose(kernel)
    n_in, n_out, n_bits = csd.shape
    qints = [QInterval(qlo[i], qhi[i], qstep[i]) for i in range(n_in)]
    for i in range(n_in):
        if qints[i].min == 0 and qints[i].max == 0:
            csd[i] = 0
    expr = [csd[i].copy() for i in range(n_in)]
    ops = [Op(i, -1, -1, 0, qints[i], lats[i], 0.0) for i in range(n_in)]
    pm, nm, changed = np.zeros((n_in + 16, n_out), np.int64), np.zeros((n_in + 16, n_out), np.int64), np.zeros(0, np.int64)
    col, col_len = np.zeros((n_out, n_in + 16, 3), np.int64), np.zeros(n_out, np.int64)
    for i in range(n_in):
        pm, nm, changed, col = _new_row(pm, nm, changed, col, col_len, expr[i], i)
    return shift0, shift1, expr, ops, pm, nm, changed, col, col_len


@njit(cache=True)
def _push_all(h, n: int, seq: int, pairs, counts, terms, changed, dc: bool):
    """Push the pairs with their scores and the next sequence numbers (in order); when the
    heap is full, first drop its dead pairs, and grow it only if that frees too little."""
    if n + pairs.shape[0] > h.shape[0]:
        n = _purged(h, n, changed)
        if n + pairs.shape[0] > 3 * h.shape[0] // 4:
            bigger = np.zeros((3 * (n + pairs.shape[0]) // 2 + 16, 2), np.int64)
            bigger[:n] = h[:n]
            h = bigger
    heapify = n == 0  # the first pairs: all in, then one heapify
    for q in range(pairs.shape[0]):
        p = pairs[q]
        a, b = p >> 33, (p >> 8) & (_MAX_ROWS - 1)
        key = _heap_key(_score(terms, a, b, counts[q], dc), seq + q)
        if heapify:
            h[n, 0], h[n, 1] = key, p
            n += 1
        else:
            n = _push(h, n, key, p)
    if heapify:
        _heapify(h, n)
    return h, n, seq + pairs.shape[0]


@njit(cache=True)
def _greedy(expr, ops, pm, nm, changed, col, col_len, dc: bool, adder_size: int, carry_size: int) -> None:
    """da4ml's ``cmvm`` loop: extract the best pair until none is left (or its score is < 0)."""
    n_bits = expr[0].shape[1]
    pairs, counts = _initial_pairs(pm, nm, len(expr), n_bits)
    terms = np.zeros((len(expr) + 64, 4))
    for r in range(len(expr)):
        terms[r] = _terms(ops[r].qint, ops[r].latency)
    h, n, seq = _push_all(np.zeros((max(pairs.shape[0], 16), 2), np.int64), 0, 0, pairs, counts, terms, changed, dc)
    rows_cap = len(expr) + 64
    slot, loc = np.zeros(3 * rows_cap * 2 * (2 * n_bits - 1), np.int32), np.zeros(4096, np.int64)
    dead = 0
    while True:
        while n > 0 and not _alive(h, 0, changed):
            dead += 1
            if dead > n // 8 + 1024:  # many dead on top: drop them all at once
                n, dead = _purged(h, n, changed), 0
                continue
            n -= 1
            h[0] = h[n]
            _sift_down(h, n, 0)
        if n == 0 or (h[0, 0] >> 31) > 0x7FFFFFFF:  # no pair left, or the best score < 0 (da4ml's -1)
            return
        p = h[0, 1]
        a, b, sub, shift = p >> 33, (p >> 8) & (_MAX_ROWS - 1), (p >> 7) & 1, (p & 127) - 64
        ops.append(_pair_op(ops, a, b, sub, shift, adder_size, carry_size))
        terms = _grown(terms, len(ops) - 1)
        terms[len(ops) - 1] = _terms(ops[-1].qint, ops[-1].latency)
        expr.append(_extract(expr, pm, nm, col, col_len, a, b, sub, shift))
        r = len(expr) - 1
        if r >= _MAX_ROWS:
            raise ValueError("cmvm_stage: too many rows for the packed heap; use da4ml's solver")
        pm, nm, changed, col = _new_row(pm, nm, changed, col, col_len, expr[r], r)
        changed[a] = changed[b] = seq  # their pairs so far are dead; the recount follows
        if r >= rows_cap:
            rows_cap *= 2
            slot = np.zeros(3 * rows_cap * 2 * (2 * n_bits - 1), np.int32)
        mod = np.array([r, a, b]) if b != a else np.array([r, a])
        loc, pairs, counts = _recount(pm, nm, col, col_len, mod, slot, rows_cap, loc, n_bits)
        h, n, seq = _push_all(h, n, seq, pairs, counts, terms, changed, dc)


@njit(cache=True, nogil=True)
def _cmvm(kernel, qlo, qhi, qstep, lats, dc: bool, adder_size: int, carry_size: int):
    shift0, shift1, expr, ops, pm, nm, changed, col, col_len = _setup(kernel, qlo, qhi, qstep, lats)
    n_in, (n_out, n_bits) = len(expr), expr[0].shape
    if n_bits > _MAX_BITS or float(n_out) * n_in * n_in * n_bits * n_bits > 4e18:
        raise ValueError("cmvm_stage: more CSD digits or rows than the packed counts hold; use da4ml's solver")
    _greedy(expr, ops, pm, nm, changed, col, col_len, dc, adder_size, carry_size)
    key = Pair(-1, -1, False, 0)
    stat = {key: np.int64(0)}  # the (empty) pair dict, typed as da4ml's
    del stat[key]
    state = DAState(shifts=(shift0, shift1), expr=expr, ops=ops, freq_stat=stat, kernel=kernel)
    return to_solution(state, adder_size, carry_size)


def cmvm_stage(kernel: np.ndarray, method: str, qintervals: list, latencies: list, adder_size: int,
               carry_size: int):
    """What ``da4ml.cmvm.core._solve(kernel, method, qintervals, latencies, adder_size,
    carry_size)`` returns (a ``CombLogic``), for ``method`` ``'wmc'`` or ``'wmc-dc'``.

    Raises:
        ValueError: another method, a score da4ml would compute as NaN, or a kernel beyond
            the packed limits (over 62 CSD digits, 2**25 rows, 2**31 pairs): use da4ml's solver.
    """
    if method not in ("wmc", "wmc-dc"):
        raise ValueError(f"cmvm_stage: method {method!r} is not mirrored; use da4ml's solver")
    q = np.asarray([tuple(v) for v in qintervals], np.float64).reshape(-1, 3)
    k = np.ascontiguousarray(kernel, np.float64)  # create_state's cast
    return _cmvm(k, q[:, 0].copy(), q[:, 1].copy(), q[:, 2].copy(), np.asarray(latencies, np.float64).copy(),
                 method == "wmc-dc", int(adder_size), int(carry_size))
