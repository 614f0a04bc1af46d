"""The distributed-arithmetic estimate is the cost of the graph hls4ml 1.3.0 builds with
da4ml 0.5.2, and its faster solver returns da4ml's pipelines (hgq_fpga/resources/da.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("da4ml")

from da4ml.cmvm.api import solve as da4ml_solve  # noqa: E402
from da4ml.cmvm.types import QInterval  # noqa: E402
from da4ml.trace import FixedVariableArray, HWConfig, comb_trace  # noqa: E402
from numba.typed import List  # noqa: E402

import hgq_fpga  # noqa: E402
from hgq_fpga.ir import ops as ir  # noqa: E402
from hgq_fpga.resources import da  # noqa: E402
from hgq_fpga.testing import dense_layer_model  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.delenv("DA_HARD_DC", raising=False)
    da.clear_cache()
    yield
    da.clear_cache()


def hls4ml_cost(model) -> float:
    """What hls4ml's DistributedArithmeticCodegen.transform stores as ``da_kernel_cost``, computed
    as it does (da4ml's own solver): inputs from the quantizer's format (the model's input is
    float, so hls4ml keeps the whole mask), ``inp @ kernel + bias``, ``comb_trace``."""
    graph = hgq_fpga.build_ir(model)
    dense = next(n for n in graph.nodes if isinstance(n, ir.Dense))
    quant = graph.producer(dense.inputs[0])
    k, i, f = (np.broadcast_to(v, graph.tensors[dense.inputs[0]].shape) for v in (quant.k, quant.i, quant.f))
    options = {"hard_dc": int(os.environ.get("DA_HARD_DC", 2)), "search_all_decompose_dc": True}
    inp = FixedVariableArray.from_kif(k, i, f, HWConfig(1, -1, -1), solver_options=options)
    out = inp @ dense.kernel.values
    if dense.bias is not None:
        out += dense.bias.values
    return float(comb_trace(inp, out).cost)


@pytest.mark.parametrize("shape, options", [
    ((8, 8), dict(weight_bits=4, input_bits=6)),
    ((12, 5), dict(weight_bits=6, input_bits=4, signed_input=False, zero_fraction=0.3)),
    ((16, 4), dict(weight_bits=3, input_bits=8, zero_fraction=0.5, use_bias=False)),
])
def test_cost_is_that_of_hls4ml_calling_da4ml(shape, options):
    model, _ = dense_layer_model(*shape, seed=3, **options)
    report = hgq_fpga.estimate(model, strategy="distributed_arithmetic")
    assert report.counts()["da"] == hls4ml_cost(model) > 0


def test_hard_dc_from_the_environment_as_hls4ml(monkeypatch):
    model, _ = dense_layer_model(10, 6, weight_bits=5, seed=4)
    monkeypatch.setenv("DA_HARD_DC", "0")
    assert hgq_fpga.estimate(model, strategy="distributed_arithmetic").counts()["da"] == hls4ml_cost(model)


def same_pipeline(a, b) -> bool:
    fields = ("shape", "inp_shifts", "out_idxs", "out_shifts", "out_negs", "ops")
    return len(a.solutions) == len(b.solutions) and all(
        [list(getattr(x, f)) if f != "shape" else tuple(x.shape) for f in fields]
        == [list(getattr(y, f)) if f != "shape" else tuple(y.shape) for f in fields]
        for x, y in zip(a.solutions, b.solutions))


def reference_solve(kernel, qints, lats, **options):
    """da4ml's own solver, every argument given (as hls4ml's call through FixedVariableArray does:
    numba compiles one signature, cached, instead of one per set of omitted defaults)."""
    full = dict(method0="wmc", method1="auto", hard_dc=-1, decompose_dc=-2, adder_size=-1, carry_size=-1,
                search_all_decompose_dc=True)
    full.update(options)
    return da4ml_solve(kernel, qintervals=List(qints), latencies=List(lats), **full)


def random_problem(rng: np.random.Generator, n_in: int, n_out: int):
    bits = rng.integers(2, 8, size=(n_in, n_out))
    w = np.round(rng.uniform(-1, 1, (n_in, n_out)) * 2.0**bits) / 2.0**bits
    w[rng.random(w.shape) < 0.3] = 0
    qints = []
    for _ in range(n_in):
        k, i, f = int(rng.integers(0, 2)), int(rng.integers(-1, 3)), int(rng.integers(0, 5))
        qints.append(QInterval(-(2.0**i) * k, 2.0**i - 2.0**-f, 2.0**-f) if k + i + f > 0 else QInterval(0.0, 0.0, 1.0))
    return np.ascontiguousarray(w.astype(np.float32)), qints, [float(v) for v in rng.integers(0, 3, n_in)]


@pytest.mark.parametrize("seed", range(4))
def test_solve_returns_da4ml_pipeline(seed):
    """Random kernels, intervals, latencies and options: the same ops, op for op."""
    rng = np.random.default_rng(seed)
    for hard_dc, search_all, adder_size in ((2, True, -1), (0, True, 1), (-1, False, -1), (1, True, 1)):
        kernel, qints, lats = random_problem(rng, int(rng.integers(2, 40)), int(rng.integers(1, 10)))
        options = dict(hard_dc=hard_dc, adder_size=adder_size, carry_size=-1, search_all_decompose_dc=search_all)
        ours = da.solve(kernel, qintervals=qints, latencies=lats, **options)
        theirs = reference_solve(kernel, qints, lats, **options)
        assert same_pipeline(ours, theirs), (seed, options)
    assert da.STATS["fallbacks"] == 0


def test_unmirrored_method_is_left_to_da4ml():
    kernel, qints, lats = random_problem(np.random.default_rng(9), 12, 4)
    ours = da.solve(kernel, method0="mc", qintervals=qints, latencies=lats, hard_dc=2)
    assert da.STATS["fallbacks"] == 1
    assert same_pipeline(ours, reference_solve(kernel, qints, lats, method0="mc", hard_dc=2))


def test_mid_size_layer_solves_each_stage_once_and_caches():
    # (64 inputs: the same six stages and two reuses as 196, in 7 s instead of 44 with numba off)
    model, _ = dense_layer_model(64, 16, weight_bits=6, zero_fraction=0.2, seed=5)
    first = hgq_fpga.estimate(model, strategy="distributed_arithmetic")
    stats = dict(da.STATS)
    # one solve; da4ml's search asks for a stage once per decomposition depth that falls back
    # to it (and the winner again): here the repeated ones are reused, not run
    assert stats["solves"] == 1 and stats.get("cache_hits", 0) == 0
    assert stats["stages"] >= 2 and stats["stage_reuses"] >= 1
    again = hgq_fpga.estimate(model, strategy="distributed_arithmetic")
    assert again.counts()["da"] == first.counts()["da"] > 0
    assert da.STATS["trace_hits"] == 1 and da.STATS["solves"] == 1  # the cost itself was cached


def test_repeated_solve_is_cached():
    kernel, qints, lats = random_problem(np.random.default_rng(2), 20, 6)
    a = da.solve(kernel, qintervals=qints, latencies=lats, hard_dc=2)
    b = da.solve(kernel.copy(), qintervals=list(qints), latencies=list(lats), hard_dc=2)
    assert a is b and da.STATS["cache_hits"] == 1
    assert da.solve(kernel, qintervals=qints, latencies=lats, hard_dc=1) is not a  # other options: solved


def test_estimate_equals_hls4ml_conversion_per_layer(tmp_path):
    """Convolutions (padding, strides), a flattened dense layer: each layer's cost is the
    ``da_kernel_cost`` hls4ml's pass stores, times the output positions (no C++ is built)."""
    pytest.importorskip("hls4ml")
    import keras

    from hgq_fpga.calibration import calibrate
    from hgq_fpga.layers import QConv1D, QDense

    keras.utils.set_random_seed(1)
    x_in = keras.Input((12, 3))
    a = QConv1D(4, 3, padding="same", activation="relu")(x_in)
    b = QConv1D(5, 2, strides=2, padding="valid")(a)
    model = keras.Model(x_in, QDense(3)(keras.layers.Flatten()(b)))
    x = np.random.default_rng(0).uniform(-1, 1, (256, 12, 3)).astype("float32")
    calibrate(model, x)
    est = [row.counts["da"] for row in hgq_fpga.estimate(model, strategy="distributed_arithmetic").layers]
    hls = hgq_fpga.to_hls4ml(model, tmp_path / "prj", strategy="distributed_arithmetic")
    got = [layer.attributes["da_kernel_cost"] * np.prod(layer.get_output_variable().shape[:-1])
           for layer in hls.graph.values() if "da_kernel_cost" in layer.attributes.attributes]
    assert got == [c for c in est if c > 0] and len(got) == 3


def test_another_da4ml_version_uses_its_own_solver(monkeypatch):
    import da4ml

    kernel, qints, lats = random_problem(np.random.default_rng(3), 10, 3)
    monkeypatch.setattr(da4ml, "__version__", "0.6.0")
    ours = da.solve(kernel, qintervals=qints, latencies=lats, hard_dc=2)
    assert da.STATS["fallbacks"] == 1 and da.STATS["stages"] == 0
    assert same_pipeline(ours, reference_solve(kernel, qints, lats, hard_dc=2))
