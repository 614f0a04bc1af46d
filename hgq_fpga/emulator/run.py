"""Replay a :class:`~hgq_fpga.ir.Graph` on integer mantissas."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph, Quantize
from ..ir.exact import Mant
from ..ir.intmath import INT64_SAFE, as_mantissa
from .threads import blas_threads


def _widen(m: Mant, wide: bool) -> Mant:
    return Mant(as_mantissa(m.m, wide=True), m.f) if wide and m.m.dtype != object else m


def _step(node: Any, args: list[Any], wide: bool) -> Mant:
    """One operation on exact mantissas (a float input is quantized as floats)."""
    if isinstance(node, Quantize) and not isinstance(args[0], Mant):
        return node.evaluate(args)
    return node.evaluate([_widen(x, wide) for x in args])


def run_graph(graph: Graph, inputs: list[np.ndarray]) -> list[Mant]:
    """Evaluate ``graph`` on float input arrays (batch first); exact mantissas out."""
    values: dict[str, Any] = dict(zip(graph.inputs, inputs))
    for node in graph.nodes:
        if not node.inputs:
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
    # a Keras model: the one place the emulator reaches the Keras side, on demand
    from ..calibration import check_inputs
    from ..frontend.keras import build_ir

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


def emulate_mantissas(model_or_graph: Any, x: Any, *, path: str = "auto", threads: int | None = 1) -> list[Mant]:
    """Exact integer outputs (``Mant``: mantissas and scale) for each model output.

    Args:
        model_or_graph: a calibrated model or its IR.
        x: inputs.
        path: ``"auto"`` (float64 when the IR proves it exact, else integers),
            ``"int"`` or ``"float"`` (raises if not provably exact).
        threads: BLAS threads for the matrix products (default 1, see
            :mod:`hgq_fpga.emulator.threads`; ``None`` leaves BLAS as it is).
    """
    from .floatpath import run_float

    graph, arrays = _prepare(model_or_graph, x)
    with blas_threads(threads):
        if not _use_float(graph, path):
            return run_graph(graph, arrays)
        outs = run_float(graph, arrays)
    scales = [graph.tensors[name].f for name in graph.outputs]
    return [Mant((v * np.exp2(f)).astype(np.int64), f) for v, f in zip(outs, scales)]


def emulate(
    model_or_graph: Any, x: Any, *, path: str = "auto", threads: int | None = 1
) -> np.ndarray | list[np.ndarray]:
    """Bit-accurate firmware outputs as exact float64 arrays.

    Args:
        model_or_graph: a calibrated hgq_fpga Keras model, or its IR
            (:func:`hgq_fpga.build_ir`).
        x: input array, or a list of arrays for several inputs.
        path: ``"auto"``, ``"int"`` or ``"float"``; see :func:`emulate_mantissas`.
        threads: BLAS threads (default 1); see :func:`emulate_mantissas`.

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
    with blas_threads(threads):
        if _use_float(graph, path):
            outs = run_float(graph, arrays)  # already exact float64 values
        else:
            outs = [m.values() for m in run_graph(graph, arrays)]
    return outs[0] if len(outs) == 1 else outs
