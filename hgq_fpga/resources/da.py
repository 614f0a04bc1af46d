"""Distributed arithmetic: the LUT cost of the adder graph hls4ml 1.3.0 builds for a
constant matrix (the ``distributed_arithmetic`` strategy; needs the ``da`` extra).

Mirrors ``DistributedArithmeticCodegen.transform`` in
``hls4ml/backends/vivado/passes/distributed_arithmetic.py`` (hls4ml 1.3.0, da4ml 0.5.2)::

    inp = FixedVariableArray.from_kif(k, i, f, HWConfig(1, -1, -1),
                                      solver_options={'hard_dc': DA_HARD_DC or 2,
                                                      'search_all_decompose_dc': True})
    out = inp @ kernel + bias          # da4ml.trace: cmvm() -> da4ml.cmvm.api.solve(...)
    cost = comb_trace(inp, out).cost   # node.attributes['da_kernel_cost']

The cost counted is that traced graph's: one LUT per adder output bit (HWConfig
``adder_size=1``), the constant additions of the bias included. The solver itself
runs with ``adder_size=-1, carry_size=-1`` (it optimises the number of adders):
``FixedVariableArray`` fills its options with the defaults of ``solve``'s
signature, so ``cmvm()``'s ``setdefault`` of the HWConfig sizes never applies.

The solve is da4ml's algorithm, not an approximation of it: :func:`solve` takes
``da4ml.cmvm.api.solve``'s arguments and returns the same ``Pipeline``; it
mirrors ``api.solve`` / ``api.jit_solve`` in Python, runs each distinct CMVM
stage once (da4ml re-solves a stage for every decomposition depth that falls
back to it, and the winner once more), and runs the stage with
:func:`~hgq_fpga.resources.da_cmvm.cmvm_stage`, which picks the same pairs as
da4ml's ``cmvm`` faster; the first stages of the decomposition depths run on as
many threads as numba may use (``NUMBA_NUM_THREADS``), as da4ml's ``prange`` over
them does. Pipelines and traced costs are cached (the last 16); :data:`STATS`
counts solves, cache hits and stage runs. The first use compiles the stage
(numba, about half a minute), cached on disk after.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from math import ceil, log2
from typing import Any

import numpy as np

from ..ir import ops as ir
from .analysis import CircuitAnalysis
from .circuit import kernel_patches
from .recent import Recent

__all__ = ["MIRRORED_DA4ML", "STATS", "clear_cache", "da_cost", "kernel_input_kif", "solve", "traced_cost"]

#: ``solves`` (calls of :func:`solve`), ``cache_hits`` (of those, answered from the cache),
#: ``stages`` (CMVM stages run), ``stage_reuses`` (stages another decomposition depth had run
#: already), ``fallbacks`` (solves left to da4ml), ``trace_hits`` (traced costs from the cache)
STATS: Counter = Counter()
#: the da4ml series whose solver :func:`solve` and :mod:`.da_cmvm` reproduce (others: da4ml's own)
MIRRORED_DA4ML = "0.5."
_PIPELINES: Recent[Any] = Recent(16)  # pipelines and traced costs


def clear_cache() -> None:
    """Forget the cached pipelines, the RTL backend's kept adder graphs
    (:func:`~.shared.graph_candidates`) and zero :data:`STATS`."""
    from . import shared  # (imported here: shared imports this module when it solves)

    _PIPELINES.clear()
    shared._SOLVED.clear()
    STATS.clear()


def da_cost(a: CircuitAnalysis, op: ir.Linear) -> float:
    """LUTs of hls4ml's distributed-arithmetic graph for ``op``: the traced cost of the
    kernel (with the bias's constant additions) for one output position, times the number
    of positions (a convolution's pixels, a dense layer's leading axes)."""
    from ..optional import require_da4ml

    require_da4ml()
    km = op.kernel.m
    n_out = km.shape[-1]
    kernel = np.asarray(op.kernel.values, np.float64).reshape(-1, n_out)
    bias = None if op.bias is None else np.asarray(op.bias.values, np.float64).reshape(-1)
    k, i, f = kernel_input_kif(a, op)
    n_pos = int(np.prod(a.out_shape(op)[:-1], dtype=np.int64))
    return traced_cost(kernel, k, i, f, bias) * n_pos


def _element_kif(a: CircuitAnalysis, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per element of tensor ``name`` (flat): the smallest ``k, i, f`` holding its values
    (exact bounds and known zero low bits; :meth:`FixedFormat.of_mantissas`' rule), within
    the format its quantizer declared; ``(0, 0, 0)`` for the constant 0."""
    t = a.graph.tensors[name]
    xs = a.signals(name)
    kif = np.zeros((len(xs), 3), np.int64)
    for e, s in enumerate(xs):  # Python ints: any width
        lo, hi, lsb = s.lo, s.hi, (s.lsb if s.lo != s.hi else 0)
        if lsb < 0 or (lo >> lsb) << lsb != lo or (hi >> lsb) << lsb != hi:
            lsb = 0
        lo, hi = lo >> lsb, hi >> lsb
        top = max(hi, -lo - 1)
        kif[e] = (int(lo < 0), (top.bit_length() if top > 0 else 0) - (t.f - lsb), t.f - lsb)
    if t.declared is not None:
        declared = np.stack([np.broadcast_to(v, t.shape).reshape(-1) for v in (t.declared.k, t.declared.i,
                                                                                 t.declared.f)], axis=1)
        kif = np.minimum(kif, declared)
    zero = (kif.sum(axis=1) <= 0) | np.array([s.lo == s.hi == 0 for s in xs], bool)
    kif[zero] = 0
    return kif[:, 0], kif[:, 1], kif[:, 2]


def kernel_input_kif(a: CircuitAnalysis, op: ir.Linear) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """hls4ml's ``get_kernel_inp_kif``: per kernel row, the largest ``k``, ``i`` and ``f``
    over the positions that read it (padding counts as ``(0, 0, 0)``, as its ``pad_arrs``).

    Each element's format is the one hls4ml's ``_get_input_kif`` takes: the quantizer's
    per-element mask when a quantizer writes the tensor (as its BitExact pass shrinks it to
    the values that reach it, here the IR's exact bounds), otherwise the tensor's one type,
    the widest element's ``k``, ``i`` and ``f``.
    """
    name = op.inputs[0]
    k, i, f = _element_kif(a, name)
    if not isinstance(a.graph.producer(name), ir.Quantize):
        k, i, f = (np.full(v.shape, v.max() if v.size else 0) for v in (k, i, f))
    patches = kernel_patches(a.graph, op)
    pad = np.where(patches < 0, len(k), patches)
    return tuple(np.append(v, 0)[pad].max(axis=0) for v in (k, i, f))  # type: ignore[return-value]


def traced_cost(kernel: np.ndarray, k: np.ndarray, i: np.ndarray, f: np.ndarray,
                bias: np.ndarray | None = None) -> float:
    """``comb_trace(inp, inp @ kernel + bias).cost`` for inputs of formats ``k, i, f``, as
    hls4ml's pass computes ``da_kernel_cost`` (LUTs: one per adder output bit, plus the
    bias's constant additions), with :func:`solve` for the solver."""
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace

    hard_dc = int(os.environ.get("DA_HARD_DC", 2))
    key = ("trace", hard_dc, kernel.shape, np.asarray(kernel, np.float64).tobytes(),
           *(np.asarray(v, np.int64).tobytes() for v in (k, i, f)), None if bias is None else bias.tobytes())
    kept = _PIPELINES.get(key)
    if kept is not None:
        STATS["trace_hits"] += 1
        return kept
    options = {"hard_dc": hard_dc, "search_all_decompose_dc": True}
    inp = FixedVariableArray.from_kif(k, i, f, HWConfig(1, -1, -1), solver_options=options)
    out = _matmul(inp, np.asarray(kernel))
    if bias is not None:
        out = out + bias
    return _PIPELINES.put(key, float(comb_trace(inp, out).cost))


def _matmul(inp: Any, kernel: np.ndarray) -> Any:
    """``inp @ kernel`` for a 1-D ``FixedVariableArray``: da4ml's ``matmul`` and ``cmvm()``
    (``da4ml/trace/fixed_variable_array.py``) with :func:`solve` in place of da4ml's."""
    from da4ml.cmvm.types import QInterval
    from da4ml.trace import FixedVariableArray
    from da4ml.trace.fixed_variable_array import to_raw_arr

    if inp.collapsed:  # every input a constant: no solve
        return inp @ kernel
    xs = to_raw_arr(inp)
    options = dict(inp.solver_options)
    hw = xs.ravel()[0].hwconf
    options.setdefault("adder_size", hw.adder_size)  # never applies: the signature's -1 is there
    options.setdefault("carry_size", hw.carry_size)
    options.pop("offload_fn", None)
    qintervals = [QInterval(float(v.low), float(v.high), float(v.step)) for v in xs]
    latencies = [float(v.latency) for v in xs]
    pipeline = solve(np.ascontiguousarray(kernel.astype(np.float32)), qintervals=qintervals,
                     latencies=latencies, **options)
    return FixedVariableArray(np.asarray(pipeline(xs)).reshape(kernel.shape[1:]), inp.solver_options)


def solve(kernel: np.ndarray, method0: str = "wmc", method1: str = "auto", hard_dc: int = -1,
          decompose_dc: int = -2, qintervals: list | None = None, latencies: list | None = None,
          adder_size: int = -1, carry_size: int = -1, search_all_decompose_dc: bool = True) -> Any:
    """``da4ml.cmvm.api.solve`` (same arguments, same ``Pipeline``), cached, each stage once.

    Methods other than ``'wmc'``/``'wmc-dc'``, NaN scores and a da4ml other than the 0.5
    series mirrored here go to da4ml's own solver."""
    import da4ml
    from da4ml.cmvm.types import QInterval

    n = kernel.shape[0]
    qints = [QInterval(*map(float, q)) for q in qintervals] if qintervals is not None else \
        [QInterval(-128.0, 127.0, 1.0)] * n
    lats = [float(v) for v in latencies] if latencies is not None else [0.0] * n
    opts = (method0, method1, int(hard_dc), int(decompose_dc), int(adder_size), int(carry_size),
            bool(search_all_decompose_dc))
    key = (kernel.shape, str(kernel.dtype), kernel.tobytes(), tuple(qints), tuple(lats), opts)
    STATS["solves"] += 1
    kept = _PIPELINES.get(key)
    if kept is not None:
        STATS["cache_hits"] += 1
        return kept
    try:
        if not str(getattr(da4ml, "__version__", "")).startswith(MIRRORED_DA4ML):
            raise ValueError(f"da4ml {getattr(da4ml, '__version__', '?')}: not the algorithm mirrored here")
        pipeline = _search(kernel, qints, lats, *opts)
    except ValueError:  # a method, a score or a da4ml version cmvm_stage does not mirror
        from da4ml.cmvm.api import solve as da4ml_solve
        from numba.typed import List

        STATS["fallbacks"] += 1
        pipeline = da4ml_solve(kernel, method0, method1, hard_dc, decompose_dc, List(qints), List(lats),
                               adder_size, carry_size, search_all_decompose_dc)
    return _PIPELINES.put(key, pipeline)


def _search(kernel: np.ndarray, qints: list, lats: list, method0: str, method1: str, hard_dc: int,
            decompose_dc: int, adder_size: int, carry_size: int, search_all: bool) -> Any:
    """The body of ``da4ml.cmvm.api.solve``: the cheapest decomposition depth's pipeline
    (the first of the cheapest; da4ml solves it a second time, which gives the same)."""
    stages: dict = {}
    run = (kernel, method0, method1, qints, lats, adder_size, carry_size, stages)
    if not search_all:
        return _jit_solve(hard_dc, decompose_dc, *run)
    if hard_dc < 0:
        hard_dc = int(1e9)
    max_dc = min(hard_dc, ceil(log2(kernel.shape[0])))
    _first_stages(kernel, qints, lats, method0, hard_dc, max_dc, adder_size, carry_size, stages)
    best, best_cost = None, 0.0
    for dc in range(-1, max_dc + 1):
        csol = _jit_solve(hard_dc, dc, *run)
        cost = sum([sum([op.cost for op in sol.ops]) for sol in csol.solutions])
        if best is None or cost < best_cost:  # np.argmin: the first minimum
            best, best_cost = csol, cost
    return best


def _first_stages(kernel: np.ndarray, qints: list, lats: list, method0: str, hard_dc: int, max_dc: int,
                  adder_size: int, carry_size: int, stages: dict) -> None:
    """Run the first stage of every decomposition depth the search tries at once, on
    ``numba.get_num_threads()`` threads (da4ml's ``prange`` over the depths uses as many);
    :func:`_jit_solve` then finds them done. Nothing with one thread or a small kernel."""
    import numba
    from da4ml.cmvm.util import kernel_decompose

    threads = numba.get_num_threads()
    if threads < 2 or kernel.size < 4096:
        return
    if hard_dc == 0 and not method0.endswith("dc"):  # jit_solve's methods for each depth
        method0 = method0 + "-dc"
    tasks = {}
    for dc in range(-1, max_dc + 1):
        mat0, _ = kernel_decompose(kernel, dc=dc)
        method = "wmc-dc" if dc < 0 and method0 != "dummy" else method0
        if method in ("wmc", "wmc-dc"):
            tasks.setdefault(_stage_key(mat0, method, qints, lats, adder_size, carry_size), (mat0, method))
    from .da_cmvm import cmvm_stage

    with ThreadPoolExecutor(min(threads, len(tasks))) as pool:
        done = list(pool.map(lambda task: cmvm_stage(*task, qints, lats, adder_size, carry_size), tasks.values()))
    stages.update(zip(tasks, done))
    STATS["stages"] += len(done)


def _jit_solve(hard_dc: int, decompose_dc: int, kernel: np.ndarray, method0: str, method1: str, qints: list,
               lats: list, adder_size: int, carry_size: int, stages: dict) -> Any:
    """``da4ml.cmvm.api.jit_solve``: decompose the kernel into two stages, a shallower
    decomposition while a stage exceeds the latency the hard depth constraint allows."""
    from da4ml.cmvm.api import minimal_latency
    from da4ml.cmvm.types import Pipeline, QInterval
    from da4ml.cmvm.util import kernel_decompose
    from numba.typed import List

    if hard_dc < 0:
        hard_dc = int(1e9)
    if method1 == "auto":
        method1 = method0 if hard_dc >= 6 or method0.endswith("dc") else method0 + "-dc"
    if hard_dc == 0 and not method0.endswith("dc"):
        method0 = method0 + "-dc"
    allowed = hard_dc + minimal_latency(kernel, List(qints), List(lats), carry_size=carry_size, adder_size=adder_size)
    depth = ceil(log2(kernel.shape[0]))
    dc = min(hard_dc, depth) if decompose_dc == -2 else min(hard_dc, decompose_dc, depth)
    while True:
        if dc < 0 and hard_dc >= 0 and method0 != "dummy":
            method0, method1 = "wmc-dc", "wmc-dc"
        mat0, mat1 = kernel_decompose(kernel, dc=dc)
        sol0 = _stage(mat0, method0, qints, lats, adder_size, carry_size, stages)
        lat0 = [sol0.ops[j].latency if j >= 0 else 0.0 for j in sol0.out_idxs]
        qint0 = [sol0.ops[j].qint if j >= 0 else QInterval(0.0, 0.0, np.inf) for j in sol0.out_idxs]
        may_retry = not method0 == method1 == "wmc-dc" or dc >= 0
        if max(lat0) > allowed and may_retry:
            dc -= 1
            continue
        sol1 = _stage(mat1, method1, qint0, lat0, adder_size, carry_size, stages)
        lat1 = [sol1.ops[j].latency if j >= 0 else 0.0 for j in sol1.out_idxs]
        if max(lat1) > allowed and may_retry:
            dc -= 1
            continue
        return Pipeline((sol0, sol1))


def _stage(mat: np.ndarray, method: str, qints: list, lats: list, adder_size: int, carry_size: int,
           stages: dict) -> Any:
    """``da4ml.cmvm.core._solve`` (the greedy CMVM, then ``to_solution``), each distinct
    stage of one :func:`solve` run once."""
    from .da_cmvm import cmvm_stage

    key = _stage_key(mat, method, qints, lats, adder_size, carry_size)
    if key in stages:
        STATS["stage_reuses"] += 1
        return stages[key]
    STATS["stages"] += 1
    stages[key] = cmvm_stage(mat, method, qints, lats, adder_size, carry_size)
    return stages[key]


def _stage_key(mat: np.ndarray, method: str, qints: list, lats: list, adder_size: int, carry_size: int) -> tuple:
    return (mat.shape, mat.tobytes(), method, tuple(map(tuple, qints)), tuple(lats), adder_size, carry_size)
