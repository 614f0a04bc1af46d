"""Pipelining (``bits.py``, ``pipeline.py``, ``clocked.py``): registers on root bits only, each
once per boundary; the fewest register bits within the ASAP latency, every stage within the
cutoff; flip-flops counted as flattened yosys keeps them; deep pipelines bit-exact in Icarus
Verilog (needs yosys and iverilog; .ci/run installs them)."""

from __future__ import annotations

import json
import re
import subprocess

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.backends.rtl import pipeline, pipelined, to_rtl, to_verilog
from hgq_fpga.backends.rtl.bits import values
from hgq_fpga.backends.rtl.pipeline import DelayModel, Net
from hgq_fpga.backends.rtl.project import RTL_PROJECT
from hgq_fpga.layers import QDense
from hgq_fpga.testing import dense_layer_model, edge_inputs, perturb_bits


def small_mlp(seed: int = 4) -> tuple[keras.Model, np.ndarray]:
    """Two layers: rounding and saturation at the input, a ReLU, a bias: adders, comparisons, muxes."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    iq = {"overflow": "SAT", "rounding": "RND"}
    model = keras.Sequential([keras.Input((6,)), QDense(5, activation="relu", input_quantizer=iq),
                              QDense(3, input_quantizer=iq)])
    x = rng.standard_normal((128, 6)).astype("float32")
    model(x[:2])
    perturb_bits(model, rng, prune_fraction=0.2)
    hgq_fpga.calibrate(model, x)
    return model, x


def module(model: keras.Model):
    return to_verilog(hgq_fpga.build_ir(model))


def test_bits_follow_verilog_sizing_and_sign_rules():
    v = values([Net("w1", 4, True, ["wire signed [3:0] w1 = in0;"], ["in0"], "wiring", (3, 0))],
               [Net("in0", 4, False, [], [], "wiring", (3, 0))])
    x = [("in0", j) for j in range(4)]
    assert v.bits["w1"] == x
    assert v.eval("w1 >>> 1", 4) == x[1:] + [x[3]]  # arithmetic: w1 is signed
    assert v.eval("in0 >>> 1", 4) == x[1:] + [0]  # logical: a port is unsigned
    assert v.eval("w1", 6) == x + [x[3]] * 2  # sign extension to the wire's width
    assert v.eval("{w1}", 6) == x + [0, 0]  # a concatenation is unsigned
    assert v.eval("$signed(w1[3:1]) <<< 2", 6) == [0, 0] + x[1:] + [x[3]]
    assert v.eval("(w1 < 0) ? 2'sd0 : w1", 4)[2].deps == {x[2], x[3]}  # a sign test reads the sign only
    low = v.eval("w1 + 4'sd4", 4)  # the low bits of a sum with a constant are the operand's
    assert low[:2] == x[:2] and low[2].deps == {x[2]} and low[3].deps == set(x[2:])
    assert v.eval("(w1 > 4'sd3) ? 4'sd3 : w1", 4)[3].deps == {x[3]}  # min(w1, 3): bit j of bits from j up
    assert v.eval("w1 > 4'sd3", 1)[0].deps == {x[2], x[3]}  # w1 >= 4: the bits from 2 up
    assert v.eval("w1 - w1", 4)[1] is v.eval("w1 - w1", 4)[1]  # the same logic on the same bits: one bit
    assert v.eval("-2'sd1", 3) == [1, 1, 1] and v.eval("3'sd3 * 2'sd1", 3) == [1, 1, 0]
    assert not v.opaque


def test_registers_hold_root_bits_once_and_the_stages_keep_to_the_cutoff():
    model, _ = small_mlp()
    comb, delays = module(model), DelayModel()
    ports = [Net(p.name, max(p.bits, 1), False, [], [], "wiring", (max(p.bits, 1) - 1, 0)) for p in comb.inputs]
    assert not values(comb.nets, ports, comb.functions).opaque  # every expression read bit by bit
    for cutoff in (0.6, 1.0, 3.5):
        m = pipelined(comb, latency_cutoff=cutoff)
        pipe = m.pipeline
        assert {r for r, _ in pipe.regs} <= pipe.roots  # wiring has no register of its own
        for (r, k), bits in pipe.regs.items():
            assert bits == sorted(set(bits)) and (k == 1 or set(bits) <= set(pipe.regs[(r, k - 1)]))
        for name in pipe.roots - {p.name for p in comb.inputs}:
            net = pipe.nets[name]
            own = delays.delay(net.kind, net.width)
            assert net.arrival <= cutoff + 1e-9 or net.arrival == own, (cutoff, name)  # alone, if over it
        assert max(pipe.stage_delay) <= max(cutoff, max(delays.delay(n.kind, n.width) for n in comb.nets))
        # every adder of the combinational module is in the clocked one (as the estimate counts them)
        assert m.source.count("hgq_add #(.WA") == comb.source.count("hgq_add #(.WA")


def test_fewest_register_bits_within_the_asap_latency(monkeypatch):
    model, _ = dense_layer_model(12, 8, weight_bits=5, input_bits=6)
    comb = module(model)
    best = {c: pipelined(comb, latency_cutoff=c) for c in (1.0, None)}
    monkeypatch.setattr(pipeline, "_min_registers", lambda *a: None)  # the ASAP stages
    for c, m in best.items():
        asap = pipelined(comb, latency_cutoff=c)
        assert m.latency == asap.latency
        assert m.pipeline.bits_registered <= asap.pipeline.bits_registered
    assert best[1.0].pipeline.bits_registered < 0.85 * pipelined(comb, latency_cutoff=1.0).pipeline.bits_registered


@pytest.mark.parametrize("runs, counts", [([1], (1, 0)), ([2, 1], (3, 0)), ([3], (0, 1)), ([16], (0, 1)),
                                          ([17], (1, 1)), ([20, 2], (2, 1)), ([49], (1, 2))])
def test_register_chains_count_as_synthesis_packs_them(runs, counts):
    """Three or more registers in a row, the inner ones read by nothing else, are a shift-register LUT."""
    assert pipeline._chain_cells(runs) == counts


def _yosys(path):
    (path / "reports").mkdir(exist_ok=True)
    subprocess.run(["yosys", "-q", "-s", "build_yosys.ys"], cwd=path, check=True, capture_output=True)
    stat = (path / "reports" / "yosys_utilization.txt").read_text()
    return {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", stat, re.MULTILINE)}


@pytest.mark.slow
@pytest.mark.parametrize("which, cutoff, latency", [("dense", 1.0, 5), ("dense", None, 2), ("mlp", 0.6, 8)],
                         ids=["dense-deep", "dense-default", "mlp-deep"])
def test_flip_flops_are_what_flattened_yosys_keeps(which, cutoff, latency, tmp_path):
    """The 12x8 layer (before: 2552 counted, 1555 kept at cutoff 1.0), and a model with saturations and
    ReLUs (flip-flops with a synchronous set or reset: FDSE), duplicate adders and logic nobody reads."""
    model, _ = dense_layer_model(12, 8, weight_bits=5, input_bits=6) if which == "dense" else small_mlp()
    project = to_rtl(model, tmp_path / "prj", latency_cutoff=cutoff)
    cells = _yosys(project.path)
    assert project.latency >= latency  # deep pipelines (and a default one of two stages)
    assert sum(v for k, v in cells.items() if k in ("FDRE", "FDSE", "FDCE", "FDPE")) == project.module.ff
    assert cells.get("SRL16E", 0) + cells.get("SRLC32E", 0) == project.module.srl


@pytest.mark.slow
@pytest.mark.parametrize("which", ["dense", "mlp"])
def test_deep_pipelines_are_bit_exact(which, tmp_path):
    model, x = dense_layer_model(12, 8, weight_bits=5, input_bits=6) if which == "dense" else small_mlp()
    result = hgq_fpga.verify(model, edge_inputs(x[:64]), tmp_path / "prj", backend="rtl", latency_cutoff=0.6)
    assert result.ok, str(result)
    assert json.loads((tmp_path / "prj" / RTL_PROJECT.marker).read_text())["latency_cycles"] > 3
