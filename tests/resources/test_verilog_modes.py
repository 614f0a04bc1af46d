"""Every ``ap_fixed`` rounding and overflow mode in Verilog: Icarus simulation =
emulator bit for bit on every value of a fine format (exact ties of both signs,
their neighbours, overflow both ways, range edges), and after adder trees
(needs iverilog; .ci/run installs it)."""

from __future__ import annotations

import itertools

import keras
import numpy as np

import hgq_fpga
from hgq_fpga.backends.rtl import simulate_model, to_verilog
from hgq_fpga.fixed import OverflowMode, RoundingMode
from hgq_fpga.layers import QActivation, QDense
from hgq_fpga.testing import edge_inputs, perturb_bits

ROUNDINGS = [m.value for m in RoundingMode]
OVERFLOWS = [m.value for m in OverflowMode]
#: the fractional bits of the quantizers under test, per column of a group: from the
#: fine format's f = 4, shifts 5, 4, 3, 2, 1 (rounding), 0 and -1
F_OUT = [-1, 0, 1, 2, 3, 4, 5]


def mismatches(graph: hgq_fpga.ir.Graph, x: np.ndarray) -> tuple[dict[str, int], list[np.ndarray]]:
    """Per output tensor, the simulated mantissas that differ from the emulator's; the emulator's."""
    module = to_verilog(graph)
    got = simulate_model(graph, x, module=module)
    want = hgq_fpga.emulate_mantissas(graph, x)
    bad = {}
    for name, g, w, port in zip(graph.outputs, got, want, module.outputs):
        assert port.f == w.f
        n = int(np.sum(np.asarray(g, dtype=object) != np.asarray(w.m, dtype=object)))
        if n:
            bad[name] = n
    return bad, [np.asarray(w.m, dtype=object) for w in want]


def test_every_mode_pair_is_bit_exact_on_a_fine_grid():
    """A fine quantizer (f = 4) at the port: a group of signed columns (i = 5), one of
    unsigned (i = 5) and one of narrow signed ones (i = -1: 4-bit wires, shifted by up
    to 5, or wrapped unshifted into 5 unsigned bits), read by one QActivation per
    (rounding, overflow, k) with i = 1 and f = F_OUT per column (widths 0 to 7, the
    1-bit signed one included). The probe is every value of the fine format and a
    little beyond (which wraps at the port), and edge_inputs."""
    keras.utils.set_random_seed(0)
    n = len(F_OUT)
    x_in = keras.Input((3 * n,))
    fine = QActivation("linear", input_quantizer={"f0": 4})(x_in)
    pairs = list(itertools.product(ROUNDINGS, OVERFLOWS, (0, 1)))
    outs = [QActivation("linear", name=f"{r}_{o}_k{k}", input_quantizer={"i": 1, "k": k, "rounding": r,
                                                                          "overflow": o})(fine)
            for r, o, k in pairs]
    model = keras.Model(x_in, outs)
    rng = np.random.default_rng(0)
    lo = np.repeat([-31.9, 0.0, -0.5], n)
    hi = np.repeat([31.9, 31.9, 0.4375], n)
    cal = np.concatenate([[lo, hi], rng.uniform(lo, hi, (100, 3 * n))]).astype("float32")
    model(cal[:2])
    for layer in model.layers[2:]:
        layer.input_quantizer.set_f(np.tile(F_OUT, 3))
    hgq_fpga.calibrate(model, cal)
    graph = hgq_fpga.build_ir(model)
    grid = np.arange(-520, 520) / 16.0
    probe = np.concatenate([np.broadcast_to(grid[:, None], (len(grid), 3 * n)), edge_inputs(cal)]).astype("float32")
    bad, want = mismatches(graph, probe)
    assert not bad, f"Verilog differs from the emulator (outputs: mismatches): {bad}"
    # the probe tells the roundings apart: pairwise different outputs for each overflow (signed),
    # and unsigned with WRAP (saturating unsigned outputs map every negative value to 0)
    by_pair = dict(zip(pairs, want))
    for o, k in [(o, 1) for o in OVERFLOWS] + [("WRAP", 0)]:
        for r1, r2 in itertools.combinations(ROUNDINGS, 2):
            assert np.any(by_pair[r1, o, k] != by_pair[r2, o, k]), (r1, r2, o, k)


def test_modes_after_adder_trees_are_bit_exact():
    """Each rounding (overflow in turn) on the outputs of a dense layer: the quantizers
    read adder trees (a wrapping one needs the sum's sign for TRN_ZERO, RND_ZERO, RND_INF)."""
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x_in = keras.Input((6,))
    h = QDense(8)(x_in)
    outs = [QDense(2, name=f"{r}_{o}", input_quantizer={"f0": 2, "rounding": r, "overflow": o})(h)
            for r, o in zip(ROUNDINGS, itertools.cycle(OVERFLOWS))]
    outs += [QDense(2, name=f"{r}_WRAP", input_quantizer={"f0": 1, "rounding": r})(h)
             for r in ("TRN_ZERO", "RND_ZERO", "RND_INF", "RND_CONV")]
    model = keras.Model(x_in, outs)
    x = rng.standard_normal((150, 6)).astype("float32")
    model(x[:2])
    perturb_bits(model, rng, prune_fraction=0.2)
    hgq_fpga.calibrate(model, x)
    bad, _ = mismatches(hgq_fpga.build_ir(model), edge_inputs(x))
    assert not bad, f"Verilog differs from the emulator (outputs: mismatches): {bad}"
