"""FPGA devices: the resources of a part, for utilization as a share of the chip.

A part number (``xcvu13p-flga2577-2-e``) names a device (``xcvu13p``), a package
and a speed grade; only the device sets the resource totals. The table holds
AMD/Xilinx devices that trigger and detector projects use and that hls4ml's
examples name (figures from AMD's product tables: LUTs, flip-flops, DSP slices,
36 Kb block RAMs).

Utilization is ``100 * used / available`` per resource::

    >>> dev = device("xcvu13p-flga2577-2-e")
    >>> dev.name, dev.lut
    ('xcvu13p', 1728000)
    >>> round(dev.utilization(lut=17280)["lut"], 2)
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEVICES", "Device", "device", "known_devices"]


@dataclass(frozen=True)
class Device:
    """The resources of one FPGA device."""

    name: str
    family: str
    lut: int
    ff: int
    dsp: int
    bram36: int

    def utilization(self, **used: float) -> dict[str, float]:
        """Percent of the device per resource given, e.g. ``utilization(lut=1e4, dsp=12)``.

        Raises:
            ValueError: a resource the device table does not hold.
        """
        out = {}
        for name, value in used.items():
            total = getattr(self, name, None)
            if not isinstance(total, int) or name == "name":
                raise ValueError(f"utilization: unknown resource {name!r}; expected lut, ff, dsp or bram36")
            out[name] = 100.0 * float(value) / total
        return out


#: device name -> resources (AMD product tables)
DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("xcvu13p", "Virtex UltraScale+", 1_728_000, 3_456_000, 12_288, 2_688),
    Device("xcvu9p", "Virtex UltraScale+", 1_182_240, 2_364_480, 6_840, 2_160),
    Device("xcvu7p", "Virtex UltraScale+", 788_160, 1_576_320, 4_560, 1_440),
    Device("xcvu5p", "Virtex UltraScale+", 600_577, 1_201_154, 3_474, 1_024),
    Device("xcu250", "Alveo (VU13P)", 1_728_000, 3_456_000, 12_288, 2_688),
    Device("xcu200", "Alveo (VU9P)", 1_182_240, 2_364_480, 6_840, 2_160),
    Device("xcku115", "Kintex UltraScale", 663_360, 1_326_720, 5_520, 2_160),
    Device("xcku15p", "Kintex UltraScale+", 522_720, 1_045_440, 1_968, 984),
    Device("xczu9eg", "Zynq UltraScale+", 274_080, 548_160, 2_520, 912),
    Device("xc7vx690t", "Virtex-7", 433_200, 866_400, 3_600, 1_470),
    Device("xc7k325t", "Kintex-7", 203_800, 407_600, 840, 445),
    Device("xc7a100t", "Artix-7", 63_400, 126_800, 240, 135),
    Device("xc7z020", "Zynq-7000", 53_200, 106_400, 220, 140),
)}


def device(part: str) -> Device | None:
    """The device of a part number (case-insensitive prefix match), or None if unknown."""
    p = part.strip().lower()
    for name in sorted(DEVICES, key=len, reverse=True):  # xcvu13p before a shorter name it starts with
        if p.startswith(name):
            return DEVICES[name]
    return None


def known_devices() -> str:
    """The table's device names, for messages."""
    return ", ".join(sorted(DEVICES))
