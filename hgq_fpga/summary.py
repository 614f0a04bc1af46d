"""Bit statistics of a quantized model: what the bit-widths came to.

Example:
    >>> model = keras.Sequential([keras.Input((4,)), QDense(3)])
    >>> s = bit_summary(model)
    >>> s.n_weights, round(s.mean_weight_bits, 3) >= 0
    (15, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from .calibration import iter_quantizers
from .quantizers import ActivationQuantizer, WeightQuantizer

__all__ = ["bit_summary", "BitSummary"]


@dataclass
class BitSummary:
    """Weight and activation bit statistics, total and per layer.

    Attributes:
        n_weights: number of weight and bias elements.
        mean_weight_bits: mean of ``k + i + f`` over all weight elements, with
            pruned (zero) weights counted as 0 bits.
        pruned_fraction: fraction of weight elements that are exactly 0.
        mean_activation_bits: mean bits over every input element of every layer.
        layers: one dict per layer with the same figures.
    """

    n_weights: int = 0
    mean_weight_bits: float = 0.0
    pruned_fraction: float = 0.0
    mean_activation_bits: float = 0.0
    layers: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{'layer':<24} {'weights':>8} {'w bits':>7} {'pruned':>7} {'act bits':>8}"
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(
                f"{r['layer']:<24} {r['n_weights']:>8d} {r['mean_weight_bits']:>7.2f} "
                f"{r['pruned_fraction']:>7.1%} {r['mean_activation_bits']:>8.2f}"
            )
        lines.append(
            f"{'total':<24} {self.n_weights:>8d} {self.mean_weight_bits:>7.2f} "
            f"{self.pruned_fraction:>7.1%} {self.mean_activation_bits:>8.2f}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"BitSummary(n_weights={self.n_weights}, mean_weight_bits={self.mean_weight_bits:.2f}, "
                f"pruned_fraction={self.pruned_fraction:.3f}, mean_activation_bits={self.mean_activation_bits:.2f}, "
                f"layers={len(self.layers)})")

    def _repr_html_(self) -> str:
        """The per-layer table, for notebooks."""
        from .tables import summary_table

        return summary_table(self)

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``, one row per layer (layer, n_weights, mean_weight_bits,
        pruned_fraction, mean_activation_bits).

        Raises:
            ImportError: pandas is not installed.
        """
        from .tables import SUMMARY_COLUMNS, summary_rows, to_dataframe

        return to_dataframe(SUMMARY_COLUMNS, summary_rows(self))


def _weight_value(layer: keras.layers.Layer, q: WeightQuantizer) -> Any:
    if q is getattr(layer, "kernel_quantizer", None):
        if isinstance(layer, keras.layers.BatchNormalization):
            return layer._fold(layer.moving_mean, layer.moving_variance)[0]
        return layer.kernel
    if isinstance(layer, keras.layers.BatchNormalization):
        return layer._fold(layer.moving_mean, layer.moving_variance)[1]
    return layer.bias


def bit_summary(model: keras.Model) -> BitSummary:
    """Collect per-layer and total bit statistics of ``model``."""
    per_layer: dict[str, dict[str, list[np.ndarray]]] = {}
    for layer, q in iter_quantizers(model):
        if not q.built:
            continue
        entry = per_layer.setdefault(layer.name, {"w": [], "a": []})
        if isinstance(q, WeightQuantizer):
            w = _weight_value(layer, q)
            bits = np.broadcast_to(ops.convert_to_numpy(q.bits(w)), tuple(w.shape))
            entry["w"].append(bits.ravel())
        elif isinstance(q, ActivationQuantizer):
            entry["a"].append(ops.convert_to_numpy(q.bits()).ravel())
    summary = BitSummary()
    all_w, all_a = [], []
    for name, entry in per_layer.items():
        w = np.concatenate(entry["w"]) if entry["w"] else np.zeros(0)
        a = np.concatenate(entry["a"]) if entry["a"] else np.zeros(0)
        all_w.append(w)
        all_a.append(a)
        summary.layers.append(_stats(name, w, a))
    w = np.concatenate(all_w) if all_w else np.zeros(0)
    a = np.concatenate(all_a) if all_a else np.zeros(0)
    total = _stats("total", w, a)
    summary.n_weights = total["n_weights"]
    summary.mean_weight_bits = total["mean_weight_bits"]
    summary.pruned_fraction = total["pruned_fraction"]
    summary.mean_activation_bits = total["mean_activation_bits"]
    return summary


def _stats(name: str, w: np.ndarray, a: np.ndarray) -> dict[str, Any]:
    return {
        "layer": name,
        "n_weights": int(w.size),
        "mean_weight_bits": float(w.mean()) if w.size else 0.0,
        "pruned_fraction": float(np.mean(w == 0)) if w.size else 0.0,
        "mean_activation_bits": float(a.mean()) if a.size else 0.0,
    }
