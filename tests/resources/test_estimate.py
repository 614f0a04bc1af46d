"""estimate(): the report, the rules applied to every IR operation, errors."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.layers import (
    QActivation,
    QAdd,
    QAveragePooling1D,
    QBatchNormalization,
    QConcatenate,
    QConv1D,
    QDense,
    QMaxPooling1D,
)
from hgq_fpga.resources import CostModel, analyze, estimate
from hgq_fpga.resources.circuit import linear_circuits, tensor_signals
from hgq_fpga.testing import dense_layer_model, perturb_bits


def every_op_model(rng: np.random.Generator) -> keras.Model:
    x_in = keras.Input((16, 3))
    a = QConv1D(4, 3, padding="same", activation="relu")(x_in)
    a = QBatchNormalization()(a)
    b = QConv1D(4, 3, padding="same")(x_in)
    s = QAdd()([a, b])
    p = QMaxPooling1D(2)(s)
    q = QAveragePooling1D(2)(s)
    c = QConcatenate()([p, q])
    f = keras.layers.Flatten()(c)
    h = QDense(6, activation="relu")(f)
    t = QActivation("tanh")(h)
    y = QDense(3)(t)
    model = keras.Model(x_in, y)
    x = rng.standard_normal((256, 16, 3)).astype("float32")
    model(x[:2])
    perturb_bits(model, rng, prune_fraction=0.2)
    hgq_fpga.calibrate(model, x)
    return model


def test_report_totals_table_and_json(rng):
    model = every_op_model(rng)
    report = estimate(model)
    assert report.lut > 0 and report.ebops > 0 and report.dsp == 0
    assert report.lut == pytest.approx(sum(r.lut for r in report.layers))
    assert report.ebops == pytest.approx(sum(r.ebops for r in report.layers))
    names = [r.layer for r in report.layers]
    assert len(names) == len(set(names))
    for layer in model.layers:
        if isinstance(layer, (QDense, QConv1D)):
            assert layer.name in names
    text = str(report)
    assert "total" in text and all(n[:24] in text for n in names)
    data = json.loads(report.to_json())
    assert data["lut"] == report.lut and len(data["layers"]) == len(report.layers)
    assert data["cost_model"]["family"] == "DSP48E2"  # the default part is an UltraScale+
    # tables cost LUTs in the tanh layer, comparators in max pooling
    by_name = {r.layer: r for r in report.layers}
    assert any(r.counts["table"] > 0 for r in report.layers)
    assert any("max_pool" in r.ops and r.counts["mux"] > 0 for r in by_name.values())


def test_adder_trees_agree_with_the_ir_bounds(rng):
    """Every linear circuit's root range is the IR's exact range of that element."""
    model = every_op_model(rng)
    graph = hgq_fpga.build_ir(model)
    walker = analyze(graph, strategy="Latency", cost_model=CostModel())
    checked = 0
    for node in graph.nodes:
        if node.op not in ("dense", "conv", "scale", "avg_pool", "add"):
            continue
        out = graph.tensors[node.outputs[0]]
        lo, hi = np.asarray(out.lo).reshape(-1), np.asarray(out.hi).reshape(-1)
        for e, c in enumerate(walker.circuits[node.outputs[0]]):
            if c.tree.root is None:
                assert lo[e] == hi[e] == 0
                continue
            r = c.tree.signals[c.tree.root]
            got = (r.lo, r.hi) if c.tree.sign > 0 else (-r.hi, -r.lo)
            assert got == (int(lo[e]), int(hi[e])), (node.name, e)
            checked += 1
    assert checked > 100


def test_zero_weights_cost_nothing_and_pruning_never_costs_more():
    full, _ = dense_layer_model(16, 8, weight_bits=5, zero_fraction=0.0, use_bias=False, seed=3)
    lut_full = estimate(full).lut
    layer = full.layers[-1]
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    rng = np.random.default_rng(0)
    mask = rng.random(kernel.shape) < 0.5
    layer.kernel.assign(np.where(mask, 0.0, kernel))
    lut_half = estimate(full).lut
    layer.kernel.assign(np.zeros_like(kernel))
    zero = estimate(full)
    assert 0 < lut_half < lut_full
    assert zero.lut == 0 and zero.ebops == 0 and zero.carry == 0


def test_wide_multiplications_go_to_dsps_in_latency_only():
    model, _ = dense_layer_model(4, 3, weight_bits=12, input_bits=12, seed=1)
    lat = estimate(model, part="xc7a200t-fbg676-2")
    assert lat.dsp > 0 and lat.model.family == "DSP48E1"
    luts_only = estimate(model, cost_model=CostModel(dsp_min_bits=64))
    assert luts_only.dsp == 0 and luts_only.lut > lat.lut


@pytest.mark.slow
def test_distributed_arithmetic_uses_da4ml_cost(rng):
    model, _ = dense_layer_model(8, 8, weight_bits=4, input_bits=6, seed=2)
    da = estimate(model, strategy="distributed_arithmetic")
    lat = estimate(model)
    assert da.dsp == 0 and da.counts()["da"] > 0
    assert da.ebops == lat.ebops
    # shared subexpressions: never more adder bits than the plain trees
    assert da.lut <= lat.lut * 1.05
    # in LUTs (one per adder bit, as hls4ml's pass configures da4ml), not a count of adders, which
    # was about 7x lower than the LUTs of the same graph
    assert da.lut >= 0.4 * lat.lut, (da.lut, lat.lut)


def test_cost_model_coefficients_scale_the_counts():
    model, _ = dense_layer_model(8, 8, weight_bits=4, seed=5)
    base = estimate(model)
    scaled = estimate(model, cost_model=CostModel(adder=0.5))
    assert scaled.lut == pytest.approx(0.5 * base.counts()["adder"] + base.counts()["mux"])


def test_errors(rng):
    model, _ = dense_layer_model(4, 2)
    with pytest.raises(ValueError, match="strategy must be one of"):
        estimate(model, strategy="Resource")
    fresh = keras.Sequential([keras.Input((4,)), QDense(2)])
    with pytest.raises(ValueError, match="not calibrated"):
        estimate(fresh)


def test_part_picks_the_dsp_family():
    assert CostModel.for_part("xcvu13p-flga2577-2-e").family == "DSP48E2"
    assert CostModel.for_part("xczu9eg-ffvb1156-2-e").family == "DSP48E2"
    assert CostModel.for_part("xc7z020clg400-1").family == "DSP48E1"


def test_signals_of_a_quantized_tensor_have_its_zero_low_bits():
    model, _ = dense_layer_model(6, 2, input_bits=4, seed=4)
    graph = hgq_fpga.build_ir(model)
    walker = analyze(graph, strategy="Latency", cost_model=CostModel())
    q = next(n for n in graph.nodes if n.op == "quantize")
    sig = tensor_signals(graph, q.outputs[0], walker.lsb[q.outputs[0]])
    f = np.asarray(q.f).reshape(-1)
    t = graph.tensors[q.outputs[0]]
    for s, fe in zip(sig, f):
        assert s.constant or s.lsb == t.f - fe
    dense = next(n for n in graph.nodes if n.op == "dense")
    assert len(linear_circuits(graph, dense, sig)) == 2


def test_report_states_what_it_does_not_model():
    """Issue 18: reuse factors are not modelled, and the report says so."""
    from hgq_fpga.resources.estimate import NOT_MODELLED

    model = keras.Sequential([keras.Input((4,)), QDense(3)])
    x = np.random.default_rng(0).standard_normal((32, 4))
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    assert str(hgq_fpga.estimate(model)).endswith(NOT_MODELLED)
    assert "ReuseFactor 1" in NOT_MODELLED and "io_stream" in NOT_MODELLED


@pytest.mark.parametrize("backend", ["hls4ml", "rtl"])
def test_a_re_estimate_reuses_the_trees_of_unchanged_columns_and_equals_a_fresh_one(rng, backend):
    """Adder trees are kept across estimates, keyed by what they are a function of (the patch's
    input signals, the column's integer weights, bias, shift, cap, the DSP rule): after both dense
    layers change (bits one shorter, calibrated again), the estimate with the kept trees is the one
    from scratch, and the layers before them get the very same trees back."""
    from hgq_fpga.resources import circuit

    model = every_op_model(rng)
    x = rng.standard_normal((256, 16, 3)).astype("float32")
    hgq_fpga.calibrate(model, x)
    before = estimate(model, backend=backend)
    first = analyze(hgq_fpga.build_ir(model))
    for layer in (layer for layer in model.layers if isinstance(layer, QDense)):
        f = np.array(keras.ops.convert_to_numpy(layer.kernel_quantizer.f_value()))
        layer.kernel_quantizer.set_f(f - 1.0)
    hgq_fpga.calibrate(model, x)
    kept = estimate(model, backend=backend)
    again = analyze(hgq_fpga.build_ir(model))
    reused = [k for k, trees in first.circuits.items() if all(a.tree is b.tree for a, b in zip(trees, again.circuits[k]))]
    assert reused and len(reused) < len(first.circuits)  # the convolutions' trees kept, the dense layers' rebuilt
    circuit.clear_cache()
    fresh = estimate(model, backend=backend)
    assert kept.lut != before.lut and kept.to_dict() == fresh.to_dict()


def test_estimates_in_several_threads_share_the_tree_cache_safely(rng, monkeypatch):
    """The kept trees are shared by every estimate in the process: four threads estimating the
    same model while the cache is trimmed after every layer (at most 8 trees kept) all get the
    report of one estimate alone, and none fails on the cache changing under it."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from hgq_fpga.resources import circuit

    model = every_op_model(rng)
    x = rng.standard_normal((256, 16, 3)).astype("float32")
    hgq_fpga.calibrate(model, x)
    circuit.clear_cache()
    alone = estimate(model).to_dict()
    monkeypatch.setattr(circuit, "CACHED_CIRCUITS", 8)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch every microsecond: a race shows up
    try:
        with ThreadPoolExecutor(4) as pool:
            reports = list(pool.map(lambda _: estimate(model).to_dict(), range(8)))
    finally:
        sys.setswitchinterval(interval)
    assert all(r == alone for r in reports)

