"""Replay a :class:`~hgq_fpga.ir.Graph` on integer mantissas."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph, build_ir
from ..ir.intmath import INT64_SAFE, as_mantissa
from ..ir.ops import (
    Mant,
    add_op,
    avg_pool_op,
    concat_op,
    conv_op,
    dense_op,
    max_pool_op,
    quantize_op,
    relu_op,
    reshape_op,
    scale_op,
    multiply_op,
    table_op,
)

__all__ = ["emulate", "emulate_mantissas", "run_graph"]


def _widen(m: Mant, wide: bool) -> Mant:
    return Mant(as_mantissa(m.m, wide=True), m.f) if wide and m.m.dtype != object else m


def _step(node: Any, args: list[Any], wide: bool) -> Mant:
    a = node.attrs
    if node.op == "quantize":
        x = args[0] if not isinstance(args[0], Mant) else _widen(args[0], wide)
        return quantize_op(x, a["k"], a["i"], a["f"], a["rounding"], a["overflow"])
    xs = [_widen(x, wide) for x in args]
    if node.op == "dense":
        return dense_op(xs[0], a["kernel"], a["bias"], a["bound"])
    if node.op == "conv":
        return conv_op(xs[0], a["kernel"], a["bias"], a["strides"], a["padding"], a["dilation"], a["bound"])
    if node.op == "scale":
        return scale_op(xs[0], a["scale"], a["offset"])
    if node.op == "relu":
        return relu_op(xs[0])
    if node.op == "add":
        return add_op(xs)
    if node.op == "concat":
        return concat_op(xs, a["axis"])
    if node.op == "max_pool":
        return max_pool_op(xs[0], a["pool"], a["strides"], a["padding"])
    if node.op == "avg_pool":
        return avg_pool_op(xs[0], a["pool"], a["strides"])
    if node.op == "reshape":
        return reshape_op(xs[0], a["shape"])
    if node.op == "table":
        return table_op(xs[0], a["table"], a["width"], a["f"])
    if node.op == "multiply":
        return multiply_op(xs)
    raise ValueError(f"emulator: unknown IR operation {node.op!r} in node {node.name!r}")


def run_graph(graph: Graph, inputs: list[np.ndarray]) -> list[Mant]:
    """Evaluate ``graph`` on float input arrays (batch first); exact mantissas out."""
    values: dict[str, Any] = dict(zip(graph.inputs, inputs))
    for node in graph.nodes:
        if node.op == "input":
            continue
        out = graph.tensors[node.outputs[0]]
        wide = out.abs_bound >= INT64_SAFE or any(
            graph.tensors[s].abs_bound >= INT64_SAFE for s in node.inputs if graph.tensors[s].is_fixed
        )
        values[node.outputs[0]] = _step(node, [values[s] for s in node.inputs], wide)
    results = []
    for name in graph.outputs:
        v = values[name]
        results.append(v if isinstance(v, Mant) else Mant(np.asarray(v), 0))
    return results


def _prepare(model_or_graph: Any, x: Any) -> tuple[Graph, list[np.ndarray]]:
    if isinstance(model_or_graph, Graph):
        graph = model_or_graph
        arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        arrays = [np.asarray(a, np.float64) for a in arrays]
        for name, a in zip(graph.inputs, arrays):
            want = graph.tensors[name].shape
            if a.shape[1:] != want:
                raise ValueError(f"emulate: input {name!r} must have shape (batch, {want}). Received {a.shape}.")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"emulate: input {name!r} holds NaN/Inf values; clean the data first.")
        return graph, arrays
    from ..calibration import check_inputs

    arrays = [a.astype(np.float64) for a in check_inputs(model_or_graph, x)]
    return build_ir(model_or_graph), arrays


def _use_float(graph: Graph, path: str) -> bool:
    """Whether to run the float64 path: ``"auto"`` takes it when the IR proves it exact."""
    from .floatpath import float_path_is_exact

    if path not in ("auto", "int", "float"):
        raise ValueError(f"emulate: path must be 'auto', 'int' or 'float'. Received: path={path!r}")
    if path == "int":
        return False
    exact = float_path_is_exact(graph)
    if path == "float" and not exact:
        raise ValueError("emulate: this model needs more than 52-bit intermediates; use path='int'")
    return exact


def emulate_mantissas(model_or_graph: Any, x: Any, *, path: str = "auto") -> list[Mant]:
    """Exact integer outputs (``Mant``: mantissas and scale) for each model output.

    Args:
        model_or_graph: a calibrated model or its IR.
        x: inputs.
        path: ``"auto"`` (float64 when the IR proves it exact, else integers),
            ``"int"`` or ``"float"`` (raises if not provably exact).
    """
    from .floatpath import run_float

    graph, arrays = _prepare(model_or_graph, x)
    if not _use_float(graph, path):
        return run_graph(graph, arrays)
    scales = [graph.tensors[name].f for name in graph.outputs]
    return [Mant((v * np.exp2(f)).astype(np.int64), f) for v, f in zip(run_float(graph, arrays), scales)]


def emulate(model_or_graph: Any, x: Any, *, path: str = "auto") -> np.ndarray | list[np.ndarray]:
    """Bit-accurate firmware outputs as exact float64 arrays.

    Args:
        model_or_graph: a calibrated hgq_fpga Keras model, or its IR
            (:func:`hgq_fpga.ir.build_ir`; pass the graph to avoid rebuilding it).
        x: input array, or a list of arrays for several inputs.
        path: ``"auto"``, ``"int"`` or ``"float"``; see :func:`emulate_mantissas`.

    Returns:
        one float64 array per model output (a single array for one output).

    Example:
        >>> model = keras.Sequential([keras.Input((2,)), QDense(1)])
        >>> _ = hgq_fpga.calibrate(model, np.array([[0.5, -0.25]], "float32"))
        >>> emulate(model, np.array([[0.5, -0.25]])).shape
        (1, 1)
    """
    from .floatpath import run_float

    graph, arrays = _prepare(model_or_graph, x)
    if _use_float(graph, path):
        outs = run_float(graph, arrays)  # already exact float64 values
    else:
        outs = [m.values() for m in run_graph(graph, arrays)]
    return outs[0] if len(outs) == 1 else outs
