"""Apply the type rules of :mod:`~hgq_fpga.backends.hls4ml.typecheck` to every variable of an hls4ml model.

Each hls4ml layer that survives hls4ml's passes is matched to the IR node it
came from (``origin``); a quantizer hls4ml fused away has no layer of its own,
so the variable before it is checked against it. The walk follows the IR, not
hls4ml's own account of the types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ...ir import Graph, ops as ir
from .typecheck import (
    UNBOUNDED,
    ApType,
    Domain,
    TypeProblem,
    agrees,
    grids,
    holds,
    overflows as _overflows,
    refines,
    value_grid,
)

__all__ = ["check_types", "format_problems", "TRANSPARENT"]

#: readers that commute with truncation and with a type that does not overflow
TRANSPARENT = (ir.Relu, ir.MaxPool, ir.Reshape, ir.Concat)


@dataclass
class Walk:
    """What the check knows while it visits hls4ml's layers in order."""

    hls: Any
    graph: Graph
    origin: dict[str, str]
    grid: dict[str, np.ndarray] = field(default_factory=dict)
    nodes: dict[str, ir.Op] = field(default_factory=dict)
    last: dict[str, str] = field(default_factory=dict)  # IR node -> its last hls layer
    held: dict[str, Domain] = field(default_factory=dict)  # hls layer -> values its variable holds
    problems: list[TypeProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.grid = grids(self.graph)
        self.nodes = {n.name: n for n in self.graph.nodes}
        for hname, nname in self.origin.items():
            self.last[nname] = hname

    def present(self, node: ir.Op) -> bool:
        return self.last.get(node.name) in self.hls.graph

    def domain(self, tensor: str, where: np.ndarray | None = None) -> Domain:
        if tensor in self.graph.inputs:
            return Domain(None, None, UNBOUNDED, doubles=True)
        return Domain.of(self.graph.tensors[tensor], self.grid[tensor], where)

    def problem(self, node: ir.Op, variable: str, t: Any, why: str) -> None:
        self.problems.append(TypeProblem(node.layer, variable, str(t), why))


def _formats(k: Any, i: Any, f: Any, shape: tuple[int, ...], rounding: str, overflow: str
             ) -> list[tuple[ApType, np.ndarray]]:
    """Per-element quantizer formats grouped: ``[(type, elements having it)]``."""
    k, i, f = (np.broadcast_to(np.asarray(v), shape) for v in (k, i, f))
    out = []
    for kk, ii, ff in sorted(set(zip(k.ravel().tolist(), i.ravel().tolist(), f.ravel().tolist()))):
        where = (k == kk) & (i == ii) & (f == ff)
        out.append((ApType.of_quantizer(kk, ii, ff, rounding, overflow), where))
    return out


def _ir_formats(q: ir.Quantize, shape: tuple[int, ...]) -> list[tuple[ApType, np.ndarray]]:
    return _formats(q.k, q.i, q.f, shape, q.rounding, q.overflow)


def _mask_formats(layer: Any, shape: tuple[int, ...]) -> list[tuple[ApType, np.ndarray]]:
    """The per-element casts an hls4ml quantizer layer's C++ performs (its mask after narrowing)."""
    k, b, i = (np.asarray(v)[0] for v in layer.mask_kbi)
    k, b, i = (np.broadcast_to(v, shape) for v in (k, b, i))
    return _formats(k, i - k, b - i, shape, str(layer.RND), str(layer.SAT))


def _fused_chain(w: Walk, tensor: str) -> tuple[list[ir.Op], str]:
    """IR quantizers and reshapes after ``tensor`` whose hls4ml layers were removed (fused away)."""
    chain = []
    while True:
        consumers = w.graph.consumers(tensor)
        if len(consumers) != 1 or not isinstance(consumers[0], (ir.Quantize, ir.Reshape)) or w.present(consumers[0]):
            return chain, tensor
        chain.append(consumers[0])
        tensor = consumers[0].outputs[0]


def _check_fused(w: Walk, node: ir.Op, t: ApType, pre: str, chain: list[ir.Op]) -> None:
    """``t`` is the fused quantizers: it must give what they give on the values before them."""
    quantizers = [q for q in chain if isinstance(q, ir.Quantize)]
    first, rest = quantizers[0], quantizers[1:]
    shape = w.graph.tensors[first.outputs[0]].shape
    pre_grid = w.grid[pre].reshape(shape) if pre not in w.graph.inputs else None
    for q_type, where in _ir_formats(first, shape):
        if pre_grid is None:
            d = Domain(None, None, UNBOUNDED, doubles=True)
        else:
            d = Domain.of(_reshaped(w.graph.tensors[pre], shape), pre_grid, where)
        if not agrees(t, q_type, d) and not _same_for_readers(w, node, t, q_type, chain[-1].outputs[0], d):
            w.problem(node, "the type that replaces (fuses) the quantizer of layer "
                      f"{first.layer!r}", t, f"does not give what that quantizer ({q_type}) gives on "
                      f"{_show(d)}")
            return
    for q in rest:
        src = q.inputs[0]
        for q_type, where in _ir_formats(q, w.graph.tensors[src].shape):
            if not holds(q_type, w.domain(src, where)):
                w.problem(q, f"the quantizer of layer {q.layer!r}, fused by hls4ml with the one of layer "
                          f"{first.layer!r},", q_type, "changes values there; one type cannot do both")
                return


def _same_for_readers(w: Walk, node: ir.Op, t: ApType, q: ApType, tensor: str, d: Domain) -> bool:
    """``t`` differs from the fused quantizer ``q``, but every reader of ``tensor`` is a quantizer that
    both refine on ``d``: ``R(t(x)) = R(x) = R(q(x))`` (hls4ml narrows a quantizer to what the next
    one reads: TRN to 2 bits, then TRN to 0, is TRN to 0)."""
    before = len(w.problems)
    for candidate in (t, q):
        _check_readers(w, node, candidate, tensor, d, "", fixed=True)
    ok = len(w.problems) == before
    del w.problems[before:]  # a trial: its findings are not the model's problems
    return ok


def _reshaped(t: Any, shape: tuple[int, ...]) -> Any:
    from dataclasses import replace

    if t.lo is None:
        return t
    return replace(t, shape=shape, lo=np.reshape(t.lo, shape), hi=np.reshape(t.hi, shape))


def _show(d: Domain) -> str:
    if not d.bounded:
        return "any input value"
    return f"values in [{float(d.lo)}, {float(d.hi)}] on a grid of 2**-{d.grid}"  # type: ignore[arg-type]


def _passed_on(w: Walk, reader: ir.Op, tensor: str, own: np.ndarray | None) -> np.ndarray | None:
    """Which elements of ``reader``'s output come from ``tensor``'s elements ``own`` (None: all)."""
    out_shape = w.graph.tensors[reader.outputs[0]].shape
    if isinstance(reader, ir.Concat):
        parts = [np.full(w.graph.tensors[s].shape, s == tensor) for s in reader.inputs]
        if own is not None:
            parts = [own if s == tensor else p for s, p in zip(reader.inputs, parts)]
        return np.concatenate(parts, axis=reader.axis)
    if own is None or isinstance(reader, ir.MaxPool):
        return None
    return own.reshape(out_shape)


def _ignored(w: Walk, tensor: str) -> bool:
    """Every reader of ``tensor`` is a quantizer layer that writes 0 whatever it reads."""
    readers = w.graph.consumers(tensor)
    return bool(readers) and tensor not in w.graph.outputs and all(
        isinstance(r, ir.Quantize) and w.present(r)
        and all(not m.width for m, _ in _mask_formats(w.hls.graph[w.last[r.name]], w.graph.tensors[tensor].shape))
        for r in readers)


def _check_readers(w: Walk, node: ir.Op, t: ApType, tensor: str, d: Domain, what: str,
                   own: np.ndarray | None = None, moved: bool = True, fixed: bool = False) -> None:
    """The variable of type ``t`` holds ``tensor``'s elements ``own`` (values in ``d``): does every
    reader get its value? ``moved``: ``tensor`` is this variable itself (reached through reshapes
    and concatenations only), not the output of a ReLU or max pool computed from it."""
    if tensor in w.graph.outputs and not holds(t, d):
        w.problem(node, what, t, f"cannot hold the model output's {_show(d)}")
        return
    shape = w.graph.tensors[tensor].shape
    for reader in w.graph.consumers(tensor):
        if isinstance(reader, ir.Quantize) and w.present(reader):
            layer = w.hls.graph[w.last[reader.name]]
            for m, where in _mask_formats(layer, shape):
                where = where if own is None else where & own
                dm = w.domain(tensor, where) if d.bounded and not fixed else d
                if np.any(where) and not refines(t, m, dm):
                    w.problem(node, what, t, f"changes {_show(dm)} that the quantizer of layer "
                              f"{reader.layer!r} ({m}) reads")
                    return
        elif isinstance(reader, ir.Quantize):
            # fused away: into this very type behind reshapes (it must be the quantizer), or into the
            # type of a ReLU / max pool after it (which must then see what the quantizer reads)
            for q, where in _ir_formats(reader, shape):
                where = where if own is None else where & own
                dq = w.domain(tensor, where) if d.bounded and not fixed else d
                if np.any(where) and not (agrees(t, q, dq) if moved else refines(t, q, dq)):
                    w.problem(node, what, t, f"replaces the quantizer of layer {reader.layer!r} ({q}) but does "
                              f"not give what it gives on {_show(dq)}")
                    return
        elif isinstance(reader, ir.Table):
            if not holds(t, d) or (t.width, t.f) != (reader.width, reader.f):
                w.problem(node, what, t, f"is not the index format of the lookup table of layer {reader.layer!r} "
                          f"(width {reader.width}, {reader.f} fractional bits) holding {_show(d)}")
                return
        elif isinstance(reader, TRANSPARENT) and not holds(t, d):
            # max(T(a), T(b)) = T(max(a, b)) and relu(T(x)) = T(relu(x)) when T does not overflow: what
            # the readers after it need from T is what they need from its output
            moves = isinstance(reader, (ir.Concat, ir.Reshape))  # moves values: commutes with any cast
            if not moves and _overflows(t, d) and not _ignored(w, reader.outputs[0]):
                w.problem(node, what, t, f"overflows on {_show(d)}, which layer {reader.layer!r} reads")
                return
            out, passed = reader.outputs[0], _passed_on(w, reader, tensor, own)
            d_out = d if moves or fixed else w.domain(out, passed)
            _check_readers(w, node, t, out, d_out, what, passed, moved and moves, fixed)
        elif not holds(t, d):
            w.problem(node, what, t, f"cannot hold {_show(d)}, which layer {reader.layer!r} reads as they are")
            return


def _check_constants(w: Walk, node: ir.Op, layer: Any) -> None:
    """Weights, biases, scales and tables: every value held exactly."""
    for var in layer.get_weights():
        data = np.asarray(var.data, np.float64)
        precision = getattr(var.type, "precision", None)
        if precision is None or not data.size or not hasattr(precision, "width"):
            continue
        t = ApType.of(precision)
        lo, hi = Fraction(float(np.min(data))), Fraction(float(np.max(data)))
        g = int(np.max(value_grid(data), initial=-(10**6)))
        if not holds(t, Domain(lo, hi, g)) and not (lo == hi == 0):
            w.problem(node, f"the constant {var.name!r}", t, f"cannot hold its values in [{float(lo)}, {float(hi)}] "
                      f"with {g} fractional bits")


def _check_accumulator(w: Walk, node: ir.Op, layer: Any, out: ApType, d: Domain) -> None:
    """A dense/conv sum: exact modulo its width (it wraps), so enough fractional and integer bits."""
    acc = layer.attributes.get("accum_t")
    if acc is None or not isinstance(node, (ir.Dense, ir.Conv)):
        return
    a = ApType.of(acc.precision)
    exact = holds(a, d) or (a.overflow == "WRAP" and d.grid <= a.f and out.overflow == "WRAP"
                             and out.integer <= a.integer and out.f <= a.f)
    if not exact:
        w.problem(node, "the accumulator (accum_t)", a, f"cannot sum {_show(d)} exactly")


def _visit(w: Walk, hname: str, layer: Any, node: ir.Op) -> None:
    if isinstance(node, ir.Reshape):  # in place in io_parallel; in io_stream a repacking of the same type
        _check_added(w, hname, layer, w.domain(node.outputs[0]))
        return
    t = ApType.of(layer.get_output_variable().type.precision)
    what = f"the result (hls4ml variable of {hname})"
    _check_constants(w, node, layer)
    if w.last[node.name] != hname:  # a partial merge of three or more inputs: read as it is by the next
        ins = [w.held[s] for s in layer.inputs]
        d = ins[0]
        for other in ins[1:]:
            d = _combine(node, d, other)
        w.held[hname] = d
        if not holds(t, d):
            w.problem(node, what, t, f"cannot hold the partial {node.op} {_show(d)}")
        return
    out = node.outputs[0]
    d = w.domain(out)
    w.held[hname] = d
    if isinstance(node, ir.Quantize):
        _check_mask(w, hname, layer, node)
    _check_accumulator(w, node, layer, t, d)
    chain, last = _fused_chain(w, out)
    if any(isinstance(q, ir.Quantize) for q in chain):
        _check_fused(w, node, t, out, chain)
        return
    _check_readers(w, node, t, last, d if not chain else w.domain(last), what)


def _check_mask(w: Walk, hname: str, layer: Any, node: ir.Quantize) -> None:
    """Each element's cast in the quantizer layer's C++ (hls4ml's narrowed mask) against the model's."""
    src = node.inputs[0]
    shape = w.graph.tensors[src].shape
    for m, wm in _mask_formats(layer, shape):
        for q, wq in _ir_formats(node, shape):
            both = wm & wq
            if np.any(both) and not agrees(m, q, w.domain(src, both)):
                w.problem(node, f"the quantizer's cast (narrowed by hls4ml) at {hname}", m,
                          f"does not give what the model's quantizer ({q}) gives on {_show(w.domain(src, both))}")
                return


def _combine(node: ir.Op, a: Domain, b: Domain) -> Domain:
    if not (a.bounded and b.bounded) or not isinstance(node, ir.Add):
        return a.union(b)
    return Domain(a.lo + b.lo, a.hi + b.hi, max(a.grid, b.grid))  # type: ignore[operator]


#: layers hls4ml adds in io_stream that only move values (or add zeros): zero padding before a "same"
#: convolution, the copy of a tensor read twice, the repacking of a reshape
MOVERS = ("ZeroPadding1D", "ZeroPadding2D", "Clone", "Repack", "Reshape")


def _check_added(w: Walk, hname: str, layer: Any, moved: Domain | None = None) -> None:
    """A layer that only moves values (hls4ml's own, or a reshape) must pass them on unchanged: every
    output of its input's very type. ``moved``: the values, where the IR knows them."""
    kind = next((m for m in MOVERS if m in type(layer).__name__), None)
    if kind is None:
        w.problems.append(TypeProblem(None, f"hls4ml's own layer {hname} ({type(layer).__name__})", "?",
                                      "was added by hls4ml; hgq_fpga cannot check what it computes"))
        return
    src = ApType.of(layer.get_input_variable().type.precision)
    for out in layer.outputs:
        t = ApType.of(layer.get_output_variable(out).type.precision)
        if t != src:
            w.problems.append(TypeProblem(None, f"hls4ml's own layer {hname} ({type(layer).__name__})", str(t),
                                          f"changes the type of the values it passes on ({src})"))
            return
    w.held[hname] = w.held.get(layer.inputs[0], moved or Domain(None, None, UNBOUNDED, doubles=True))


def check_types(hls_model: Any, graph: Graph, origin: dict[str, str]) -> list[TypeProblem]:
    """Every problem with the types hls4ml chose for ``hls_model`` (empty: the project is exact).

    Args:
        hls_model: the hls4ml model after its passes (before writing).
        graph: the IR it was made from.
        origin: ``{hls4ml layer name: IR node name}`` from
            :func:`~hgq_fpga.backends.hls4ml.layers.graph_to_layer_list`.
    """
    w = Walk(hls_model, graph, origin)
    for hname, layer in hls_model.graph.items():
        node = w.nodes.get(origin.get(hname, ""))
        if node is None:
            _check_added(w, hname, layer)
            continue
        _visit(w, hname, layer, node)
    return w.problems


def format_problems(problems: list[TypeProblem], limit: int = 8) -> str:
    """A readable list (the first ``limit``)."""
    lines = [f"  - {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  - ... and {len(problems) - limit} more")
    return "\n".join(lines)
