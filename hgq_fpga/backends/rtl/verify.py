"""``verify(model, x, backend="rtl")``: Keras, the numpy emulator and the RTL simulation
of the project :func:`~.project.to_rtl` writes, bit for bit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["verify_rtl"]


def verify_rtl(model: Any, x: Any, output_dir: str | Path | None = None, *, overwrite: bool = False,
               clock_period: float = 5.0, latency_cutoff: float | None = None,
               part: str = "xcvu13p-flga2577-2-e", top: str = "model", prefer: str = "latency") -> Any:
    """Run the Keras model (float64), the emulator and the pipelined RTL on ``x``.

    The project is written with ``x`` as its ``tb_data`` (so its testbench
    checks exactly these samples) and simulated with Icarus Verilog, one
    sample per clock through the pipeline. Each output word is unpacked into
    mantissas (Python integers) and compared with the emulator's at the same
    scale: no float rounding is involved.

    Args:
        model: a calibrated hgq_fpga Keras model.
        x: inputs (array, or list of arrays); include overflow and edge values.
        output_dir: keep the project here (default: a temporary folder).
        overwrite, clock_period, latency_cutoff, part, top, prefer: as for :func:`~.project.to_rtl`.

    Returns:
        a :class:`~hgq_fpga.backends.hls4ml.VerifyResult` with ``backend="rtl"``
        (per output: ``keras_vs_emulator`` and ``rtl_vs_emulator``).
    """

    from ...calibration import check_inputs
    from ...emulator import emulate_mantissas
    from ...emulator.keras64 import float64_outputs
    from ...frontend.keras import build_ir
    from ..hls4ml.verify import VerifyResult, _output_labels, _temporary_project
    from .project import simulate_project, to_rtl

    arrays = [a.astype(np.float64) for a in check_inputs(model, x)]
    graph = build_ir(model)
    mants = emulate_mantissas(graph, arrays)
    expected = [m.values() for m in mants]
    keras_out = float64_outputs(model, arrays)
    keras_out = keras_out if isinstance(keras_out, list) else [keras_out]
    result = VerifyResult(n_samples=len(arrays[0]), backend="rtl")
    with _temporary_project() as tmp:
        target = Path(output_dir) if output_dir is not None else Path(tmp) / "project"
        t0 = time.perf_counter()
        project = to_rtl(model, target, graph=graph, test_inputs=arrays, clock_period=clock_period,
                         latency_cutoff=latency_cutoff, part=part, top=top, overwrite=overwrite, prefer=prefer)
        t1 = time.perf_counter()
        _, words, _ = simulate_project(project)
        result.seconds = {"convert": t1 - t0, "simulate": time.perf_counter() - t1}
        result.project_dir = str(target) if output_dir is not None else None
    for name, m, exp, kout, got, port in zip(_output_labels(graph), mants, expected, keras_out, words,
                                            project.module.outputs):
        result.outputs.append(_compare(name, m, exp, kout, got, port, len(arrays[0])))
    return result


def _compare(name: str, m: Any, exp: np.ndarray, kout: np.ndarray, got: np.ndarray, port: Any, n: int) -> dict:
    """One output's counts: the simulation's mantissas against the emulator's, as integers."""
    from ..hls4ml.verify import _first_mismatch

    want = np.asarray(m.m, dtype=object).reshape(n, -1)
    shift = port.f - int(m.f)
    have = np.asarray(got, dtype=object).reshape(want.shape)
    have = have // (1 << shift) if shift > 0 else have * (1 << -shift)  # back to the emulator's scale
    rtl_values = np.array([[float(v) for v in row] for row in have], np.float64).reshape(exp.shape) * 2.0**-int(m.f)
    return {"name": name, "size": int(exp.size), "keras_vs_emulator": int(np.count_nonzero(kout != exp)),
            "rtl_vs_emulator": int(np.count_nonzero(have != want)),
            "first_mismatch": _first_mismatch(exp, kout, rtl_values, "rtl")}
