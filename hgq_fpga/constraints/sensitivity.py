"""Layer sensitivities: what one bit less in a layer's weights saves, and what it costs the task.

For each layer with weights, every weight's fractional bits are lowered by one
(the repair step's move, applied to the whole layer), the model is calibrated
again on ``x`` and

* ``lut_saved`` -- the exact estimate's LUTs before minus after;
* ``changed`` -- the fraction of samples of ``x`` whose predicted class (argmax
  of the emulated firmware's first output) changes;
* ``output_change`` -- the RMS change of the outputs over their RMS;
* ``per_klut`` -- ``changed`` per 1,000 LUTs saved: how much of the task one
  buys back per 1,000 LUTs by keeping the layer's bits. A layer with a low
  figure is where a tighter budget should take its LUTs; a high one is where
  it hurts (the role of the per-layer dual variables of Hounie et al.,
  arXiv:2210.15623, measured directly for one global budget).

The model is left exactly as it was (bits, weights, calibration).

Example:
    >>> s = layer_sensitivities(model, x_train)          # doctest: +SKIP
    >>> print(s)                                          # doctest: +SKIP
    layer sensitivities (one fractional bit less per layer; 1257 samples)
    layer         LUT saved  predictions changed  output change  changed per 1k LUT
    dense_0            2310               0.40%          1.9%              0.17%
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..calibration import calibrate, check_inputs
from ..resources import CostModel, estimate
from .budget_result import restore, snapshot
from .hook import hooked_layers

__all__ = ["SENSITIVITY_COLUMNS", "LayerSensitivity", "Sensitivities", "layer_sensitivities"]

#: at most this many samples of ``x`` are used (the first ones)
MAX_SAMPLES = 2048


@dataclass
class LayerSensitivity:
    """One layer: see the module docstring."""

    layer: str
    lut_saved: float
    changed: float
    output_change: float

    @property
    def per_klut(self) -> float:
        """``changed`` per 1,000 LUTs saved (inf when nothing is saved but predictions change)."""
        if self.lut_saved > 0:
            return 1000.0 * self.changed / self.lut_saved
        return math.inf if self.changed > 0 else 0.0

    def row(self) -> dict[str, Any]:
        return {"layer": self.layer, "lut_saved": self.lut_saved, "changed": self.changed,
                "output_change": self.output_change, "per_klut": self.per_klut}


#: the columns of :meth:`Sensitivities.to_pandas` and of the report's table
SENSITIVITY_COLUMNS = (("layer", "layer", ""), ("lut_saved", "LUT saved", ".0f"),
                       ("changed", "predictions changed", ".2%"), ("output_change", "output change", ".1%"),
                       ("per_klut", "changed per 1k LUT saved", ".3%"))


@dataclass
class Sensitivities:
    """Every weighted layer's :class:`LayerSensitivity`, measured on ``n_samples`` samples."""

    rows: list[LayerSensitivity] = field(default_factory=list)
    n_samples: int = 0

    def __str__(self) -> str:
        head = f"{'layer':<24} {'LUT saved':>10} {'pred. changed':>14} {'output change':>14} {'per 1k LUT':>11}"
        lines = [f"layer sensitivities (each layer's weights one fractional bit shorter; {self.n_samples} samples)",
                 head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.layer[:24]:<24} {r.lut_saved:>10.0f} {r.changed:>14.2%} {r.output_change:>14.1%} "
                         f"{r.per_klut:>11.3%}")
        return "\n".join(lines)

    def _columns(self) -> list[Any]:
        from ..tables import Column

        return [Column(*c) for c in SENSITIVITY_COLUMNS]

    def _repr_html_(self) -> str:
        from ..tables import html_table

        return html_table(self._columns(), [r.row() for r in self.rows],
                          caption=f"Layer sensitivities: each layer's weights one fractional bit shorter "
                                  f"({self.n_samples} samples)")

    def to_pandas(self) -> Any:
        """One row per layer (``per_klut``: predictions changed per 1,000 LUTs saved)."""
        from ..tables import to_dataframe

        return to_dataframe(self._columns(), [r.row() for r in self.rows])


def _outputs(model: Any, x: Any) -> np.ndarray:
    """The emulated firmware's outputs, all outputs side by side, one row per sample."""
    from ..emulator import emulate

    out = emulate(model, x)
    outs = out if isinstance(out, list) else [out]
    return np.concatenate([np.asarray(o, np.float64).reshape(len(o), -1) for o in outs], axis=1)


def _first_classes(model: Any, y: np.ndarray) -> np.ndarray:
    width = int(np.prod(model.outputs[0].shape[1:]))
    return np.argmax(y[:, :width], axis=1)


def layer_sensitivities(model: Any, x: Any, *, strategy: str = "Latency", part: str = "xcvu13p-flga2577-2-e",
                        cost_model: CostModel | None = None) -> Sensitivities:
    """Measure every weighted layer's sensitivity on ``x`` (at most :data:`MAX_SAMPLES`); see the module docstring."""
    arrays = [a[:MAX_SAMPLES] for a in check_inputs(model, x)]
    x = arrays if len(arrays) > 1 else arrays[0]
    kwargs = {"strategy": strategy, "part": part, "cost_model": cost_model}
    state = snapshot(model)
    try:
        calibrate(model, x)
        base_lut = estimate(model, **kwargs).lut
        base = _outputs(model, x)
        scale = float(np.sqrt(np.mean(base**2))) or 1.0
        result = Sensitivities(n_samples=len(arrays[0]))
        for layer in hooked_layers(model):
            kq = layer.kernel_quantizer
            f0 = np.array(kq.f_array())
            try:
                kq.set_f(f0 - 1.0)
                calibrate(model, x)
                lut = estimate(model, **kwargs).lut
                out = _outputs(model, x)
            finally:
                kq.set_f(f0)
            changed = float(np.mean(_first_classes(model, out) != _first_classes(model, base)))
            rms = float(np.sqrt(np.mean((out - base) ** 2))) / scale
            result.rows.append(LayerSensitivity(layer.name, base_lut - lut, changed, rms))
        return result
    finally:
        restore(model, state)
