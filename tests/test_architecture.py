"""The package's structure: dependencies one way, private names quarantined,
small pieces, and extension points that are real (a toy operation added here
reaches every stage)."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hgq_fpga"


#: private names of the standard library that are part of its documented usage
STDLIB_PRIVATE = {"_SubParsersAction"}  # argparse: the type of add_subparsers()'s result


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_ir_and_emulator_import_without_keras():
    code = ("import sys, hgq_fpga.ir, hgq_fpga.emulator, hgq_fpga.fixed; "
            "print(' '.join(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _defined_names() -> set[str]:
    """Every name hgq_fpga itself defines (functions, classes, attributes it assigns)."""
    names: set[str] = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("__setattr__", "setattr"):
                names.add(str(node.args[1].value))  # object.__setattr__(self, "_name", ...)
    return names


def test_private_names_of_other_libraries_only_in_compat():
    """An attribute ``obj._x`` whose ``_x`` hgq_fpga does not define itself is a private
    name of another library (Keras, hls4ml): only ``hgq_fpga/compat`` may use one."""
    ours = _defined_names()
    offenders = []
    for path in _modules():
        if "compat" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                attr = node.attr
                if attr.startswith("_") and not attr.startswith("__") and attr not in ours | STDLIB_PRIVATE:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{attr}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if mod and (mod.startswith("keras.src") or ".src." in mod):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} import {mod}")
    assert not offenders, "\n".join(offenders)


def test_private_name_check_can_fail(tmp_path):
    """The check above sees a foreign private attribute (guards against a vacuous pass)."""
    tree = ast.parse("model._nodes_by_depth")
    attrs = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
    assert attrs == ["_nodes_by_depth"] and "_nodes_by_depth" not in _defined_names()


def test_layers_never_import_resources_or_backends():
    for path in (PACKAGE / "layers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("resources", "backends", "ir", "frontend")), (path, node.module)


def test_ir_imports_only_the_numeric_core():
    for path in (PACKAGE / "ir").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert node.module == "fixed" or node.module.startswith("fixed."), (path, node.module)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not (mod or "").startswith(("keras", "tensorflow", "hls4ml")), (path, mod)


def test_modules_and_functions_are_small():
    big = []
    for path in _modules():
        text = path.read_text()
        if len(text.splitlines()) >= 500:
            big.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n >= 60:
                    big.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {n} lines")
    assert not big, "\n".join(big)


# -- a toy operation, added in this file only ----------------------------------------------------

from hgq_fpga.ir import Constant, Dense, GraphBuilder, Mant, Op, Quantize, TensorInfo, bounds  # noqa: E402


@dataclass(eq=False, kw_only=True)
class Abs(Op):
    """``|x|`` element-wise: the toy operation of the extension test."""

    kind: ClassVar[str] = "abs"

    def evaluate(self, xs: list[Mant]) -> Mant:
        return Mant(np.abs(xs[0].m), xs[0].f)

    def infer(self, ins: list[TensorInfo], shape: tuple[int, ...]) -> TensorInfo:
        t = ins[0]
        lo, hi = np.asarray(t.lo), np.asarray(t.hi)
        low = np.where((lo <= 0) & (hi >= 0), 0, np.minimum(np.abs(lo), np.abs(hi)))
        high = np.maximum(np.abs(lo), np.abs(hi))
        return bounds.tensor(shape, Mant(low[None], t.f), Mant(high[None], t.f))


def _toy_graph():
    """input -> quantize (signed, 3 integer and 2 fractional bits, WRAP) -> abs -> dense."""
    b = GraphBuilder()
    x = b.input("x", (3,))
    shape = (3,)
    q = b.add(Quantize(k=np.ones(shape, int), i=np.full(shape, 3), f=np.full(shape, 2)), [x], "q")
    a = b.add(Abs(), [q], "toy")
    kernel = Constant.from_values(np.array([[0.5, -1.25], [2.0, 0.0], [-0.75, 3.5]]))
    y = b.add(Dense(kernel=kernel), [a], "d", (2,))
    return b.graph([x], [y])


def _toy_inputs():
    rng = np.random.default_rng(0)
    x = rng.uniform(-12.0, 12.0, (200, 3))  # beyond the range: WRAP
    x[:3] = [[-8.0, 7.75, 0.125], [-0.25, -0.125, 8.0], [0.375, -7.875, -8.25]]  # edges and ties
    return x


def _reference(x: np.ndarray) -> np.ndarray:
    from hgq_fpga.fixed import quantize

    q = quantize(x, 1, 3, 2, "TRN", "WRAP")
    return np.abs(q) @ np.array([[0.5, -1.25], [2.0, 0.0], [-0.75, 3.5]])


@pytest.fixture
def toy_rules():
    """Register the toy op's rules with the float path, the cost model and the RTL backend."""
    from hgq_fpga.backends.rtl import RTL_RULES
    from hgq_fpga.emulator.floatpath import FLOAT_RULES
    from hgq_fpga.resources import COST
    from hgq_fpga.resources.rules import relu_luts, width_of

    @FLOAT_RULES.register(Abs)
    def _float(op, xs):
        return np.abs(xs[0])

    @COST.register(Abs)
    def _cost(op, a):
        a.lsb[op.outputs[0]] = a.lsb.get(op.inputs[0], np.zeros(a.out_shape(op), np.int64))
        lut = sum(relu_luts(width_of(s.lo, s.hi)) for s in a.signals(op.inputs[0]) if s.signed)
        return a.row(op, mux=lut)

    @RTL_RULES.register(Abs)
    def _verilog(op, wr):
        outs = wr.signals(op.outputs[0])
        wr.wires[op.outputs[0]] = [wr.wire(o, f"({x} < 0) ? -{x} : {x}")
                                   for x, o in zip(wr.wires[op.inputs[0]], outs)]

    yield
    for registry in (FLOAT_RULES, COST, RTL_RULES):
        registry.unregister(Abs)


def test_toy_op_is_refused_clearly_by_each_stage_without_its_rule():
    from hgq_fpga.backends.hls4ml import UnsupportedForHls4ml, graph_to_layer_list
    from hgq_fpga.backends.rtl import UnsupportedForVerilog, to_verilog
    from hgq_fpga.emulator import emulate
    from hgq_fpga.ir import UnsupportedOp
    from hgq_fpga.resources import estimate

    graph = _toy_graph()
    x = _toy_inputs()
    assert np.array_equal(emulate(graph, x), _reference(x))  # the op's own evaluate: always there
    with pytest.raises(UnsupportedOp, match=r"estimate: IR operation Abs \(node 'toy_abs', layer 'toy'\)"):
        estimate(None, graph=graph)
    with pytest.raises(UnsupportedForVerilog, match="IR operation Abs"):
        to_verilog(graph)
    with pytest.raises(UnsupportedForHls4ml, match="to_hls4ml: IR operation Abs.*Supported: .*Dense"):
        graph_to_layer_list(graph)


def test_toy_op_reaches_every_stage_once_registered(toy_rules):
    from hgq_fpga.backends.rtl import simulate_model, to_verilog
    from hgq_fpga.emulator import emulate, emulate_mantissas
    from hgq_fpga.emulator.floatpath import float_path_is_exact
    from hgq_fpga.resources import estimate

    graph = _toy_graph()
    x = _toy_inputs()
    want = _reference(x)
    assert float_path_is_exact(graph)
    assert np.array_equal(emulate(graph, x, path="float"), want)
    assert np.array_equal(emulate(graph, x, path="int"), want)
    report = estimate(None, graph=graph)
    toy = next(r for r in report.layers if r.layer == "toy")
    assert toy.ops == ["abs"] and toy.counts["mux"] > 0
    module = to_verilog(graph)
    assert "< 0) ? -" in module.source
    pytest.importorskip("shutil").which("iverilog") or pytest.skip("iverilog not installed")
    out = emulate_mantissas(graph, x)[0]
    got = simulate_model(graph, x, module=module)[0]
    assert np.array_equal(np.asarray(got).astype(np.int64), np.asarray(out.m, np.int64))
