"""Tune the estimate to a vendor flow: :func:`read_vendor_report` reads the resources of an
hls4ml project built by Vivado/Vitis HLS, :func:`fit_cost_model` refits the CostModel to them.

Example:
    >>> samples = [(hgq_fpga.estimate(m), read_vendor_report(d)) for m, d in built]  # doctest: +SKIP
    >>> fit = fit_cost_model(samples)                                                 # doctest: +SKIP
    >>> print(fit)                                                                    # doctest: +SKIP
    >>> hgq_fpga.estimate(new_model, cost_model=fit.cost_model).lut                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .estimate import FEATURES, CostModel, ResourceReport

__all__ = ["FitResult", "VendorReport", "fit_cost_model", "read_vendor_report"]

_BUILD_HINT = "run the vendor build first: 'hgq-fpga synth DIR' or hls_model.build(synth=True, vsynth=True)"


@dataclass
class VendorReport:
    """Resources of one vendor-built hls4ml project.

    Attributes:
        lut, ff, dsp: LUTs, flip-flops and DSP slices (None where the report lacks them).
        bram: block RAM in 18 Kb units (a Vivado 36 Kb ``Block RAM Tile`` counts 2).
        latency_cycles: worst-case latency of the HLS estimate, in clock cycles.
        source: the file the resource figures came from (``vivado_synth.rpt`` or ``*_csynth.xml``).
        raw: everything ``hls4ml.report.parse_vivado_report`` returned.
    """

    lut: int | None
    ff: int | None
    dsp: int | None
    bram: int | None
    latency_cycles: int | None
    source: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _int(value: Any, scale: float = 1.0) -> int | None:
    try:
        x = float(value) * scale
    except (TypeError, ValueError):
        return None
    return round(x) if math.isfinite(x) else None


def read_vendor_report(project_dir: str | Path) -> VendorReport:
    """Resources of an hls4ml project built by Vivado HLS or Vitis HLS.

    Reads the project with hls4ml 1.3.0's own ``parse_vivado_report`` (which the Vivado
    and Vitis backends both use): ``project.tcl`` for the project name, the
    ``<name>_prj/vivado_hls.app`` or ``hls.app`` solution list, the HLS estimate
    ``<name>_prj/<solution>/syn/report/<name>_csynth.xml`` and, when present, the Vivado
    post-synthesis utilization ``vivado_synth.rpt``. The post-synthesis figures are
    preferred; ``source`` says which file was used.

    Raises:
        FileNotFoundError: the directory, its ``project.tcl`` or every report is missing.
        ValueError: a report is there but cannot be parsed.
    """
    from hls4ml.report import vivado_report as hr

    d = Path(project_dir)
    csynth, vsynth = _report_paths(d)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            raw = hr.parse_vivado_report(str(d)) or {}
    except (AttributeError, TypeError, ET.ParseError, ValueError) as e:
        raise ValueError(f"cannot parse the HLS report {csynth}: {e}") from e
    hls = raw.get("CSynthesisReport", {})
    fig, dsp, bram_scale, source = _figures(raw, d, csynth, vsynth)
    return VendorReport(
        lut=_int(fig.get("LUT")),
        ff=_int(fig.get("FF")),
        dsp=_int(fig.get(dsp)),
        bram=_int(fig.get("BRAM_18K"), bram_scale),
        latency_cycles=_int(hls.get("WorstLatency")),
        source=str(source),
        raw=raw,
    )


def _report_paths(d: Path) -> tuple[Path, Path]:
    """``(HLS csynth.xml, vivado_synth.rpt)`` of the hls4ml project in ``d``, after checking it is one."""
    from ..compat.hls4ml import find_solutions, parse_project_script

    if not d.is_dir():
        raise FileNotFoundError(f"{d} is not a directory; {_BUILD_HINT}.")
    if not (d / "project.tcl").is_file():
        raise FileNotFoundError(
            f"no hls4ml project in {d}: project.tcl is missing; write the project and {_BUILD_HINT}."
        )
    try:
        prj, top = parse_project_script(str(d))
    except (UnboundLocalError, IndexError):  # no 'set backend' line
        prj = top = None
    if prj is None:
        raise ValueError(f"{d / 'project.tcl'} does not set project_name and backend as hls4ml writes them")
    solutions = find_solutions(str(d / prj))
    if not solutions:
        raise FileNotFoundError(
            f"no HLS results in {d}: looked for {d / prj}/vivado_hls.app or hls.app and a solution "
            f"directory with syn/report/{top}_csynth.xml; {_BUILD_HINT}."
        )
    csynth = d / prj / solutions[0] / "syn" / "report" / f"{top}_csynth.xml"
    return csynth, d / "vivado_synth.rpt"


def _figures(raw: dict[str, Any], d: Path, csynth: Path, vsynth: Path) -> tuple[dict[str, Any], str, float, Path]:
    """``(figures, DSP key, BRAM scale to 18 Kb, source file)``: post-synthesis if there, else the HLS estimate."""
    hls, viv = raw.get("CSynthesisReport", {}), raw.get("VivadoSynthReport")
    if viv is not None and "LUT" not in viv:
        raise ValueError(f"{vsynth} has no 'CLB LUTs' / 'Slice LUTs' row in its '1.' utilization table")
    if viv is not None:  # post-synthesis; its Block RAM Tile is 36 Kb = two 18 Kb
        fig, dsp, bram_scale, source = viv, "DSP48E", 2.0, vsynth
    elif hls:
        fig, dsp, bram_scale, source = hls, "DSP", 1.0, csynth
    else:
        raise FileNotFoundError(f"no synthesis report in {d}: looked for {vsynth} and {csynth}; {_BUILD_HINT}.")
    return fig, dsp, bram_scale, source


@dataclass(frozen=True)
class FitResult:
    """A refitted :class:`CostModel` and how well it matches the measurements.

    Attributes:
        cost_model: ``base`` with the fitted coefficients replaced.
        residuals: ``(predicted - measured) / measured`` per sample, in order.
        median_abs_rel_error, max_abs_rel_error: of ``|residuals|``.
        n_samples: number of samples.
        fitted: the features whose coefficients were fitted (the others kept ``base``).
    """

    cost_model: CostModel
    residuals: tuple[float, ...]
    median_abs_rel_error: float
    max_abs_rel_error: float
    n_samples: int
    fitted: tuple[str, ...] = ()

    def __str__(self) -> str:
        coefs = "  ".join(
            f"{k}={getattr(self.cost_model, k):.4g}" + ("" if k in self.fitted else " (base)") for k in FEATURES
        )
        return (
            f"CostModel fitted to {self.n_samples} samples: {coefs}\n"
            f"relative LUT error: median {self.median_abs_rel_error:.2%}, max {self.max_abs_rel_error:.2%}"
        )


Sample = tuple[ResourceReport | Mapping[str, float], float | VendorReport]


def _counts(x: ResourceReport | Mapping[str, float], i: int) -> dict[str, float]:
    counts = dict(x.counts() if isinstance(x, ResourceReport) else x)
    if unknown := sorted(set(counts) - set(FEATURES)):
        raise ValueError(f"sample {i}: unknown feature(s) {unknown}; the features are {FEATURES}")
    out = {k: float(counts.get(k, 0.0)) for k in FEATURES}
    if not all(math.isfinite(v) and v >= 0 for v in out.values()):
        raise ValueError(f"sample {i}: counts must be finite and non-negative, got {out}")
    return out


def fit_cost_model(
    samples: Sequence[Sample], *, base: CostModel | None = None, features: Sequence[str] | None = None
) -> FitResult:
    """Refit the CostModel coefficients to measured LUTs, minimizing the relative error.

    With ``x_s`` the cell counts of sample ``s`` (``ResourceReport.counts()``, or a dict
    of them) and ``y_s`` its measured LUTs, the fitted coefficients ``c`` solve the
    weighted non-negative least squares problem (``scipy.optimize.nnls``)::

        minimize  sum_s ((c . x_s - y_s) / y_s) ** 2    subject to  c >= 0

    Only the features in ``features`` (default: all of ``FEATURES``) that are nonzero in
    at least one sample are fitted; the others keep their ``base`` value (default
    ``CostModel()``) and their contribution is included in the prediction.

    Example:
        >>> fit = fit_cost_model([({"adder": 10, "mux": 4}, 14.2), ({"adder": 3, "mux": 9}, 14.4)])
        >>> round(fit.cost_model.adder, 6), round(fit.cost_model.mux, 6)
        (0.9, 1.3)

    Raises:
        ValueError: fewer samples than fitted features (says how many more are needed),
            a measured LUT that is not a positive number, unknown or negative counts,
            or counts that cannot separate the fitted coefficients.
    """
    base = CostModel() if base is None else base
    names = tuple(FEATURES if features is None else features)
    if unknown := sorted(set(names) - set(FEATURES)):
        raise ValueError(f"unknown feature(s) {unknown}; the features are {FEATURES}")
    if not samples:
        raise ValueError("fit_cost_model needs at least one (counts, measured_lut) sample")
    rows, y = _measurements(samples)
    fitted = tuple(k for k in FEATURES if k in names and any(r[k] for r in rows))
    if not fitted:
        raise ValueError(f"every sample has zero counts for {names}: nothing to fit")
    if len(rows) < len(fitted):
        raise ValueError(
            f"{len(rows)} sample(s) cannot determine {len(fitted)} coefficients {fitted}: "
            f"add {len(fitted) - len(rows)} more sample(s) or restrict `features`"
        )
    return _solve(rows, y, fitted, base)


def _measurements(samples: Sequence[Sample]) -> tuple[list[dict[str, float]], list[float]]:
    """The checked counts and the measured LUTs of every sample."""
    rows, y = [], []
    for i, (x, measured) in enumerate(samples):
        given = measured.lut if isinstance(measured, VendorReport) else measured
        try:
            m = float(given)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            m = math.nan
        if not (math.isfinite(m) and m > 0):
            raise ValueError(f"sample {i}: measured LUTs must be a positive number, got {given!r}")
        rows.append(_counts(x, i))
        y.append(m)
    return rows, y


def _solve(rows: list[dict[str, float]], y: list[float], fitted: tuple[str, ...], base: CostModel) -> FitResult:
    """The weighted non-negative least-squares fit of the ``fitted`` coefficients (the others from ``base``)."""
    from scipy.optimize import nnls

    X, yv = np.array([[r[k] for k in FEATURES] for r in rows]), np.array(y)
    fixed = np.array([0.0 if k in fitted else getattr(base, k) for k in FEATURES])
    A = X[:, [FEATURES.index(k) for k in fitted]] / yv[:, None]
    if np.linalg.matrix_rank(A) < len(fitted):
        raise ValueError(
            f"the samples' counts of {fitted} are linearly dependent, so the coefficients are not determined: "
            "add samples from differently shaped models or restrict `features`"
        )
    coef, _ = nnls(A, (yv - X @ fixed) / yv)
    cm = dataclasses.replace(base, **{k: float(c) for k, c in zip(fitted, coef)})
    res = (X @ np.array([getattr(cm, k) for k in FEATURES]) - yv) / yv
    err = np.abs(res)
    return FitResult(cm, tuple(map(float, res)), float(np.median(err)), float(err.max()), len(rows), fitted)
