"""The shared adder graphs of the RTL backend (hgq_fpga.resources.shared): exact, tight, and smaller
than one tree per output."""

from __future__ import annotations

import numpy as np
import pytest

from hgq_fpga.resources.rules import Signal, adder_tree, csd_digits
from hgq_fpga.resources.shared import scaled, shared_graph


def _run(g, x):
    """The graph on integer inputs, node by node, as the Verilog computes it; every node checked
    against its range and zero low bits."""
    v = []
    for i, sh in zip(g.inputs, g.input_shifts):
        v.append((x[i] << sh if sh >= 0 else x[i] >> -sh) << g.extra)
    for a, sh in zip(g.adders, g.shifts):
        b = v[a.b] << sh if sh >= 0 else v[a.b] >> -sh
        v.append(v[a.a] - b if a.subtract else v[a.a] + b)
        s = g.signals[a.out]
        assert s.lo <= v[-1] <= s.hi and v[-1] % (1 << s.lsb) == 0
    return v


@pytest.mark.parametrize("n_in, n_out, bits, zeros, seed", [(3, 2, 3, 0.0, 0), (16, 16, 6, 0.3, 1),
                                                            (24, 8, 8, 0.7, 2), (16, 32, 8, 0.0, 3)])
def test_graphs_compute_the_kernel_exactly_at_every_edge(n_in, n_out, bits, zeros, seed):
    rng = np.random.default_rng(seed)
    k = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(n_in, n_out))
    k[rng.random(k.shape) < zeros] = 0
    xs = [Signal(-(1 << 5), (1 << 5) - 1) if i % 3 == 0 else Signal(0, 254, 1) if i % 3 == 1 else Signal(-12, 20, 2)
          for i in range(n_in)]
    g = shared_graph(k, xs)
    edges = [[s.lo for s in xs], [s.hi for s in xs], [s.lo if i % 2 else s.hi for i, s in enumerate(xs)]]
    rand = [[int(rng.integers(s.lo >> s.lsb, (s.hi >> s.lsb) + 1)) << s.lsb for s in xs] for _ in range(20)]
    for x in edges + rand:
        v = _run(g, x)
        for j, (idx, sign, sh) in enumerate(g.outputs):
            got = 0 if idx < 0 else sign * (v[idx] << sh if sh >= 0 else v[idx] >> -sh)
            assert got == sum(int(k[i, j]) * x[i] for i in range(n_in)) << g.extra
    # every node's range is reached: the extremes of a linear form of independent inputs
    for s in g.signals[len(g.inputs):]:
        assert s.lo < s.hi
    # fewer LUTs than one tree of canonical signed digits per output
    trees = sum(adder_tree([(sg, xs[i].shifted(e)) for i in range(n_in) for sg, e in csd_digits(int(k[i, j]))]).luts
                for j in range(n_out))
    # much to share (16 x 32: a third of the 32 x 32 solve, interpreted, at the same saving)
    if zeros == 0.0 and n_out >= 32:
        assert g.luts < 0.85 * trees


def test_a_right_shift_that_would_drop_bits_is_refused():
    assert scaled(Signal(-8, 12, 2), -2) == Signal(-2, 3, 0)
    with pytest.raises(ValueError, match="drop bits"):
        scaled(Signal(-8, 12, 1), -2)


def test_the_rtl_layer_never_costs_more_than_the_trees_and_is_bit_exact(tmp_path):
    """Each position keeps the cheaper of its graph and one tree per output (a sparse kernel with
    few outputs has little to share); a dense kernel with many outputs shares a lot."""
    import hgq_fpga
    from hgq_fpga.testing import dense_layer_model, edge_inputs

    trees_only = hgq_fpga.CostModel(dsp_min_bits=1 << 30)
    for n_in, n_out, zeros in ((24, 2, 0.7), (24, 8, 0.7), (16, 16, 0.0)):
        model, x = dense_layer_model(n_in, n_out, weight_bits=8, zero_fraction=zeros, input_bits=6)
        rtl, latency = hgq_fpga.estimate(model, backend="rtl"), hgq_fpga.estimate(model, cost_model=trees_only)
        assert rtl.lut <= latency.lut, (n_in, n_out, rtl.lut, latency.lut)
        if zeros == 0.0:
            assert rtl.lut < 0.8 * latency.lut
        result = hgq_fpga.verify(model, edge_inputs(x[:32]), tmp_path / f"p{n_out}", backend="rtl")
        assert result.ok, str(result)


def test_outputs_no_one_reads_cost_nothing(tmp_path):
    """Hidden units that the next layer reads through zero weights only are dead: their columns take
    no part in the shared graph, as synthesis removes their logic (a trained model has many)."""
    import keras

    import hgq_fpga
    from hgq_fpga.layers import QDense
    from hgq_fpga.testing import edge_inputs

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 16)).astype("float32")
    weights = np.round(rng.uniform(-1, 1, (16, 12)) * 32) / 32, np.round(rng.uniform(-1, 1, (12, 4)) * 32) / 32
    weights[1][:6] = 0  # hidden units 0-5: no output reads them
    models = []
    for zero_dead_columns in (False, True):
        model = keras.Sequential([keras.Input((16,)), QDense(12, activation="relu"), QDense(4)])
        model(x[:2])
        first, second = weights[0].copy(), weights[1]
        if zero_dead_columns:
            first[:, :6] = 0
        for layer, w in zip(model.layers, (first, second)):
            layer.kernel.assign(w.astype("float32"))
        hgq_fpga.calibrate(model, x)
        models.append(model)
    dead, zeroed = (hgq_fpga.estimate(m, backend="rtl") for m in models)
    assert dead.lut == zeroed.lut and dead.lut < hgq_fpga.estimate(models[0], cost_model=hgq_fpga.CostModel(
        dsp_min_bits=1 << 30)).lut
    result = hgq_fpga.verify(models[0], edge_inputs(x[:32]), tmp_path / "prj", backend="rtl")
    assert result.ok, str(result)


@pytest.mark.parametrize("n_in, n_out, bits, seed", [(8, 8, 2, 0), (12, 6, 4, 1), (6, 10, 3, 2)])
def test_every_candidate_graph_computes_the_kernel_exactly(n_in, n_out, bits, seed):
    """Each solution counted (greedy, delay-constrained, da4ml's two-stage decomposition composed
    into one graph; each written in both orders) computes the kernel at every node's range."""
    from hgq_fpga.resources.shared import graph_candidates

    rng = np.random.default_rng(seed)
    top = (1 << (bits - 1)) - 1
    k = rng.integers(-top, top + 1, size=(n_in, n_out))
    xs = [Signal(0, 255) if i % 2 else Signal(-64, 62, 1) for i in range(n_in)]
    cands = graph_candidates(k, xs)
    sources = {g.source for g in cands}
    assert {"wmc", "wmc/scale", "wmc-dc", "wmc-dc/scale"} <= sources
    assert "decomposed" in sources or "decomposed/scale" in sources, sources  # small kernels: two stages
    edges = [[s.lo for s in xs], [s.hi for s in xs], [s.lo if i % 2 else s.hi for i, s in enumerate(xs)]]
    rand = [[int(rng.integers(s.lo >> s.lsb, (s.hi >> s.lsb) + 1)) << s.lsb for s in xs] for _ in range(20)]
    for g in cands:
        for x in edges + rand:
            v = _run(g, x)
            for j, (idx, sign, sh) in enumerate(g.outputs):
                got = 0 if idx < 0 else sign * (v[idx] << sh if sh >= 0 else v[idx] >> -sh)
                assert got == sum(int(k[i, j]) * x[i] for i in range(n_in)) << g.extra, g.source
    assert shared_graph(k, xs).luts == min(g.luts for g in cands)


def test_the_cheapest_graph_no_slower_than_the_greedy_one_is_written():
    """An 8x8 kernel of 2-bit weights (benchmarks/rtl.py's layer07): da4ml's two-stage decomposition
    takes the fewest LUTs but a longer path, so it is not written (the pipeline's latency would
    grow); of the graphs whose path is no longer than the greedy one's, the one with the fewest
    LUTs is."""
    from hgq_fpga.resources.shared import _cheapest, _column, graph_candidates, path_delay

    rng = np.random.default_rng(7)
    k = rng.integers(-1, 2, size=(8, 8))
    k[k == 0] = 1
    xs = [Signal(0, 255)] * 8
    cands = graph_candidates(k, xs)

    def cols(g):
        return [_column(g, j, 0, 0, None) for j in range(8)]

    def luts(g):
        return g.luts + sum(c.tree.luts for c in cols(g))

    limit = path_delay(cands[0], cols(cands[0]))
    deep = [g for g in cands if g.source.startswith("decomposed")]
    assert deep and min(luts(g) for g in deep) < min(luts(g) for g in cands if g not in deep)
    assert all(g.depth > cands[0].depth and path_delay(g, cols(g)) > limit for g in deep)
    chosen, _ = _cheapest(cands, cols)
    assert path_delay(chosen, cols(chosen)) <= limit
    assert luts(chosen) == min(luts(g) for g in cands if path_delay(g, cols(g)) <= limit) < luts(cands[0])
    smallest, _ = _cheapest(cands, cols, "luts")  # prefer="luts": da4ml's own choice, whatever the depth
    assert smallest in deep and luts(smallest) == min(luts(g) for g in cands)


def test_a_kernel_solved_before_is_not_solved_again(monkeypatch):
    """graph_candidates keeps the last SOLVED_KEPT kernels' graphs: the same kernel and inputs give the
    same graphs without running the solver; another kernel, other input ranges, or a kernel pushed
    out by SOLVED_KEPT others are solved."""
    import hgq_fpga.resources.da_cmvm as da_cmvm
    import hgq_fpga.resources.shared as shared
    from hgq_fpga.resources.recent import Recent

    calls = []
    real = da_cmvm.cmvm_stage
    monkeypatch.setattr(da_cmvm, "cmvm_stage", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(shared, "_SOLVED", Recent(shared.SOLVED_KEPT))
    rng = np.random.default_rng(7)
    k = rng.integers(-8, 8, size=(6, 4))
    xs = [Signal(-16, 15)] * 6
    first = shared.graph_candidates(k, xs)
    solved = len(calls)
    assert solved >= 2  # wmc and wmc-dc at least
    again = shared.graph_candidates(k.copy(), list(xs))
    assert len(calls) == solved and again == first and again is not first
    for other_k, other_xs in ((k, [Signal(0, 15)] * 6), (k + np.eye(6, 4, dtype=k.dtype), xs)):
        before = len(calls)  # other ranges, another kernel: solved
        shared.graph_candidates(other_k, other_xs)
        assert len(calls) > before
    for i in range(shared.SOLVED_KEPT):
        shared._SOLVED.put(("filler", i), ())
    shared.graph_candidates(k[:, :2], xs)  # the next kernel kept pushes out the oldest ones
    before = len(calls)
    assert shared.graph_candidates(k, xs) == first  # pushed out: solved again, the same graphs
    assert len(calls) > before
    with pytest.raises(AttributeError):
        first[0].extra = 1  # kept graphs are frozen
    from hgq_fpga.resources.da import clear_cache

    clear_cache()  # forgets them too
    before = len(calls)
    shared.graph_candidates(k, xs)
    assert len(calls) > before
