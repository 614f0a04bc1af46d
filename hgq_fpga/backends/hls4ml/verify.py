"""``verify``: Keras, the numpy emulator and hls4ml's C simulation, bit for bit."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["verify", "VerifyResult"]


@dataclass
class VerifyResult:
    """Mismatch counts per model output (all zero when the firmware is bit-exact).

    Attributes:
        n_samples: samples compared.
        outputs: per output: ``name`` (the Keras layer's), ``size`` (values compared),
            ``keras_vs_emulator`` and ``csim_vs_emulator`` mismatch counts, and
            ``first_mismatch`` (index and the three values, or None).
        project_dir: the project used (None if it was temporary).
        seconds: time of conversion and compilation (g++) or simulation (RTL).
        backend: ``"hls4ml"`` (the C simulation; key ``csim_vs_emulator``) or
            ``"rtl"`` (Icarus Verilog; key ``rtl_vs_emulator``).
    """

    n_samples: int
    outputs: list[dict[str, Any]] = field(default_factory=list)
    project_dir: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    backend: str = "hls4ml"

    @property
    def firmware_key(self) -> str:
        """The per-output key of the firmware's mismatch count."""
        return "rtl_vs_emulator" if self.backend == "rtl" else "csim_vs_emulator"

    @property
    def mismatches(self) -> int:
        """Total mismatches over every output and every comparison."""
        return sum(o["keras_vs_emulator"] + o[self.firmware_key] for o in self.outputs)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def __repr__(self) -> str:
        return (f"VerifyResult(n_samples={self.n_samples}, ok={self.ok}, mismatches={self.mismatches}, "
                f"outputs={len(self.outputs)})")

    def _repr_html_(self) -> str:
        """The verdict badge and the per-output table, for notebooks."""
        from ...tables import verify_table

        return verify_table(self)

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``, one row per output (name, size, keras_vs_emulator,
        csim_vs_emulator or rtl_vs_emulator, first_mismatch).

        Raises:
            ImportError: pandas is not installed.
        """
        from ...tables import to_dataframe, verify_columns, verify_rows

        return to_dataframe(verify_columns(self), verify_rows(self))

    def __str__(self) -> str:
        label = "rtl!=emu" if self.backend == "rtl" else "csim!=emu"
        head = f"{'output':<24} {'values':>9} {'keras!=emu':>11} {label:>10}"
        lines = [f"verified {self.n_samples} samples: {'BIT-EXACT' if self.ok else 'MISMATCH'}", head]
        for o in self.outputs:
            lines.append(f"{o['name']:<24} {o['size']:>9} {o['keras_vs_emulator']:>11} {o[self.firmware_key]:>10}")
            if o.get("first_mismatch"):
                lines.append(f"  first mismatch: {o['first_mismatch']}")
        times = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        lines.append(f"project: {self.project_dir or '(temporary)'}; {times}")
        return "\n".join(lines)


def verify(model: Any, x: Any, output_dir: str | Path | None = None, *, progress: bool = False,
           **convert_options: Any) -> VerifyResult:
    """Run the Keras model (inference, float64), the emulator and the firmware on ``x``.

    The firmware: hls4ml's C simulation, or with ``backend="rtl"`` the
    simulation of the :func:`~hgq_fpga.backends.rtl.to_rtl` project (:func:`~hgq_fpga.backends.rtl.verify_rtl`).

    Args:
        model: a calibrated hgq_fpga Keras model.
        x: inputs (array, or list of arrays); include overflow and edge values.
        output_dir: where to write the hls4ml project (default: a temporary
            folder, removed afterwards). Refused if it exists, unless
            ``overwrite=True`` is among ``convert_options``.
        progress: show the elapsed time while g++ compiles the C simulation.
        **convert_options: passed to :func:`~hgq_fpga.backends.hls4ml.to_hls4ml`.

    Returns:
        a :class:`VerifyResult`; ``result.ok`` is True when there are zero mismatches.
    """
    if convert_options.get("backend") == "rtl":
        from ..rtl.verify import verify_rtl

        return verify_rtl(model, x, output_dir, **{k: v for k, v in convert_options.items() if k != "backend"})

    from ...calibration import check_inputs
    from ...emulator import emulate_mantissas
    from ...emulator.keras64 import float64_outputs
    from ...frontend.keras import build_ir
    from .project import compile_csim, to_hls4ml

    arrays = [a.astype(np.float64) for a in check_inputs(model, x)]
    graph = build_ir(model)
    expected = [m.values() for m in emulate_mantissas(graph, arrays)]
    keras_out = float64_outputs(model, arrays)
    keras_out = keras_out if isinstance(keras_out, list) else [keras_out]

    result = VerifyResult(n_samples=len(arrays[0]))
    with _temporary_project() as tmp:
        target = Path(output_dir) if output_dir is not None else Path(tmp) / "project"
        t0 = time.perf_counter()
        hls_model = to_hls4ml(model, target, graph=graph, test_inputs=[a[:64] for a in arrays], **convert_options)
        t1 = time.perf_counter()
        compile_csim(hls_model, progress=progress)
        t2 = time.perf_counter()
        csim = hls_model.predict(np.ascontiguousarray(arrays[0]) if len(arrays) == 1 else [np.ascontiguousarray(a) for a in arrays])
        csim = csim if isinstance(csim, list) else [csim]
        result.seconds = {"convert": t1 - t0, "compile": t2 - t1}
        result.project_dir = str(target) if output_dir is not None else None
        for name, exp, kout, cout in zip(_output_labels(graph), expected, keras_out, csim):
            cout = np.asarray(cout, np.float64).reshape(exp.shape)
            result.outputs.append({
                "name": name, "size": int(exp.size),
                "keras_vs_emulator": int(np.count_nonzero(kout != exp)),
                "csim_vs_emulator": int(np.count_nonzero(cout != exp)),
                "first_mismatch": _first_mismatch(exp, kout, cout),
            })
    return result


def _output_labels(graph: Any) -> list[str]:
    """The model's outputs by the user's layer names (``logits``, not the IR's ``logits_dense_out``)."""
    labels = [getattr(graph.producer(t), "layer", None) or t for t in graph.outputs]
    return [f"{label}[{i}]" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


@contextlib.contextmanager
def _temporary_project() -> Iterator[str]:
    """A temporary folder for the project, removed afterwards; a killed run's folder goes next time."""
    from ...files import make_staging

    d = make_staging(tempfile.gettempdir(), "hgq_fpga_verify_")
    try:
        yield str(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _first_mismatch(exp: np.ndarray, kout: np.ndarray, cout: np.ndarray, label: str = "csim") -> dict[str, Any] | None:
    """Where the first difference is, with the three values (None when exact)."""
    bad = np.argwhere((kout != exp) | (cout != exp))
    if not len(bad):
        return None
    at = tuple(int(v) for v in bad[0])
    return {"index": at, "emulator": float(exp[at]), "keras": float(kout[at]), label: float(cout[at])}
