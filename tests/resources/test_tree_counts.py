"""The compiled count of a layer's adder trees (:mod:`hgq_fpga.resources.tree_counts`) against the
Python trees it stands in for.

The tests run in the session's mode (interpreted where ``NUMBA_DISABLE_JIT=1``, as ``make test`` runs
them) and, through :func:`test_the_compiled_count_in_a_process_of_its_own`, compiled: that test runs
this file again in a process where numba compiles and requires that it does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.resources import circuit, tree_counts
from hgq_fpga.resources.circuit import NO_BITS, CountedTree, _linear_one
from hgq_fpga.resources.rules import Signal
from hgq_fpga.resources.tree_counts import count_columns, fits_int64

COMPILED = os.environ.get("HGQ_FPGA_TEST_COMPILED") == "1"


def _case(rng: np.random.Generator) -> tuple:
    """A random layer column set with every kind of term: constant inputs (zero and not), padding,
    signed and unsigned inputs with zero low bits, weights of one and of several CSD digits (all
    negative ones too), DSP products, biases, caps."""
    n, cols = int(rng.integers(1, 40)), int(rng.integers(1, 6))
    x = []
    for _ in range(n):
        kind = int(rng.integers(0, 5))
        if kind == 0:
            v = int(rng.integers(-20, 20))
            x.append(Signal(v, v, 0))
            continue
        b = int(rng.integers(1, 14))
        lo = 0 if kind == 1 else int(rng.integers(-2**b, 2**b))
        hi = lo + int(rng.integers(0, 2**b))
        x.append(Signal(lo, hi, int(rng.integers(0, 3)) if lo != hi else 0))
    sources = [int(rng.integers(-1, n)) if rng.random() < 0.1 else k for k in range(n)]
    wb = int(rng.integers(1, 16))
    w = rng.integers(-2**wb, 2**wb, size=(n, cols)) * (rng.random((n, cols)) > 0.3)
    shift = int(rng.integers(0, 4))
    biases = [int(rng.integers(-300, 300)) if rng.random() < 0.6 else 0 for _ in range(cols)]
    caps = [None if rng.random() < 0.6 else int(rng.integers(2, 30)) for _ in range(cols)]
    return x, sources, w, shift, biases, caps, bool(rng.random() < 0.5), int(rng.integers(3, 12))


def test_the_mode_is_the_one_asked_for():
    assert tree_counts.compiled() == (COMPILED or os.environ.get("NUMBA_DISABLE_JIT", "0") == "0")


@pytest.mark.parametrize("seed", range(4))
def test_counts_are_those_of_the_python_trees(seed):
    """Column by column: LUTs (with a final negation), carry cells, the root's lsb and the DSP
    products of :func:`~hgq_fpga.resources.circuit._linear_one`'s tree, for 250 random layers."""
    rng = np.random.default_rng(seed)
    checked = dsp = negated = 0
    for _ in range(250):
        x, sources, w, shift, biases, caps, use_dsp, min_bits = _case(rng)
        assert fits_int64(x, w, shift, biases)
        counts = count_columns(x, sources, w, shift, biases, caps, use_dsp, min_bits)
        for j in range(w.shape[1]):
            ref = _linear_one(x, sources, [int(v) for v in w[:, j]], shift, biases[j], use_dsp, min_bits, caps[j])
            products = [(bx, bw) for col, bx, bw in counts.dsp.tolist() if col == j]
            assert (int(counts.luts[j]), int(counts.carry[j]), int(counts.root_lsb[j]), products) == (
                ref.tree.luts, ref.tree.carry, ref.tree.root_lsb, ref.dsp_products)
            checked += 1
            dsp += bool(products)
            negated += ref.tree.negation_luts > 0
    assert checked > 500 and dsp > 10 and negated > 0  # (the cases reach every kind of term)


def test_a_column_without_terms_has_no_root():
    counts = count_columns([Signal(0, 0), Signal(3, 9)], [0, 1], np.array([[5], [0]]), 0, [0], [None], False, 10)
    assert counts.luts.tolist() == [0] and counts.root_lsb.tolist() == [NO_BITS]


def test_layers_too_wide_for_int64_are_left_to_python():
    x = [Signal(-2**40, 2**40)]
    assert not fits_int64(x, np.array([[2**18]]), 0, [0])
    assert not fits_int64([Signal(0, 7)], np.array([[3]]), -1, [0])  # a negative shift (Python raises)
    assert not fits_int64([Signal(0, 7)], np.array([[3]]), 0, [2**61])


def test_a_counted_tree_builds_the_same_tree_when_read():
    """What the Verilog writer reads of a counted tree (terms, signals, adders, root, sign) is the
    Python tree, whose counts are the counted ones."""
    rng = np.random.default_rng(7)
    x, sources, w, shift, biases, caps, use_dsp, min_bits = _case(rng)
    counts = count_columns(x, sources, w, shift, biases, caps, use_dsp, min_bits)
    args = (x, sources, [int(v) for v in w[:, 0]], shift, biases[0], use_dsp, min_bits, caps[0])
    tree = CountedTree(int(counts.luts[0]), int(counts.carry[0]), int(counts.root_lsb[0]), args)
    ref = _linear_one(*args)
    assert tree.terms == ref.terms and tree.signals == ref.tree.signals and tree.adders == ref.tree.adders
    assert (tree.root, tree.sign, tree.negation_luts) == (ref.tree.root, ref.tree.sign, ref.tree.negation_luts)
    assert tree.luts == ref.tree.luts and tree.carry == ref.tree.carry


def _model(rng: np.random.Generator):
    """Convolutions (one padded: positions reading padding), an addition, average pooling, dense layers; the
    last layer's weights and inputs wide enough for DSP products under the Latency rule."""
    import keras

    from hgq_fpga.layers import QAdd, QAveragePooling1D, QConv1D, QDense
    from hgq_fpga.testing import perturb_bits

    x_in = keras.Input((12, 3))
    a = QConv1D(4, 3, padding="same", activation="relu")(x_in)
    b = QConv1D(4, 1)(x_in)
    s = QAveragePooling1D(2)(QAdd()([a, b]))
    h = QDense(6, activation="relu")(keras.layers.Flatten()(s))
    out = QDense(3)
    model = keras.Model(x_in, out(h))
    x = rng.standard_normal((256, 12, 3)).astype("float32") * 4
    model(x[:2])
    for layer in model.layers:  # (the weights from the rng, not from Keras's unseeded initializers)
        for v in [getattr(layer, "kernel", None), getattr(layer, "bias", None)]:
            if v is not None:
                v.assign(rng.standard_normal(v.shape).astype("float32") * 0.5)
    perturb_bits(model, rng, prune_fraction=0.2)
    # The last layer's weights of 12 fractional bits and of magnitude 1 to 4: products of at least 13 bits
    # by the relu's 6 to 12, wide enough for DSPs under the Latency rule whatever the draws above.
    out.kernel_quantizer.set_f(np.full(out.kernel_quantizer.bits_shape, 12.0, "float32"))
    out.kernel.assign(rng.choice([-1.0, 1.0], out.kernel.shape) * rng.uniform(1, 4, out.kernel.shape))
    hgq_fpga.calibrate(model, x)
    return model


@pytest.mark.parametrize("backend", ["hls4ml", "rtl"])
def test_an_estimate_with_counted_trees_is_the_python_estimate(rng, monkeypatch, backend):
    """The whole report of a model of convolutions, dense layers, pooling and an addition, with the
    counted trees and with the Python ones; for the RTL backend its Verilog as well (it reads the
    trees, which a counted tree builds then)."""
    from hgq_fpga.backends.rtl.verilog import to_verilog

    model = _model(rng)
    graph = hgq_fpga.build_ir(model)
    reports, verilog = {}, {}
    for counted in (True, False):
        monkeypatch.setattr(tree_counts, "compiled", lambda counted=counted: counted)
        circuit.clear_cache()
        reports[counted] = hgq_fpga.estimate(model, backend=backend).to_dict()
        verilog[counted] = to_verilog(graph, shared=backend == "rtl", dsp_min_bits=10).source
    assert reports[True] == reports[False]
    assert verilog[True] == verilog[False]
    if backend == "hls4ml":
        assert reports[True]["dsp"] > 0  # (the DSP products counted too)


@pytest.mark.slow
@pytest.mark.skipif(COMPILED, reason="(this is the process it starts)")
def test_the_compiled_count_in_a_process_of_its_own():
    """This file's tests again where numba compiles (``make test`` interprets it everywhere else); the
    RTL backend's estimate left out there: it compiles da4ml's CMVM stage as well (75 s more in CI), and
    what it adds to the counts' check runs interpreted above."""
    env = {**os.environ, "HGQ_FPGA_TEST_COMPILED": "1"}
    env.pop("NUMBA_DISABLE_JIT", None)
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          "--no-header", "-k", "not rtl", str(Path(__file__).relative_to(root))],
                         cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
