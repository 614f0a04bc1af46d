"""Pareto sweeps: one architecture trained at several budgets, accuracy against LUTs.

Example:
    >>> points = pareto_sweep(build, (x, y), (xv, yv), budgets=[2000, 5000, 10000],
    ...                       epochs=30)                                      # doctest: +SKIP
    >>> save_sweep(points, "sweep.csv")                                       # doctest: +SKIP
    >>> plot_pareto(points, "sweep.png")                                      # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

__all__ = ["SweepPoint", "pareto_sweep", "plot_pareto", "save_sweep"]


@dataclass
class SweepPoint:
    """One budgeted training: the budget, what the model reached, and how."""

    budget_lut: float
    lut: float
    dsp: int
    ebops: float
    accuracy: float
    feasible: bool
    repair_rounds: int
    seconds: float
    method: str
    seed: int


def pareto_sweep(
    build: Callable[[], keras.Model],
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    budgets: Sequence[float],
    *,
    epochs: int,
    method: str = "constraint",
    seed: int = 0,
    batch_size: int = 32,
    calibration_data: Any = None,
    progress: bool = True,
    **budget_kwargs: Any,
) -> list[SweepPoint]:
    """Train a fresh ``build()`` model under each LUT budget and measure it.

    Args:
        build: returns a compiled model (same seed each call: the sweep sets
            ``keras.utils.set_random_seed(seed)`` before each).
        train, test: ``(x, y)`` pairs; accuracy is measured on ``test`` with
            the **emulated firmware** (:func:`hgq_fpga.emulate`), argmax of the outputs.
        budgets: LUT budgets.
        epochs, batch_size: for ``fit``.
        method: :class:`ResourceBudget`'s rule.
        calibration_data: default: the training inputs.
        budget_kwargs: more :class:`ResourceBudget` arguments.
    """
    from tqdm.auto import tqdm

    from ..emulator import emulate
    from .budget import ResourceBudget

    (x, y), (xt, yt) = train, test
    calib = x if calibration_data is None else calibration_data
    points = []
    for b in tqdm(list(budgets), desc="budgets", disable=not progress):
        keras.utils.set_random_seed(seed)
        model = build()
        cb = ResourceBudget(lut=b, calibration_data=calib, method=method, verbose=0, **budget_kwargs)
        t0 = time.perf_counter()
        model.fit(x, y, validation_data=(xt, yt), epochs=epochs, batch_size=batch_size, verbose=0,
                  callbacks=[cb])
        seconds = time.perf_counter() - t0
        out = np.asarray(emulate(model, xt))
        accuracy = float(np.mean(np.argmax(out.reshape(len(out), -1), axis=1) == np.asarray(yt).reshape(-1)))
        r = cb.result
        points.append(SweepPoint(float(b), r.report.lut, r.report.dsp, r.report.ebops, accuracy,
                                 r.feasible, r.repair.rounds, seconds, method, seed))
    return points


def save_sweep(points: Sequence[SweepPoint], path: str | Path) -> Path:
    """Write the sweep as CSV (``.csv``) or JSON (any other suffix)."""
    path = Path(path)
    rows = [asdict(p) for p in points]
    if path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else list(SweepPoint.__annotations__))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text(json.dumps(rows, indent=1))
    return path


def plot_pareto(
    series: Sequence[SweepPoint] | dict[str, Sequence[SweepPoint]],
    path: str | Path,
    *,
    title: str = "accuracy against LUTs",
) -> Path:
    """Accuracy against LUTs (log scale), one line per series, budgets as ticks.

    ``series``: a sweep, or ``{label: sweep}`` for a comparison. The file type
    follows the suffix (``.png``, ``.pdf``, ``.svg``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = series if isinstance(series, dict) else {"hgq_fpga": series}
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in groups.items():
        pts = sorted(pts, key=lambda p: p.lut)
        ax.plot([p.lut for p in pts], [p.accuracy for p in pts], "o-", label=label)
        budgets = [p.budget_lut for p in pts if np.isfinite(p.budget_lut)]
        if budgets and label == next(iter(groups)):
            for b in budgets:
                ax.axvline(b, color="0.85", lw=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("LUTs (exact estimate)")
    ax.set_ylabel("test accuracy (emulated firmware)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
