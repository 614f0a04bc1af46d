"""The cost categories, their LUT coefficients (:class:`CostModel`) and the
cost of one Keras layer (:class:`LayerCost`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FEATURES", "CostModel", "LayerCost"]

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
