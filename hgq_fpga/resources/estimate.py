"""``estimate(model)``: LUTs, DSPs and EBOPs of the firmware, per layer and in total.

The estimate walks the fixed-point IR (:func:`hgq_fpga.build_ir`) and costs
the circuit of every operation with the rules in
:mod:`hgq_fpga.resources.rules`, scaled by the coefficients of a
:class:`CostModel` (1.0 by default: the rules' own cell counts; refit them to
synthesis results with :func:`hgq_fpga.resources.fit_cost_model`).

Example:
    >>> report = hgq_fpga.estimate(model)                    # doctest: +SKIP
    >>> report.lut, report.dsp, report.ebops                  # doctest: +SKIP
    (3012, 0, 11840)
    >>> print(report)                                         # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..ir import Graph, Node
from ..ir.intmath import im2col
from .circuit import (
    NO_BITS,
    LinearCircuit,
    add_circuits,
    linear_circuits,
    tensor_signals,
    weight_width,
)
from .liveness import needed_bits
from .rules import (
    Signal,
    dsp_count,
    max_luts,
    relu_luts,
    round_luts,
    saturate_luts,
    table_luts,
    width_of,
)

__all__ = ["FEATURES", "STRATEGIES", "CostModel", "LayerCost", "ResourceReport", "estimate", "estimate_graph"]

STRATEGIES = ("Latency", "distributed_arithmetic")

#: The cost categories a report counts, each scaled by one CostModel coefficient.
FEATURES = ("adder", "mux", "table", "multiplier", "da")


@dataclass(frozen=True)
class CostModel:
    """Coefficients that turn rule counts into LUTs, and the DSP rule.

    ``LUT = adder * (adder-bit LUTs) + mux * (ReLU, max, saturation LUTs)
    + table * (ROM LUTs) + multiplier * (LUT multiplier bits) + da * (da4ml cost)``.

    Attributes:
        adder, mux, table, multiplier, da: LUTs per counted cell of each category.
        dsp_min_bits: Latency strategy: a constant multiplication goes to a DSP
            when both operands have at least this many bits
            (:func:`~hgq_fpga.resources.rules.uses_dsp`).
        family: DSP family, ``'DSP48E1'`` (7-series) or ``'DSP48E2'`` (UltraScale+).
    """

    adder: float = 1.0
    mux: float = 1.0
    table: float = 1.0
    multiplier: float = 1.0
    da: float = 1.0
    dsp_min_bits: int = 10
    family: str = "DSP48E1"

    @classmethod
    def for_part(cls, part: str) -> CostModel:
        """Defaults for an FPGA part: DSP48E2 for UltraScale(+)/Versal names, else DSP48E1."""
        p = part.lower()
        e2 = p.startswith(("xcvu", "xcku", "xczu", "xcau", "xcve", "xcvc", "xcvp", "xcv")) and not p.startswith("xc7")
        return cls(family="DSP48E2" if e2 else "DSP48E1")


@dataclass
class LayerCost:
    """Resources of one Keras layer (the IR nodes it became)."""

    layer: str
    ops: list[str]
    lut: float = 0.0
    dsp: int = 0
    carry: int = 0
    ebops: float = 0.0
    counts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0.0))

    def add(self, other: LayerCost) -> None:
        self.ops += [o for o in other.ops if o not in self.ops]
        self.dsp += other.dsp
        self.carry += other.carry
        self.ebops += other.ebops
        for k in FEATURES:
            self.counts[k] += other.counts[k]


@dataclass
class ResourceReport:
    """LUTs, DSPs, carry chains and EBOPs of a model's firmware.

    Attributes:
        layers: one :class:`LayerCost` per Keras layer, in order.
        strategy: hls4ml strategy the estimate is for.
        part: the FPGA part.
        model: the cost coefficients used.
    """

    layers: list[LayerCost]
    strategy: str
    part: str
    model: CostModel

    @property
    def lut(self) -> float:
        """Total LUTs."""
        return float(sum(r.lut for r in self.layers))

    @property
    def dsp(self) -> int:
        """Total DSP slices."""
        return int(sum(r.dsp for r in self.layers))

    @property
    def carry(self) -> int:
        """Total carry-chain primitives (CARRY4 / CARRY8)."""
        return int(sum(r.carry for r in self.layers))

    @property
    def ebops(self) -> float:
        """Effective bit operations: ``sum over multiplications of bits(x) * bits(w)``."""
        return float(sum(r.ebops for r in self.layers))

    def counts(self) -> dict[str, float]:
        """Unscaled cell counts per cost category (the features :func:`fit_cost_model` fits)."""
        return {k: float(sum(r.counts[k] for r in self.layers)) for k in FEATURES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "part": self.part,
            "lut": self.lut,
            "dsp": self.dsp,
            "carry": self.carry,
            "ebops": self.ebops,
            "cost_model": asdict(self.model),
            "layers": [asdict(r) for r in self.layers],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        head = f"{'layer':<24} {'ops':<26} {'LUT':>9} {'DSP':>5} {'CARRY':>7} {'EBOPs':>10}"
        lines = [f"Resource estimate ({self.strategy}, {self.part})", head, "-" * len(head)]
        for r in self.layers:
            ops = ",".join(r.ops)
            lines.append(f"{r.layer[:24]:<24} {ops[:26]:<26} {r.lut:>9.0f} {r.dsp:>5d} {r.carry:>7d} {r.ebops:>10.0f}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<24} {'':<26} {self.lut:>9.0f} {self.dsp:>5d} {self.carry:>7d} {self.ebops:>10.0f}")
        return "\n".join(lines)


def estimate(
    model: Any,
    *,
    strategy: str = "Latency",
    part: str = "xcvu13p-flga2577-2-e",
    cost_model: CostModel | None = None,
    graph: Graph | None = None,
) -> ResourceReport:
    """Estimate the LUTs, DSPs and EBOPs of a calibrated model's firmware.

    Args:
        model: a calibrated Keras model of hgq_fpga layers (or None with ``graph``).
        strategy: ``'Latency'`` (each multiplication by a constant as shifts and
            adds in LUTs, or on a DSP when wide) or ``'distributed_arithmetic'``
            (da4ml's shared-adder graphs; needs the ``da`` extra).
        part: the FPGA part; picks the DSP family.
        cost_model: coefficients; default :meth:`CostModel.for_part`.
        graph: the IR if already built.

    Returns:
        a :class:`ResourceReport`.

    Raises:
        ValueError: unknown strategy, uncalibrated model (from :func:`build_ir`).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"estimate: strategy must be one of {STRATEGIES}. Received: strategy={strategy!r}")
    if graph is None:
        from ..ir import build_ir

        graph = build_ir(model)
    cm = cost_model if cost_model is not None else CostModel.for_part(part)
    return estimate_graph(graph, strategy=strategy, part=part, cost_model=cm)


def estimate_graph(graph: Graph, *, strategy: str, part: str, cost_model: CostModel) -> ResourceReport:
    """:func:`estimate` on an IR graph."""
    walker = _Walker(graph, strategy, cost_model)
    rows: dict[str, LayerCost] = {}
    for node in graph.nodes:
        cost = walker.node(node)
        if cost is None:
            continue
        key = node.layer or node.name
        if key in rows:
            rows[key].add(cost)
        else:
            rows[key] = cost
    cm = cost_model
    for r in rows.values():
        r.lut = float(sum(getattr(cm, k) * r.counts[k] for k in FEATURES))
    return ResourceReport(list(rows.values()), strategy, part, cm)


class _Walker:
    """Signals (ranges and zero low bits) of every tensor, and each node's cost."""

    def __init__(self, graph: Graph, strategy: str, cm: CostModel) -> None:
        self.graph = graph
        self.strategy = strategy
        self.cm = cm
        self.lsb: dict[str, np.ndarray] = {}
        self.circuits: dict[str, list[LinearCircuit]] = {}
        self.need = needed_bits(graph)

    def caps(self, name: str) -> list[int | None] | None:
        """Per element of a tensor: its highest bit used downstream (None: all)."""
        need = self.need.get(name)
        if need is None:
            return None
        return [None if h >= NO_BITS else int(h) for h in need[1].reshape(-1).tolist()]

    def signals(self, name: str) -> list[Signal]:
        return tensor_signals(self.graph, name, self.lsb.get(name))

    def node(self, node: Node) -> LayerCost | None:
        handler = getattr(self, "_" + node.op, None)
        if handler is None:
            raise ValueError(f"estimate: no cost rule for IR op {node.op!r} (node {node.name!r})")
        return handler(node)

    def _row(self, node: Node, **counts: float) -> LayerCost:
        row = LayerCost(node.layer or node.name, [node.op])
        for k, v in counts.items():
            row.counts[k] += float(v)
        return row

    def _out_shape(self, node: Node) -> tuple[int, ...]:
        return self.graph.tensors[node.outputs[0]].shape

    # -- operations ---------------------------------------------------------
    def _input(self, node: Node) -> None:
        return None

    def _quantize(self, node: Node) -> LayerCost:
        g = self.graph
        out = node.outputs[0]
        k, i, f = (np.asarray(node.attrs[a]).reshape(-1) for a in ("k", "i", "f"))
        width = k + i + f
        f_out = g.tensors[out].f
        self.lsb[out] = np.where(width > 0, f_out - f, NO_BITS).reshape(g.tensors[out].shape)
        row = self._row(node)
        src = g.tensors[node.inputs[0]]
        if not src.is_fixed:
            return row  # the network's input: its format is the port
        f_in = src.f
        xs = self.signals(node.inputs[0])
        sat = node.attrs["overflow"] != "WRAP"
        rnd = node.attrs["rounding"] != "TRN"
        lut = carry = 0
        for e, s in enumerate(xs):
            w = int(width[e])
            if w <= 0 or s.constant:
                continue
            shift = f_in - int(f[e])
            if rnd and shift > 0 and s.lsb < shift:
                carry += round_luts(w + 1)[1]
            if sat:
                # bits of the (rounded) input above the output's top bit
                top_out = w - 1
                top_in = s.top - max(shift, 0) + (1 if rnd else 0)
                dropped = top_in - top_out
                if dropped > 0:
                    lut += saturate_luts(w, dropped)
        row.counts["mux"] += lut
        row.carry += carry
        return row

    def _linear(self, node: Node, circuits: list[LinearCircuit]) -> LayerCost:
        out = node.outputs[0]
        self.circuits[out] = circuits
        lsb = [c.tree.signals[c.tree.root].lsb if c.tree.root is not None else NO_BITS for c in circuits]
        self.lsb[out] = np.asarray(lsb, np.int64).reshape(self._out_shape(node))
        row = self._row(node)
        seen: dict[int, tuple[int, int, int]] = {}
        adder = carry = dsp = 0
        for c in circuits:
            key = id(c.tree)
            if key not in seen:
                seen[key] = (c.tree.luts, c.tree.carry,
                             sum(dsp_count(a, b, self.cm.family) for a, b in c.dsp_products))
            a, cc, d = seen[key]
            adder, carry, dsp = adder + a, carry + cc, dsp + d
        row.counts["adder"] += adder
        row.carry += carry
        row.dsp += dsp
        return row

    def _dense(self, node: Node) -> LayerCost:
        if self.strategy == "distributed_arithmetic" and node.layer is not None:
            return self._da(node)
        dsp = self.strategy == "Latency"
        row = self._linear(node, linear_circuits(self.graph, node, self.signals(node.inputs[0]),
                                                 dsp=dsp, dsp_min_bits=self.cm.dsp_min_bits,
                                                 caps=self.caps(node.outputs[0])))
        row.ebops += self._ebops(node)
        return row

    _conv = _dense

    def _scale(self, node: Node) -> LayerCost:
        row = self._linear(node, linear_circuits(self.graph, node, self.signals(node.inputs[0]),
                                                 dsp=self.strategy == "Latency",
                                                 dsp_min_bits=self.cm.dsp_min_bits,
                                                 caps=self.caps(node.outputs[0])))
        xb = self._widths(node.inputs[0])
        sm = np.asarray(node.attrs["scale"][0]).reshape(-1)
        bw = np.array([weight_width(v) for v in sm.tolist()])
        row.ebops += float(np.sum(xb.reshape(-1, len(bw)) * bw))
        return row

    def _avg_pool(self, node: Node) -> LayerCost:
        return self._linear(node, linear_circuits(self.graph, node, self.signals(node.inputs[0]),
                                                  caps=self.caps(node.outputs[0])))

    def _add(self, node: Node) -> LayerCost:
        xs = [self.signals(n) for n in node.inputs]
        return self._linear(node, add_circuits(self.graph, node, xs, self.caps(node.outputs[0])))

    def _relu(self, node: Node) -> LayerCost:
        out = node.outputs[0]
        self.lsb[out] = self.lsb.get(node.inputs[0], np.zeros(self._out_shape(node), np.int64))
        need = self.need.get(out)
        lut = 0
        for e, s in enumerate(self.signals(node.inputs[0])):
            if s.signed and s.hi > 0:
                lo, hi = s.lsb, width_of(0, s.hi) - 1
                if need is not None:  # only the bits a wrap-around quantizer keeps
                    lo, hi = max(lo, int(need[0].flat[e])), min(hi, int(need[1].flat[e]))
                lut += relu_luts(hi - lo + 1)
        return self._row(node, mux=lut)

    def _max_pool(self, node: Node) -> LayerCost:
        g = self.graph
        src = node.inputs[0]
        shape = g.tensors[src].shape
        idx = np.arange(int(np.prod(shape))).reshape((1,) + shape)
        pool = node.attrs["pool"]
        cols = im2col(idx, pool, node.attrs["strides"], (1,) * len(pool), node.attrs["padding"], pad_value=-1)
        patches = np.moveaxis(cols, -2, -1).reshape(-1, cols.shape[-2])
        xs = self.signals(src)
        lut = carry = 0
        lsb = []
        for p in patches:
            live = [xs[q] for q in p.tolist() if q >= 0]
            lsb.append(min(s.lsb for s in live))
            bits = max(s.top + 1 for s in live) - lsb[-1]
            lt, c = max_luts(max(bits, 0))
            lut += lt * (len(live) - 1)
            carry += c * (len(live) - 1)
        self.lsb[node.outputs[0]] = np.asarray(lsb).reshape(self._out_shape(node))
        row = self._row(node, mux=lut)
        row.carry += carry
        return row

    def _reshape(self, node: Node) -> LayerCost:
        src = self.lsb.get(node.inputs[0])
        if src is not None:
            self.lsb[node.outputs[0]] = src.reshape(self._out_shape(node))
        return self._row(node)

    def _concat(self, node: Node) -> LayerCost:
        g = self.graph
        f_out = g.tensors[node.outputs[0]].f
        parts = [self.lsb.get(n, np.zeros(g.tensors[n].shape, np.int64)) + (f_out - g.tensors[n].f)
                 for n in node.inputs]
        axis = node.attrs["axis"]
        self.lsb[node.outputs[0]] = np.concatenate(parts, axis=axis)
        return self._row(node)

    def _table(self, node: Node) -> LayerCost:
        out = self.graph.tensors[node.outputs[0]]
        self.lsb[node.outputs[0]] = np.zeros(out.shape, np.int64)
        tm = np.asarray(node.attrs["table"][0])
        data_bits = width_of(int(tm.min()), int(tm.max())) if tm.size else 0
        n = int(np.prod(out.shape))
        return self._row(node, table=n * table_luts(int(node.attrs["width"]), data_bits))

    def _multiply(self, node: Node) -> LayerCost:
        a, b = (self.signals(n) for n in node.inputs)
        out = node.outputs[0]
        la, lb = (self.lsb.get(n, np.zeros(self.graph.tensors[n].shape, np.int64)) for n in node.inputs)
        self.lsb[out] = la + lb
        lut = dsp = 0
        for sa, sb in zip(a, b):
            wa, wb = width_of(sa.lo, sa.hi) - sa.lsb, width_of(sb.lo, sb.hi) - sb.lsb
            if wa <= 0 or wb <= 0 or sa.constant or sb.constant:
                continue
            if self.strategy == "Latency" and min(wa, wb) >= self.cm.dsp_min_bits:
                dsp += dsp_count(wa, wb, self.cm.family)
            else:
                lut += wa * wb  # array multiplier: one LUT per partial-product bit
        row = self._row(node, multiplier=lut)
        row.dsp += dsp
        row.ebops += float(sum(max(width_of(sa.lo, sa.hi), 0) * max(width_of(sb.lo, sb.hi), 0)
                               for sa, sb in zip(a, b)))
        return row

    # -- helpers -------------------------------------------------------------
    def _widths(self, name: str) -> np.ndarray:
        t = self.graph.tensors[name]
        lo, hi = np.asarray(t.lo).reshape(-1), np.asarray(t.hi).reshape(-1)
        return np.array([width_of(int(a), int(b)) for a, b in zip(lo.tolist(), hi.tolist())]).reshape(t.shape)

    def _ebops(self, node: Node) -> float:
        """``sum over multiplications of bits(x) * bits(w)`` of a dense or conv node."""
        km, _ = node.attrs["kernel"]
        w2 = np.asarray(km).reshape(-1, km.shape[-1])
        bw = np.vectorize(weight_width, otypes=[np.int64])(w2) if w2.size else w2.astype(np.int64)
        bx = self._widths(node.inputs[0]).reshape(-1)
        if node.op == "dense":
            return float(bx @ bw.sum(axis=1))
        shape = self.graph.tensors[node.inputs[0]].shape
        idx = np.arange(bx.size).reshape((1,) + shape)
        cols = im2col(idx, km.shape[:-2], node.attrs["strides"], node.attrs["dilation"],
                      node.attrs["padding"], pad_value=-1).reshape(-1, w2.shape[0])
        bxp = np.where(cols >= 0, np.concatenate([bx, [0]])[cols], 0)
        return float(np.sum(bxp @ bw))

    def _da(self, node: Node) -> LayerCost:
        """Distributed arithmetic: da4ml's adder graph for the constant matrix."""
        try:
            from da4ml.cmvm.api import solve
            from da4ml.cmvm.types import QInterval
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "estimate(strategy='distributed_arithmetic') needs da4ml 0.5.x: "
                "pip install 'hgq_fpga[da]'"
            ) from e
        g = self.graph
        km, kf = node.attrs["kernel"]
        w2 = np.asarray(km, np.float64).reshape(-1, km.shape[-1]) * 2.0**-kf
        src = g.tensors[node.inputs[0]]
        xs = self.signals(node.inputs[0])
        step = 2.0**-src.f
        c = src.shape[-1]
        if node.op == "dense":
            groups = [list(range(len(xs)))]
            n_pos = 1
        else:
            # one solve for the window: each tap's interval is the hull over positions
            groups = [list(range(ch, len(xs), c)) for ch in range(c)]
            n_pos = int(np.prod(g.tensors[node.outputs[0]].shape[:-1]))
        if node.op == "dense":
            qi = [QInterval(s.lo * step, s.hi * step, step * 2.0 ** min(s.lsb, 60)) if not s.constant
                  else QInterval(s.lo * step, s.lo * step, step) for s in xs]
        else:
            hull = []
            for ch in groups:
                lo = min(xs[q].lo for q in ch) * step
                hi = max(xs[q].hi for q in ch) * step
                hull.append(QInterval(lo, hi, step))
            taps = int(np.prod(km.shape[:-2]))
            qi = hull * taps
        sol = solve(w2, qintervals=qi)
        row = self._row(node, da=float(sol.cost) * n_pos)
        row.ebops += self._ebops(node)
        out = node.outputs[0]
        self.lsb[out] = np.zeros(self._out_shape(node), np.int64)
        return row
