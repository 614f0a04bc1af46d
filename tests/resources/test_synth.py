"""The estimator's circuits as Verilog: Icarus simulation = emulator bit for bit,
and yosys cell counts = the rules' counts (needs yosys and iverilog; .ci/run
installs them)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.backends.rtl import ToolMissingError, UnsupportedForVerilog, simulate_model, synthesize, to_verilog
from hgq_fpga.backends.rtl.verilog import ADDER_MODULE, VerilogModule
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
from hgq_fpga.resources import estimate
from hgq_fpga.resources.rules import Signal, adder_cells
from hgq_fpga.testing import assert_verilog_matches_emulator, dense_layer_model, edge_inputs, perturb_bits


def calibrated(model: keras.Model, x: np.ndarray, rng: np.random.Generator) -> keras.Model:
    model(x[:2])
    perturb_bits(model, rng, prune_fraction=0.2)
    hgq_fpga.calibrate(model, x)
    return model


def assert_simulation_matches_emulator(model: keras.Model, x: np.ndarray) -> None:
    assert_verilog_matches_emulator(hgq_fpga.build_ir(model), edge_inputs(x))


@pytest.mark.parametrize("seed", [0])  # more seeds and the pipelined form: tests/backends/rtl/test_rtl_project.py
@pytest.mark.parametrize("overflow", ["WRAP", "SAT", "SAT_SYM"])
def test_mlp_verilog_is_bit_exact(overflow, seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    iq = {"overflow": overflow, "rounding": "TRN" if overflow == "WRAP" else "RND"}
    model = keras.Sequential([
        keras.Input((12,)),
        QDense(10, activation="relu", input_quantizer=iq),
        QDense(6, activation="relu", input_quantizer=iq),
        QDense(3, input_quantizer=iq),
    ])
    x = rng.standard_normal((200, 12)).astype("float32")
    assert_simulation_matches_emulator(calibrated(model, x, rng), x)


@pytest.mark.parametrize("seed", [0])
def test_cnn_verilog_is_bit_exact(seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x_in = keras.Input((12, 2))
    a = QConv1D(3, 3, padding="same", activation="relu")(x_in)
    a = QBatchNormalization()(a)
    b = QConv1D(3, 3, padding="same")(x_in)
    s = QAdd()([a, b])
    c = QConcatenate()([QMaxPooling1D(2)(s), QAveragePooling1D(2)(s)])
    y = QDense(3)(keras.layers.Flatten()(c))
    x = rng.standard_normal((200, 12, 2)).astype("float32")
    assert_simulation_matches_emulator(calibrated(keras.Model(x_in, y), x, rng), x)


@pytest.mark.parametrize("seed", range(3))
def test_yosys_luts_equal_the_estimate_on_8x8_layers(seed):
    model, _ = dense_layer_model(8, 8, weight_bits=3 + seed, zero_fraction=0.2 * seed,
                                 input_bits=4 + 2 * seed, signed_input=seed % 2 == 0, seed=seed)
    graph = hgq_fpga.build_ir(model)
    report = estimate(model, graph=graph)
    synth = synthesize(to_verilog(graph))
    assert synth.dsp == 0 and synth.ff == 0
    assert abs(report.lut / synth.lut - 1) <= 0.02, (report.lut, synth.lut)
    assert abs(report.carry / synth.carry - 1) <= 0.05, (report.carry, synth.carry)


ADDERS = [  # (a, b, subtract): unsigned/signed, shifted, narrow/wide, subtraction
    (Signal(0, 255), Signal(0, 15).shifted(3), False),
    (Signal(-128, 127), Signal(-8, 7), False),
    (Signal(-128, 127), Signal(0, 15).shifted(2), True),
    (Signal(0, 63), Signal(-32, 31).shifted(4), False),
    (Signal(-1, 0), Signal(0, 255), False),
    (Signal(0, 255).shifted(3), Signal(0, 255), True),
]


def test_single_adders_match_yosys(tmp_path):
    """The adder rule, cell for cell, on hand-made operands."""
    from hgq_fpga.backends.rtl.verilog import Writer

    for k, (a, b, sub) in enumerate(ADDERS):
        w = Writer.__new__(Writer)
        w.lines, w.n, w.nets, w.functions, w.adder_instances = [], 0, [], [], True
        out = adder_cells(a, b, sub)[2]
        ports = [("in0", a), ("in1", b)]
        names = []
        for name, s in ports:
            ext = f"$signed({name})" if s.signed else f"$signed({{1'b0, {name}}})"
            names.append(w.wire(s, f"{ext} <<< {s.lsb}" if s.lsb else ext))
        y = w._adder(a, b, names[0], names[1], sub, out)
        src = "\n".join([
            f"module model(input [{a.top - a.lsb}:0] in0, input [{b.top - b.lsb}:0] in1, output [{out.top}:0] out0);",
            *w.lines, f"assign out0 = {y};", "endmodule", "", ADDER_MODULE,
        ])
        synth = synthesize(VerilogModule(src, "model", [], []), workdir=tmp_path / str(k))
        luts, carry, _ = adder_cells(a, b, sub)
        assert (synth.lut, synth.carry) == (luts, carry), (k, a, b, sub)


def test_missing_tools_are_named_with_install_steps(monkeypatch, tmp_path):
    model, _ = dense_layer_model(4, 2)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="yosys was not found on PATH.*apt-get install yosys"):
        synthesize(model)
    with pytest.raises(ToolMissingError, match="iverilog"):
        simulate_model(hgq_fpga.build_ir(model), np.zeros((1, 4), "float32"))


def test_unsupported_operations_are_named(rng):
    model = keras.Sequential([keras.Input((4,)), QDense(3), QActivation("relu")])
    x = rng.standard_normal((64, 4)).astype("float32")
    calibrated(model, x, rng)
    with pytest.raises(ValueError, match="Verilog identifier"):
        to_verilog(hgq_fpga.build_ir(model), top="1st-model")
    graph = hgq_fpga.build_ir(model)
    q = [n for n in graph.nodes if n.op == "quantize"][-1]
    q.rounding = "RND_BOGUS"  # every ap_fixed mode is written; a mode that is none of them is named
    with pytest.raises(UnsupportedForVerilog, match=f"RND_BOGUS/.* of layer {q.layer!r}"):
        to_verilog(graph)


def test_all_pruned_layer_and_constant_outputs(rng):
    """A layer whose weights are all pruned: constant outputs, zero LUTs, still bit-exact."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), QDense(4, activation="relu"), QDense(3)])
    x = rng.standard_normal((100, 6)).astype("float32")
    model(x[:2])
    kq = model.layers[0].kernel_quantizer
    kq.set_f(np.full(kq.bits_shape, -12.0))  # every weight rounds to zero
    hgq_fpga.calibrate(model, x)
    report = estimate(model)
    assert report.layers[0].counts["adder"] == 0 and report.layers[1].counts["adder"] == 0
    assert_simulation_matches_emulator(model, x)
