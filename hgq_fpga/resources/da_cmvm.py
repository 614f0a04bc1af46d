"""da4ml 0.5.2's greedy CMVM stage, re-implemented to pick the very same pairs, faster.

:func:`cmvm_stage` returns what ``da4ml.cmvm.core._solve`` returns (``cmvm`` then
``to_solution``) for the methods ``'wmc'`` and ``'wmc-dc'``: the same
``CombLogic``, op for op. da4ml's loop rescans every counted two-digit pair
(``freq_stat``, millions for a 784-input kernel) three times per extracted pair;
here each pair keeps the score it was counted with (a pair's count changes only
when one of its rows changes, and then da4ml deletes and recounts it), a heap
orders them, and each row lists the pairs that touch it. Ties break as
``np.argmax`` over da4ml's insertion-ordered dict does: by insertion order,
which is the order da4ml's loops first meet each pair (kept as a sequence
number). The dict, index and update functions mirrored are in
``da4ml/cmvm/core/{__init__,indexers,state_opr}.py``; the tests compare the
results with da4ml's on random kernels.
"""

from __future__ import annotations

import numpy as np
from da4ml.cmvm.core import to_solution
from da4ml.cmvm.core.indexers import overlap_and_accum
from da4ml.cmvm.core.state_opr import cost_add, qint_add
from da4ml.cmvm.types import DAState, Op, Pair, QInterval
from da4ml.cmvm.util import csd_decompose
from numba import njit

__all__ = ["cmvm_stage"]


@njit(cache=True)
def _grown(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with room for index ``n`` (doubled when full)."""
    if n < a.shape[0]:
        return a
    b = np.zeros(max(2 * a.shape[0], n + 16), a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True)
def _before(hs: np.ndarray, hq: np.ndarray, a: int, b: int) -> bool:
    """Heap order: higher score first, then the earlier inserted pair (da4ml's argmax)."""
    return hs[a] < hs[b] or (hs[a] == hs[b] and hq[a] < hq[b])


@njit(cache=True)
def _sift_down(hs: np.ndarray, hq: np.ndarray, n: int, pos: int) -> None:
    while True:
        c = 2 * pos + 1
        if c >= n:
            return
        if c + 1 < n and _before(hs, hq, c + 1, c):
            c += 1
        if not _before(hs, hq, c, pos):
            return
        hs[c], hs[pos] = hs[pos], hs[c]
        hq[c], hq[pos] = hq[pos], hq[c]
        pos = c


@njit(cache=True)
def _sift_up(hs: np.ndarray, hq: np.ndarray, pos: int) -> None:
    while pos > 0:
        p = (pos - 1) // 2
        if not _before(hs, hq, pos, p):
            return
        hs[p], hs[pos] = hs[pos], hs[p]
        hq[p], hq[pos] = hq[pos], hq[p]
        pos = p


@njit(cache=True)
def _pop(hs: np.ndarray, hq: np.ndarray, n: int) -> int:
    n -= 1
    hs[0], hq[0] = hs[n], hq[n]
    _sift_down(hs, hq, n, 0)
    return n


@njit(cache=True)
def _score(ops, a: int, b: int, count: int, dc: bool) -> float:
    """da4ml's ``idx_wmc`` / ``idx_wmc_dc`` score of a pair, rounded to float32 as there."""
    n_overlap, _ = overlap_and_accum(ops[a].qint, ops[b].qint)
    if dc:
        s = np.float32(count * n_overlap - 256 * abs(ops[a].latency - ops[b].latency))
    else:
        s = np.float32(count * n_overlap)
    if s != s:
        raise ValueError("cmvm_stage: a NaN score (da4ml's argmax would take it); use da4ml's solver")
    return float(s)


