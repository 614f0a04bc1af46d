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
from dataclasses import asdict, dataclass
from typing import Any

from ..ir import Graph
from .analysis import analyze
from .costs import FEATURES, CostModel, LayerCost

__all__ = ["COUNTS", "FEATURES", "STRATEGIES", "CostModel", "LayerCost", "ResourceReport", "estimate", "estimate_graph"]

STRATEGIES = ("Latency", "distributed_arithmetic")

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
        "solver and options); measured within +5% to +12% of yosys on the design hls4ml writes (design notes), "
        "not yet benchmarked here"),
}
#: the label of a report whose coefficients are not the defaults
FITTED = "the rules' cell counts scaled by a fitted CostModel (fit_cost_model: the reports it was fitted to)"

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

    @property
    def what_it_counts(self) -> str:
        """What this estimate counts and how that was checked (:data:`COUNTS`; :data:`FITTED`
        when the coefficients were fitted)."""
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
        lines = [f"Resource estimate ({self.strategy}, {self.part})", head, "-" * len(head)]
        for r in self.layers:
            ops = ",".join(r.ops)
            lines.append(f"{r.layer[:24]:<24} {ops[:26]:<26} {r.lut:>9.0f} {r.dsp:>5d} {r.carry:>7d} {r.ebops:>10.0f}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<24} {'':<26} {self.lut:>9.0f} {self.dsp:>5d} {self.carry:>7d} {self.ebops:>10.0f}")
        lines.append(textwrap.fill(f"counts: {self.what_it_counts}", width=len(head), subsequent_indent="  "))
        lines.append(NOT_MODELLED)
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
        from ..frontend.keras import build_ir  # a Keras model: built (or taken from the cache) here

        graph = build_ir(model)
    cm = cost_model if cost_model is not None else CostModel.for_part(part)
    return estimate_graph(graph, strategy=strategy, part=part, cost_model=cm)


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


def estimate_graph(graph: Graph, *, strategy: str, part: str, cost_model: CostModel) -> ResourceReport:
    """:func:`estimate` on an IR graph."""
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
