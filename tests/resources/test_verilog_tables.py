"""Lookup tables (sigmoid, tanh, softmax's exp and 1/s) and element-wise products
in Verilog: Icarus simulation = emulator bit for bit, and yosys synthesizes the
tables (needs yosys and iverilog; .ci/run installs them)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.backends.rtl import UnsupportedForVerilog, synthesize, to_verilog
from hgq_fpga.ir import Constant, GraphBuilder, ops as ir
from hgq_fpga.layers import QActivation, QDense, QSoftmax
from hgq_fpga.testing import assert_verilog_matches_emulator, edge_inputs, perturb_bits


def calibrated(model: keras.Model, x: np.ndarray, rng: np.random.Generator) -> keras.Model:
    model(x[:2])
    perturb_bits(model, rng, prune_fraction=0.2)
    hgq_fpga.calibrate(model, x)
    return model


def probe(x: np.ndarray) -> np.ndarray:
    """``edge_inputs`` (overflow both ways, rounding ties), the calibration data's
    own extremes, and powers of two (the edges of every format) and their neighbours."""
    n = x.shape[1:]
    powers = 2.0 ** np.arange(-6, 10)
    edges = np.concatenate([powers, -powers, powers - 2.0**-6, -powers - 2.0**-6, [0.0, 1e6, -1e6]])
    rows = [edge_inputs(x), x.min(0, keepdims=True), x.max(0, keepdims=True),
            np.broadcast_to(edges.reshape((-1,) + (1,) * len(n)), (len(edges),) + n)]
    return np.concatenate(rows).astype(x.dtype)


def format_edges(k: np.ndarray, i: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per element of a format ``(k, i, f)``: its range edges, one step beyond them,
    ties (half an lsb) at both ends, and large values."""
    k, i, f = (np.asarray(a, np.float64) for a in (k, i, f))
    lsb = 2.0**-f
    hi, lo = 2.0**i - lsb, -k * 2.0**i
    rows = [hi, lo, hi + lsb, lo - lsb, hi + lsb / 2, lo - lsb / 2, lsb / 2, -lsb / 2, -lsb,
            np.full_like(hi, 1e5), np.full_like(hi, -1e5), 2 * hi + 3 * lsb, 2 * lo - 3 * lsb]
    return np.stack(rows)


def assert_simulation_matches_emulator(model: keras.Model, x: np.ndarray) -> str:
    return assert_verilog_matches_emulator(hgq_fpga.build_ir(model), probe(x))


@pytest.mark.parametrize(("name", "overflow", "seed"), [
    ("sigmoid", "WRAP", 0), ("sigmoid", "SAT", 1), ("tanh", "WRAP", 2), ("tanh", "SAT_SYM", 3),
])
def test_table_activations_are_bit_exact(name, overflow, seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    iq = {"overflow": overflow, "rounding": "TRN" if overflow == "WRAP" else "RND"}
    model = keras.Sequential([
        keras.Input((5,)),
        QDense(4),
        QActivation(name, input_quantizer=iq, table_bits=10, table_f=6 + seed),
    ])
    x = rng.standard_normal((120, 5)).astype("float32")
    src = assert_simulation_matches_emulator(calibrated(model, x, rng), x)
    assert src.count("function signed") == 1  # the layer's elements share one table


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_is_bit_exact(seed):
    """exp table, sum, 1/s table, product, quantizer."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = keras.Sequential([
        keras.Input((6,)),
        QDense(4),
        QSoftmax(input_quantizer={"f0": 2 + seed}, inv_bits=8 + seed, table_bits=10),
    ])
    x = (2.0 * rng.standard_normal((120, 6))).astype("float32")
    src = assert_simulation_matches_emulator(calibrated(model, x, rng), x)
    assert src.count("function signed") == 2 and " * " in src


def quantized(b: GraphBuilder, src: str, k: list[int], i: list[int], f: list[int],
              rounding: str = "TRN", overflow: str = "WRAP") -> str:
    op = ir.Quantize(k=np.array(k), i=np.array(i), f=np.array(f), rounding=rounding, overflow=overflow)
    return b.add(op, [src], "q")


def test_element_wise_products_are_bit_exact():
    """Signed and unsigned factors, different scales (the product at their sum), a dead
    (constant zero) element, negative ``f``, then requantized and also taken as is."""
    k_a, i_a, f_a = [1, 0, 1, 1, 0, 1], [2, 3, 0, 4, -1, 5], [3, 1, 4, -2, 0, 2]
    k_b, i_b, f_b = [1, 1, 0, 0, 1, 1], [1, 0, 2, 3, 2, 6], [2, 5, 1, 2, 1, -1]
    b = GraphBuilder()
    xa, xb = b.input("a", (6,)), b.input("b", (6,))
    qa = quantized(b, xa, k_a, i_a, f_a, "RND", "SAT")
    qb = quantized(b, xb, k_b, i_b, f_b)
    y = b.add(ir.Multiply(), [qa, qb], "mul")
    z = quantized(b, y, [1] * 6, [3] * 6, [2] * 6, "RND", "SAT")
    graph = b.graph([xa, xb], [y, z])
    rng = np.random.default_rng(0)
    ea, eb = format_edges(k_a, i_a, f_a), format_edges(k_b, i_b, f_b)
    n = len(ea)
    a = np.concatenate([ea, np.repeat(ea, n, 0), 8 * rng.standard_normal((64, 6))])  # every pair of edges
    c = np.concatenate([eb, np.tile(eb, (n, 1)), 8 * rng.standard_normal((64, 6))])
    assert_verilog_matches_emulator(graph, [a, c])


def test_hand_made_tables_wrap_share_and_are_bit_exact():
    """Index formats that differ from the input's: a finer ``f`` (the mantissa shifted
    up), a narrower width (the top bits wrap away), ``k = 0`` for signed data, a dead
    element; negative entries; equal tables share one Verilog function."""
    k, i, f = [1, 1, 0, 1, 1], [2, 0, 3, 1, 0], [2, 3, 1, 0, -1]
    b = GraphBuilder()
    x = b.input("x", (5,))
    q = quantized(b, x, k, i, f)
    rng = np.random.default_rng(1)

    def table(width: int, index_f: int, seed: int, name: str) -> str:
        values = np.random.default_rng(seed).integers(-40, 90, 2**width) / 8.0
        op = ir.Table(table=Constant.from_values(values), k=0, width=width, f=index_f, function=name)
        return b.add(op, [q], name)

    outs = [table(6, 4, 0, "wide"), table(6, 4, 0, "same_as_wide"), table(3, 3, 1, "narrow")]
    graph = b.graph([x], outs)
    data = np.concatenate([format_edges(k, i, f), 6 * rng.standard_normal((100, 5))])
    src = assert_verilog_matches_emulator(graph, data)
    assert src.count("function signed") == 2


def test_too_wide_table_index_is_named():
    b = GraphBuilder()
    x = b.input("x", (2,))
    q = quantized(b, x, [1, 1], [8, 8], [9, 9])
    op = ir.Table(table=Constant.from_values(np.zeros(2**18)), k=1, width=18, f=9, function="tanh")
    graph = b.graph([x], [b.add(op, [q], "my_tanh")])
    with pytest.raises(UnsupportedForVerilog,
                       match=r"tanh table of layer 'my_tanh' has a 18-bit index.*limited to 16 bits.*input_quantizer"):
        to_verilog(graph)


def test_table_model_synthesizes():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((3,)), QDense(2), QActivation("sigmoid", input_quantizer={"f0": 2})])
    x = rng.standard_normal((64, 3)).astype("float32")
    graph = hgq_fpga.build_ir(calibrated(model, x, rng))
    assert any(isinstance(node, ir.Table) for node in graph.nodes)
    synth = synthesize(to_verilog(graph))
    assert synth.lut > 0
