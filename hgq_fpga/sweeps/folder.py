"""The sweep folder: everything a sweep produced, and the state it resumes from.

::

    DIR/sweep.json                 the spec (SweepSpec.to_dict()) and the data's fingerprint
    DIR/trials/<key>/model.keras   the trained model
    DIR/trials/<key>/estimate.json the exact estimate (ResourceReport.to_dict())
    DIR/trials/<key>/metrics.json  accuracy, LUTs, attempts, time, ... (one results row)
    DIR/trials/<key>/history.json  the budget's checks, epoch by epoch
    DIR/trials/<key>/sensitivities.json  each layer's sensitivity (budgeted trials)
    DIR/trials/<key>/synth-<tool>.json   after synthesize_many
    DIR/results.csv, results.parquet, pareto.png   rebuilt from trials/ after every run

A trial's folder is written in a hidden staging folder beside it and renamed
into place in one step, so it is either complete or absent: a sweep killed at
any moment leaves no half trial, and a trial is never stored twice. A trial
counts as finished when its folder exists; re-running the sweep into the same
folder runs only the others.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import make_staging, plain_mode, write_file
from .spec import SweepSpec

__all__ = ["RESULT_COLUMNS", "SweepConflictError", "SweepFolder", "pareto_front"]

#: the results table's columns, in order (synthesis columns are added when present)
RESULT_COLUMNS = ("trial", "architecture", "budget_lut", "seed", "lut", "dsp", "carry", "ebops", "accuracy",
                  "feasible", "repair_rounds", "projected_epochs", "attempts", "seconds", "epochs", "method",
                  "host")
_STAGING = ".staging-"


class SweepConflictError(ValueError):
    """The output folder holds something else: another sweep's settings, or files that are not a sweep."""


class SweepFolder:
    """Read and write a sweep folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.trials_dir = self.path / "trials"

    # -- opening -------------------------------------------------------------------------
    def open(self, spec: SweepSpec, *, overwrite: bool = False) -> None:
        """Create the folder, or check that it holds the same sweep (then it resumes).

        Raises:
            SweepConflictError: a file is at ``path``; a non-empty folder that is not a
                sweep; or a sweep whose shared settings differ (and not ``overwrite``).
        """
        p = self.path
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            raise SweepConflictError(f"{p} is not a folder; give a folder for the sweep (nothing was written)")
        saved = self.saved_spec()
        if p.is_dir() and saved is None and any(p.iterdir()):
            raise SweepConflictError(f"{p} is a folder with other files in it (no sweep.json); give a new or "
                                     f"empty folder (nothing was written)")
        if saved is not None:
            conflicts = spec.conflicts(saved)
            if conflicts and not overwrite:
                raise SweepConflictError(
                    f"{p} holds a sweep with other settings ({'; '.join(conflicts)}); its finished trials "
                    f"would not be comparable. Use another output folder, or overwrite=True (--overwrite) "
                    f"to delete its trials and start over (nothing was written)")
            if conflicts:
                shutil.rmtree(self.trials_dir, ignore_errors=True)
                for name in ("results.csv", "results.parquet", "pareto.png"):
                    (p / name).unlink(missing_ok=True)
        p.mkdir(parents=True, exist_ok=True)
        self.trials_dir.mkdir(exist_ok=True)
        write_file(p / "sweep.json", json.dumps(spec.to_dict(), indent=1).encode(), overwrite=True)

    def saved_spec(self) -> dict[str, Any] | None:
        """The ``sweep.json`` in the folder, or None."""
        f = self.path / "sweep.json"
        if not f.is_file() or f.is_symlink():
            return None
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise SweepConflictError(f"{f} is not a readable sweep description ({e}); give another folder") from e

    # -- trials --------------------------------------------------------------------------
    def finished(self) -> set[str]:
        """Keys of the trials stored in the folder."""
        if not self.trials_dir.is_dir():
            return set()
        return {d.name for d in self.trials_dir.iterdir()
                if d.is_dir() and not d.is_symlink() and not d.name.startswith(".") and (d / "metrics.json").is_file()}

    def store(self, key: str, payload: Mapping[str, Any], attempts: int) -> bool:
        """Write one trial's folder atomically; False (nothing written) if it is already there."""
        target = self.trials_dir / key
        if target.exists():
            return False
        staging = make_staging(self.trials_dir, _STAGING)
        try:
            metrics = {**payload["metrics"], "attempts": int(attempts)}
            (staging / "model.keras").write_bytes(payload["model"])
            for name in ("estimate", "history", "sensitivities"):
                obj = payload.get(name, [])
                (staging / f"{name}.json").write_text(json.dumps(obj, indent=1, default=_jsonable))
            (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_jsonable))
            (staging / ".hgq_fpga_owner").unlink()
            for f in staging.iterdir():
                plain_mode(f)
            try:
                os.rename(staging, target)  # atomic; fails if the target appeared meanwhile
            except OSError:
                return False
            return True
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def store_extra(self, key: str, name: str, obj: Any) -> None:
        """Add (or replace) ``trials/<key>/<name>.json``, e.g. a synthesis result."""
        write_file(self.trials_dir / key / f"{name}.json", json.dumps(obj, indent=1, default=_jsonable).encode(),
                   overwrite=True)

    def model_path(self, key: str) -> Path:
        return self.trials_dir / key / "model.keras"

    def rows(self) -> list[dict[str, Any]]:
        """One row per stored trial (metrics plus ``synth_*`` columns), in key order."""
        rows = []
        for key in sorted(self.finished()):
            d = self.trials_dir / key
            row = json.loads((d / "metrics.json").read_text())
            for f in sorted(d.glob("synth-*.json")):
                synth = json.loads(f.read_text())
                tool = f.stem.removeprefix("synth-")
                row.update({f"{tool}_{k}": v for k, v in synth.items() if not isinstance(v, (dict, list))})
            rows.append(row)
        return rows

    # -- the table and the plot ---------------------------------------------------------------
    def write_tables(self, rows: Sequence[Mapping[str, Any]]) -> list[Path]:
        """``results.csv`` (always) and ``results.parquet`` (when pyarrow is installed)."""
        columns = [c for c in RESULT_COLUMNS if any(c in r for r in rows)]
        columns += [c for r in rows for c in r if c not in columns and c != "pid"]
        columns = list(dict.fromkeys(columns))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        written = [write_file(self.path / "results.csv", buf.getvalue().encode(), overwrite=True)]
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            return written
        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        written.append(write_file(self.path / "results.parquet", sink.getvalue().to_pybytes(), overwrite=True))
        return written

    def write_plot(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """``pareto.png``: accuracy against LUTs, one line per architecture, one point per
        budget (the mean over its seeds)."""
        from ..constraints.sweep import plot_pareto

        if not rows:
            return None
        series = {arch: _mean_points([r for r in rows if r["architecture"] == arch])
                  for arch in dict.fromkeys(r["architecture"] for r in rows)}
        seeds = max(len({r["seed"] for r in rows if r["architecture"] == a}) for a in series)
        title = "accuracy against LUTs" + (f" (mean of {seeds} seeds)" if seeds > 1 else "")
        staging = make_staging(self.path, _STAGING)
        try:
            tmp = plot_pareto(series, staging / "pareto.png", title=title)
            os.replace(tmp, self.path / "pareto.png")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.path / "pareto.png"


def _mean_points(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """One :class:`~hgq_fpga.constraints.sweep.SweepPoint` per budget: the means over its trials."""
    from ..constraints.sweep import SweepPoint

    points = []
    for budget in dict.fromkeys(r.get("budget_lut") for r in rows):
        group = [r for r in rows if r.get("budget_lut") == budget]

        def mean(key: str) -> float:
            return float(sum(float(r[key]) for r in group) / len(group))

        points.append(SweepPoint(float("nan") if budget is None else float(budget), mean("lut"), round(mean("dsp")),
                                 mean("ebops"), mean("accuracy"), all(bool(r["feasible"]) for r in group),
                                 max(int(r["repair_rounds"]) for r in group), mean("seconds"),
                                 str(group[0]["method"]), int(group[0]["seed"])))
    return points


def pareto_front(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys of the trials no other trial beats: none has fewer or equal LUTs and a higher or equal
    accuracy, one of them strictly. Sorted by LUTs.

    Example:
        >>> pareto_front([{"trial": "a", "lut": 100, "accuracy": 0.9}, {"trial": "b", "lut": 200, "accuracy": 0.8},
        ...               {"trial": "c", "lut": 300, "accuracy": 0.95}])
        ['a', 'c']
    """
    def beaten(r: Mapping[str, Any]) -> bool:
        return any(o["lut"] <= r["lut"] and o["accuracy"] >= r["accuracy"]
                   and (o["lut"] < r["lut"] or o["accuracy"] > r["accuracy"]) for o in rows)

    return [r["trial"] for r in sorted(rows, key=lambda r: (r["lut"], -r["accuracy"])) if not beaten(r)]


def _jsonable(x: Any) -> Any:
    """numpy scalars and arrays to plain JSON values."""
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serializable")
