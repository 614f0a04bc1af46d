"""read_vendor_report on real report files read by hls4ml's own parser; fit_cost_model on synthetic counts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hgq_fpga.resources.estimate import FEATURES, CostModel, LayerCost, ResourceReport
from hgq_fpga.resources.vendor import FitResult, VendorReport, fit_cost_model, read_vendor_report

# --- report files, in the layout and formats hls4ml 1.3.0's parse_vivado_report reads ---------------

PROJECT_TCL = """variable project_name
set project_name "myproject"
variable backend
set backend "{backend}"
variable part
set part "xcvu13p-flga2577-2-e"
variable clock_period
set clock_period 5
"""

VIVADO_HLS_APP = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="com.autoesl.autopilot.project" name="myproject_prj" top="myproject">
    <files xmlns="">
        <file name="firmware/myproject.cpp" sc="0" tb="false" cflags="-std=c++0x" blackbox="false"/>
    </files>
    <solutions xmlns="">
        <solution name="solution1" status="active"/>
    </solutions>
</project>
"""

VITIS_HLS_APP = """<?xml version="1.0" encoding="UTF-8"?>
<AutoPilot:project xmlns:AutoPilot="com.autoesl.autopilot.project" top="myproject" name="myproject_prj">
    <files>
        <file name="firmware/myproject.cpp" sc="0" tb="false" cflags="-std=c++0x" csimflags="" blackbox="false"/>
    </files>
    <solutions>
        <solution name="solution1" status=""/>
    </solutions>
</AutoPilot:project>
"""

CSYNTH_XML = """<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <ReportVersion><Version>2020.1</Version></ReportVersion>
  <UserAssignments>
    <unit>ns</unit>
    <Part>xcvu13p-flga2577-2-e</Part>
    <TopModelName>myproject</TopModelName>
    <TargetClockPeriod>5.00</TargetClockPeriod>
  </UserAssignments>
  <PerformanceEstimates>
    <SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>4.365</EstimatedClockPeriod></SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency>
      <unit>clock cycles</unit>
      <Best-caseLatency>6</Best-caseLatency>
      <Average-caseLatency>7</Average-caseLatency>
      <Worst-caseLatency>7</Worst-caseLatency>
      <Interval-min>1</Interval-min>
      <Interval-max>1</Interval-max>
    </SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates>
    <Resources>
      <BRAM_18K>2</BRAM_18K>
      <{dsp}>5</{dsp}>
      <FF>1234</FF>
      <LUT>5678</LUT>
      <URAM>0</URAM>
    </Resources>
    <AvailableResources>
      <BRAM_18K>5376</BRAM_18K>
      <{dsp}>12288</{dsp}>
      <FF>3456000</FF>
      <LUT>1728000</LUT>
      <URAM>1280</URAM>
    </AvailableResources>
  </AreaEstimates>
</profile>
"""

# report_utilization of Vivado 2020.1 on an UltraScale+ part ("CLB"; 7-series says "Slice")
VIVADO_SYNTH_RPT = """Copyright 1986-2020 Xilinx, Inc. All Rights Reserved.
-------------------------------------------------------------------------------------
| Command      : report_utilization -file vivado_synth.rpt
| Design       : myproject
| Device       : xcvu13pflga2577-2
| Design State : Synthesized
-------------------------------------------------------------------------------------

Utilization Design Information

Table of Contents
-----------------
1. CLB Logic
1.1 Summary of Registers by Type
2. BLOCKRAM
3. ARITHMETIC
4. I/O
8. Primitives

1. CLB Logic
------------

+----------------------------+------+-------+-----------+-------+
|          Site Type         | Used | Fixed | Available | Util% |
+----------------------------+------+-------+-----------+-------+
| {clb} LUTs*                  | 2876 |     0 |   1728000 |  0.17 |
|   LUT as Logic             | 2870 |     0 |   1728000 |  0.17 |
|   LUT as Memory            |    6 |     0 |    791040 | <0.01 |
| {clb} Registers              |  412 |     0 |   3456000 |  0.01 |
|   Register as Flip Flop    |  412 |     0 |   3456000 |  0.01 |
+----------------------------+------+-------+-----------+-------+
* Warning! The Final LUT count, after physical optimizations and full implementation, is typically lower.


2. BLOCKRAM
-----------

+-------------------+------+-------+-----------+-------+
|     Site Type     | Used | Fixed | Available | Util% |
+-------------------+------+-------+-----------+-------+
| Block RAM Tile    |  1.5 |     0 |      2688 |  0.06 |
|   RAMB36/FIFO*    |    1 |     0 |      2688 |  0.04 |
|   RAMB18          |    1 |     0 |      5376 |  0.02 |
| URAM              |    0 |     0 |      1280 |  0.00 |
+-------------------+------+-------+-----------+-------+


3. ARITHMETIC
-------------

+----------------+------+-------+-----------+-------+
|    Site Type   | Used | Fixed | Available | Util% |
+----------------+------+-------+-----------+-------+
| DSPs           |    3 |     0 |     12288 |  0.02 |
|   DSP48E2 only |    3 |       |           |       |
+----------------+------+-------+-----------+-------+


8. Primitives
-------------

+----------+------+---------------------+
| Ref Name | Used | Functional Category |
+----------+------+---------------------+
| LUT2     | 1500 |                 CLB |
| DSP48E2  |    3 |          Arithmetic |
+----------+------+---------------------+
"""


def write_project(root: Path, *, vitis: bool = False, vivado: str | None = None) -> Path:
    """An hls4ml project directory after C synthesis (and Vivado synthesis with ``vivado='CLB'|'Slice'``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "project.tcl").write_text(PROJECT_TCL.format(backend="vitis" if vitis else "vivado"))
    prj = root / "myproject_prj"
    report = prj / "solution1" / "syn" / "report"
    report.mkdir(parents=True)
    (prj / ("hls.app" if vitis else "vivado_hls.app")).write_text(VITIS_HLS_APP if vitis else VIVADO_HLS_APP)
    (report / "myproject_csynth.xml").write_text(CSYNTH_XML.format(dsp="DSP" if vitis else "DSP48E"))
    if vivado is not None:
        (root / "vivado_synth.rpt").write_text(VIVADO_SYNTH_RPT.replace("{clb}", vivado))
    return root


@pytest.mark.parametrize("vitis", [False, True], ids=["vivado_hls", "vitis_hls"])
def test_hls_estimate(tmp_path: Path, vitis: bool) -> None:
    d = write_project(tmp_path / "prj", vitis=vitis)
    r = read_vendor_report(d)
    assert (r.lut, r.ff, r.dsp, r.bram, r.latency_cycles) == (5678, 1234, 5, 2, 7)
    assert r.source == str(d / "myproject_prj" / "solution1" / "syn" / "report" / "myproject_csynth.xml")
    assert "CSynthesisReport" in r.raw and "VivadoSynthReport" not in r.raw


@pytest.mark.parametrize("family", ["CLB", "Slice"])
def test_prefers_vivado_synthesis(tmp_path: Path, family: str) -> None:
    d = write_project(tmp_path / "prj", vivado=family)
    r = read_vendor_report(str(d))
    # LUTs, FFs and DSPs from vivado_synth.rpt; 1.5 36 Kb tiles = 3 BRAM_18K; latency from the HLS estimate
    assert (r.lut, r.ff, r.dsp, r.bram, r.latency_cycles) == (2876, 412, 3, 3, 7)
    assert r.source == str(d / "vivado_synth.rpt")
    assert r.raw["CSynthesisReport"]["LUT"] == "5678"


def test_vivado_report_without_lut_row(tmp_path: Path) -> None:
    d = write_project(tmp_path / "prj", vivado="Foo")
    with pytest.raises(ValueError, match=r"vivado_synth\.rpt.*LUTs"):
        read_vendor_report(d)


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="project.tcl") as e:
        read_vendor_report(tmp_path)
    assert str(tmp_path) in str(e.value) and "hgq-fpga synth" in str(e.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory.*build"):
        read_vendor_report(tmp_path / "nope")


def test_project_not_built(tmp_path: Path) -> None:
    (tmp_path / "project.tcl").write_text(PROJECT_TCL.format(backend="vivado"))
    with pytest.raises(FileNotFoundError, match=r"vivado_hls\.app or hls\.app.*myproject_csynth\.xml") as e:
        read_vendor_report(tmp_path)
    assert "build(synth=True, vsynth=True)" in str(e.value)


# --- fit_cost_model -------------------------------------------------------------------------------

BASE = CostModel(table=2.5, multiplier=0.7, da=1.1)


def synthetic(n: int, seed: int = 0) -> list[tuple[dict[str, float], float]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        adder, mux = rng.integers(50, 5000, size=2).astype(float)
        out.append(({"adder": adder, "mux": mux, "table": 0.0}, 0.9 * adder + 1.3 * mux))
    return out


def test_recovers_coefficients_and_keeps_base() -> None:
    fit = fit_cost_model(synthetic(8), base=BASE)
    assert isinstance(fit, FitResult)
    assert fit.cost_model.adder == pytest.approx(0.9, abs=1e-9)
    assert fit.cost_model.mux == pytest.approx(1.3, abs=1e-9)
    assert (fit.cost_model.table, fit.cost_model.multiplier, fit.cost_model.da) == (2.5, 0.7, 1.1)
    assert fit.cost_model.dsp_min_bits == BASE.dsp_min_bits and fit.cost_model.family == BASE.family
    assert fit.fitted == ("adder", "mux") and fit.n_samples == 8 and len(fit.residuals) == 8
    assert fit.max_abs_rel_error < 1e-9 and fit.median_abs_rel_error <= fit.max_abs_rel_error
    text = str(fit)
    assert "8 samples" in text and "table=2.5 (base)" in text and "median" in text


def test_resource_report_and_vendor_report_samples() -> None:
    samples = []
    for counts, y in synthetic(3, seed=1):
        layer = LayerCost("dense", ["dense"], counts={k: counts.get(k, 0.0) for k in FEATURES})
        measured = VendorReport(lut=y, ff=None, dsp=0, bram=0, latency_cycles=None, source="x")  # type: ignore[arg-type]
        samples.append((ResourceReport([layer], "Latency", "xcvu13p", CostModel()), measured))
    fit = fit_cost_model(samples)
    assert (fit.cost_model.adder, fit.cost_model.mux) == pytest.approx((0.9, 1.3), abs=1e-9)


def test_fixed_features_contribute_to_prediction() -> None:
    samples = [({"adder": a, "table": t}, 0.8 * a + BASE.table * t) for a, t in [(100, 40), (900, 7), (30, 300)]]
    fit = fit_cost_model(samples, base=BASE, features=["adder"])
    assert fit.fitted == ("adder",) and fit.cost_model.table == BASE.table
    assert fit.cost_model.adder == pytest.approx(0.8, abs=1e-9) and fit.max_abs_rel_error < 1e-9


def test_weights_relative_error() -> None:
    # one coefficient, two inconsistent samples: unweighted least squares would give ~2.0 (the big
    # sample dominates); minimizing (c - 1)^2 + (c/2 - 1)^2 gives c = 1.2
    fit = fit_cost_model([({"adder": 10}, 10.0), ({"adder": 1000}, 2000.0)])
    assert fit.cost_model.adder == pytest.approx(1.2, abs=1e-9)
    assert fit.residuals == pytest.approx((0.2, -0.4), abs=1e-9)
    assert fit.median_abs_rel_error == pytest.approx(0.3) and fit.max_abs_rel_error == pytest.approx(0.4)


def test_coefficients_are_non_negative() -> None:
    # unconstrained: mux = -1; NNLS clamps it to 0
    samples = [({"adder": 10, "mux": 1}, 9.0), ({"adder": 10, "mux": 5}, 5.0), ({"adder": 20, "mux": 2}, 18.0)]
    fit = fit_cost_model(samples)
    assert fit.cost_model.mux == 0.0 and fit.cost_model.adder > 0


def test_too_few_samples() -> None:
    with pytest.raises(ValueError, match="add 2 more sample"):
        fit_cost_model([({"adder": 1, "mux": 2, "table": 3}, 10.0)])


@pytest.mark.parametrize("bad", [0.0, -5.0, math.nan, math.inf, None])
def test_bad_measurement(bad: float) -> None:
    samples = [({"adder": 1}, 3.0), ({"adder": 2}, bad), ({"adder": 3}, 9.0)]
    with pytest.raises(ValueError, match=rf"sample 1: .*positive.*{bad}"):
        fit_cost_model(samples)  # type: ignore[arg-type]


def test_other_errors() -> None:
    with pytest.raises(ValueError, match="unknown feature"):
        fit_cost_model([({"adders": 1}, 1.0)])
    with pytest.raises(ValueError, match="unknown feature"):
        fit_cost_model([({"adder": 1}, 1.0)], features=["luts"])
    with pytest.raises(ValueError, match="at least one"):
        fit_cost_model([])
    with pytest.raises(ValueError, match="nothing to fit"):
        fit_cost_model([({"adder": 0}, 1.0)])
    with pytest.raises(ValueError, match="linearly dependent"):
        fit_cost_model([({"adder": 1, "mux": 2}, 3.0), ({"adder": 2, "mux": 4}, 6.0)])
