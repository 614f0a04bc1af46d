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

import contextlib
import gc
import json
import textwrap
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..ir import Graph
from .analysis import CircuitAnalysis, analyze
from .costs import FEATURES, CostModel, LayerCost

__all__ = ["BACKENDS", "COUNTS", "FEATURES", "STRATEGIES", "CostModel", "LayerCost", "ResourceReport", "estimate", "estimate_graph"]

STRATEGIES = ("Latency", "distributed_arithmetic")
#: what the estimate is of: an hls4ml project (by strategy) or the RTL project of to_rtl
BACKENDS = ("hls4ml", "rtl")

#: what the estimate counts, and how that was checked, per strategy (printed with every report)
COUNTS = {
    "Latency": (
        "the LUTs of the shift-and-add circuit that hgq_fpga.backends.rtl.to_verilog writes (one LUT per adder bit "
        "where both operands vary; DSPs for wide products); equal to yosys synth_xilinx on that Verilog with each "
        "adder kept as an instance, and about 20% above yosys when it is flattened, as synthesis runs by default "
        "(median 22% on 32 random layers, BENCHMARKS.md). What Vivado makes of the hls4ml project is not modelled: "
        "fit the coefficients to your own reports with fit_cost_model"),
    "distributed_arithmetic": (
        "da4ml's LUT cost of the shared-adder graph that hls4ml's distributed_arithmetic pass builds (the same "
        "solver and options); against flattened yosys on da4ml's own Verilog of that graph: median |error| 4.4%, "
        "worst 28% on 30 random layers (BENCHMARKS.md); Vivado's figure for hls4ml's HLS project is not checked "
        "here"),
    "rtl": (
        "the project hgq_fpga.to_rtl writes, as written: the LUTs and CARRYs of its adders (dense and convolution "
        "layers as adder graphs shared across outputs; one LUT per adder bit where both operands vary; no DSPs) and "
        "other logic, its flip-flops (the register bits a later stage reads, the valid chain) and its latency in "
        "cycles; LUTs equal yosys on the project with each adder kept as an instance; flattened yosys maps a "
        "median 0.6% fewer (worst 9.6%, a 3,598-LUT layer; 33 designs); flip-flops equal flattened yosys "
        "(tests/backends/rtl, BENCHMARKS.md)"),
}
#: the label of a report whose coefficients are not the defaults
FITTED = "the rules' cell counts scaled by a fitted CostModel (fit_cost_model: the reports it was fitted to)"

#: what an RTL estimate does not say (printed with it)
RTL_NOT_MODELLED = ("timing is estimated to place registers (a delay model, not a timing report): the project's "
                    "Vivado build reports whether the clock is met")

#: what the estimate does not count (printed with every report)
NOT_MODELLED = ("counts the fully parallel io_parallel design (hls4ml ReuseFactor 1); not modelled: a reuse "
                "factor R (multipliers shared R ways) and io_stream (one pixel at a time, plus line buffers "
                "and FIFOs)")

@dataclass
class ResourceReport:
    """LUTs, DSPs, carry chains and EBOPs of a model's firmware.

    Attributes:
        layers: one :class:`LayerCost` per Keras layer, in order.
        strategy: hls4ml strategy the estimate is for.
        part: the FPGA part.
        model: the cost coefficients used.
        backend: ``"hls4ml"`` or ``"rtl"`` (the :func:`~hgq_fpga.to_rtl` project).
        ff, latency_cycles, clock_period: the RTL project's flip-flops, its latency
            in clock cycles and the clock it was pipelined for (ns); None for hls4ml.
    """

    layers: list[LayerCost]
    strategy: str
    part: str
    model: CostModel
    backend: str = "hls4ml"
    ff: int | None = None
    latency_cycles: int | None = None
    clock_period: float | None = None

    @property
    def latency_ns(self) -> float | None:
        """``latency_cycles * clock_period`` (RTL); None for hls4ml."""
        if self.latency_cycles is None or self.clock_period is None:
            return None
        return self.latency_cycles * self.clock_period

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

    @property
    def what_it_counts(self) -> str:
        """What this estimate counts and how that was checked (:data:`COUNTS`; :data:`FITTED`
        when the coefficients were fitted)."""
        if self.backend == "rtl":
            return FITTED if self.model != rtl_cost_model(self.part) else COUNTS["rtl"]
        if self.model != CostModel.for_part(self.part):  # other coefficients than the part's defaults
            return FITTED
        return COUNTS.get(self.strategy, f"strategy {self.strategy}")

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
            "backend": self.backend,
            "ff": self.ff,
            "latency_cycles": self.latency_cycles,
            "clock_period": self.clock_period,
            "cost_model": asdict(self.model),
            "layers": [asdict(r) for r in self.layers],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __repr__(self) -> str:
        return (f"ResourceReport(lut={self.lut:.0f}, dsp={self.dsp}, ebops={self.ebops:.0f}, "
                f"layers={len(self.layers)}, strategy={self.strategy!r}, part={self.part!r})")

    def _repr_html_(self) -> str:
        """The per-layer table, for notebooks."""
        from ..tables import resource_table

        return resource_table(self)

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``, one row per layer (layer, ops, lut, dsp, carry, ebops).

        Raises:
            ImportError: pandas is not installed.
        """
        from ..tables import RESOURCE_COLUMNS, resource_rows, to_dataframe

        return to_dataframe(RESOURCE_COLUMNS, resource_rows(self))

    def __str__(self) -> str:
        head = f"{'layer':<24} {'ops':<26} {'LUT':>9} {'DSP':>5} {'CARRY':>7} {'EBOPs':>10}"
        what = "RTL project" if self.backend == "rtl" else self.strategy
        lines = [f"Resource estimate ({what}, {self.part})", head, "-" * len(head)]
        for r in self.layers:
            ops = ",".join(r.ops)
            lines.append(f"{r.layer[:24]:<24} {ops[:26]:<26} {r.lut:>9.0f} {r.dsp:>5d} {r.carry:>7d} {r.ebops:>10.0f}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<24} {'':<26} {self.lut:>9.0f} {self.dsp:>5d} {self.carry:>7d} {self.ebops:>10.0f}")
        if self.backend == "rtl":
            lines.append(f"latency: {self.latency_cycles} cycles ({self.latency_ns:g} ns at a {self.clock_period:g} ns "
                         f"clock); flip-flops: {self.ff}")
        lines.append(textwrap.fill(f"counts: {self.what_it_counts}", width=len(head), subsequent_indent="  "))
        lines.append(NOT_MODELLED if self.backend != "rtl" else RTL_NOT_MODELLED)
        return "\n".join(lines)


def estimate(
    model: Any,
    *,
    strategy: str = "Latency",
    part: str = "xcvu13p-flga2577-2-e",
    cost_model: CostModel | None = None,
    graph: Graph | None = None,
    backend: str = "hls4ml",
    clock_period: float = 5.0,
    latency_cutoff: float | None = None,
    prefer: str = "latency",
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
        backend: ``'hls4ml'`` (the project of :func:`~hgq_fpga.to_hls4ml`) or ``'rtl'``
            (the project of :func:`~hgq_fpga.to_rtl` with ``clock_period`` and
            ``latency_cutoff``: its LUTs, CARRYs, flip-flops and latency in cycles;
            every product in LUTs).
        clock_period, latency_cutoff, prefer: ``backend='rtl'``: as for :func:`~hgq_fpga.to_rtl`.

    Returns:
        a :class:`ResourceReport`.

    Raises:
        ValueError: unknown strategy or backend, uncalibrated model (from :func:`build_ir`).

    Example:
        >>> r = hgq_fpga.estimate(model, backend="rtl", clock_period=4.0)  # doctest: +SKIP
        >>> r.lut, r.ff, r.latency_cycles                                   # doctest: +SKIP
        (3012.0, 611, 2)
    """
    _check_options(strategy, backend, prefer)
    if graph is None:
        from ..frontend.keras import build_ir  # a Keras model: built (or taken from the cache) here

        graph = build_ir(model)
    if backend == "rtl":
        return estimate_rtl(graph, part=part, cost_model=cost_model, clock_period=clock_period,
                            latency_cutoff=latency_cutoff, prefer=prefer)
    cm = cost_model if cost_model is not None else CostModel.for_part(part)
    return estimate_graph(graph, strategy=strategy, part=part, cost_model=cm)


def _check_options(strategy: str, backend: str, prefer: str) -> None:
    """Refuse a bad ``strategy``, ``backend`` or ``prefer`` of :func:`estimate`, or a mix of them."""
    from .shared import check_prefer

    if strategy not in STRATEGIES:
        raise ValueError(f"estimate: strategy must be one of {STRATEGIES}. Received: strategy={strategy!r}")
    if backend not in BACKENDS:
        raise ValueError(f"estimate: backend must be one of {BACKENDS}. Received: backend={backend!r}")
    if backend == "rtl" and strategy != "Latency":
        raise ValueError(f"estimate: backend='rtl' writes its own adder trees; strategy={strategy!r} is an hls4ml "
                         "strategy (leave strategy at 'Latency')")
    check_prefer(prefer, "estimate", backend)


def rtl_cost_model(part: str) -> CostModel:
    """The part's coefficients with every product in LUTs, as :func:`~hgq_fpga.to_rtl` writes them."""
    return replace(CostModel.for_part(part), dsp_min_bits=1 << 30)


def estimate_rtl(graph: Graph, *, part: str, cost_model: CostModel | None, clock_period: float,
                 latency_cutoff: float | None, prefer: str = "latency") -> ResourceReport:
    """:func:`estimate` with ``backend='rtl'``: the cell counts of the circuit, and the
    flip-flops and latency of its pipeline as :func:`~hgq_fpga.to_rtl` places it."""
    from ..backends.rtl import pipelined, to_verilog

    cm = replace(cost_model, dsp_min_bits=1 << 30) if cost_model is not None else rtl_cost_model(part)
    with _cyclic_gc_paused():
        verilog = to_verilog(graph, shared=True, prefer=prefer)
    report = estimate_graph(graph, strategy="Latency", part=part, cost_model=cm, analysis=verilog.analysis)
    module = pipelined(verilog, clock_period=clock_period, latency_cutoff=latency_cutoff)
    report.backend, report.ff, report.latency_cycles = "rtl", module.ff, module.latency
    report.clock_period = float(clock_period)
    return report


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (reference counting still frees memory).

    The analysis allocates a few small objects per multiplication (signals,
    adders) and keeps them all; each automatic collection walks every one of
    them again, which made half of the estimate's time and grew with the model
    (benchmarks/estimate_scaling.py: 29 -> 17 us per multiplication at 84k).
    Whatever cycles the block leaves are collected once the collector is back.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def estimate_graph(graph: Graph, *, strategy: str, part: str, cost_model: CostModel,
                   analysis: CircuitAnalysis | None = None) -> ResourceReport:
    """:func:`estimate` on an IR graph (``analysis``: already made, with ``strategy``)."""
    if analysis is None:
        with _cyclic_gc_paused():
            analysis = analyze(graph, strategy=strategy, cost_model=cost_model)
    rows: dict[str, LayerCost] = {}
    for node in graph.nodes:
        cost = analysis.costs[node.name]
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
