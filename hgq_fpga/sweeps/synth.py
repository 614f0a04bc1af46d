"""``synthesize_many``: synthesize many models in parallel (a sweep's front, or
any ``.keras`` files), locally or on Ray, and read the counts back.

* ``tool="yosys"``: the Verilog of :func:`hgq_fpga.to_verilog`, synthesized
  by ``yosys synth_xilinx -flatten`` (flattened, as synthesis tools run by
  default): LUT, CARRY, DSP, FF counts. yosys must be on each worker's PATH.
* ``tool="vivado"`` / ``"vitis"``: the hls4ml project of
  :func:`hgq_fpga.to_hls4ml`, built with the vendor's HLS tool (``vivado_hls``
  or ``vitis_hls``, which must be on each worker's PATH), and its reports read
  back with :func:`hgq_fpga.resources.read_vendor_report`.

Each task gets the model as ``.keras`` bytes, so the workers need not share
the caller's file system. For a sweep folder the counts go into
``trials/<key>/synth-<tool>.json`` and into ``results.csv`` as ``<tool>_lut``,
``<tool>_ff``, ... columns.

Example::

    rows = hgq_fpga.synthesize_many("out/sweep", tool="yosys", workers=2)
    rows[0]["yosys_lut"], rows[0]["lut"]      # synthesized vs estimated
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .folder import SweepFolder, pareto_front
from .runners import Outcome, run_tasks
from .trial import load_model_bytes, thread_env

__all__ = ["SYNTH_TOOLS", "synthesize_many"]

#: tool -> the executables that must be on PATH (any one of them)
SYNTH_TOOLS = {"yosys": ("yosys",), "vivado": ("vivado_hls", "vivado"), "vitis": ("vitis_hls", "vitis-run")}


def _find_tool(tool: str) -> str:
    if tool not in SYNTH_TOOLS:
        raise ValueError(f"tool must be one of {', '.join(SYNTH_TOOLS)}; received tool={tool!r}")
    found = next((t for t in SYNTH_TOOLS[tool] if shutil.which(t)), None)
    if found is None:
        from ..backends.rtl import ToolMissingError
        from ..backends.rtl.synth import _INSTALL

        how = _INSTALL.get(tool, f"source the vendor's settings64.sh so that {' or '.join(SYNTH_TOOLS[tool])} "
                                 f"is on PATH")
        raise ToolMissingError(f"tool={tool!r} needs {' or '.join(SYNTH_TOOLS[tool])} on PATH; {how}")
    return found


def _inputs(models_or_dirs: Any, front: bool) -> tuple[SweepFolder | None, list[tuple[str, Path]]]:
    """The sweep folder (if one was given) and ``(key, .keras path)`` pairs."""
    if isinstance(models_or_dirs, (str, os.PathLike)) and Path(models_or_dirs).is_dir():
        folder = SweepFolder(models_or_dirs)
        if folder.saved_spec() is None:
            raise ValueError(f"{models_or_dirs} is a folder without sweep.json; give a sweep folder or .keras files")
        keys = pareto_front(folder.rows()) if front else sorted(folder.finished())
        return folder, [(k, folder.model_path(k)) for k in keys]
    if front:
        raise ValueError("front=True (--front) needs a sweep folder: its table says which trials are on the front")
    paths = [models_or_dirs] if isinstance(models_or_dirs, (str, os.PathLike)) else list(models_or_dirs)
    out = []
    for p in map(Path, paths):
        if p.suffix != ".keras" or not p.is_file():
            raise ValueError(f"{p}: not a .keras file (give a sweep folder or .keras files)")
        out.append((p.stem, p))
    keys = [k for k, _ in out]
    if len(set(keys)) != len(keys):
        out = [(f"{i}_{k}", p) for i, (k, p) in enumerate(out)]
    return None, out


def synth_task(shared: dict[str, Any], model_bytes: bytes) -> dict[str, Any]:
    """One synthesis on a worker: the model from its bytes, then yosys or the vendor tool."""
    with tempfile.TemporaryDirectory(prefix="hgq_fpga_synth_") as d:
        model = load_model_bytes(model_bytes, Path(d))
        if shared["tool"] == "yosys":
            from ..backends.rtl import synthesize

            r = synthesize(model, flatten=True, family=shared["family"], timeout=shared["timeout"])
            return {"lut": r.lut, "ff": r.ff, "carry": r.carry, "dsp": r.dsp, "inv": r.inv,
                    "seconds": round(r.seconds, 3), "family": r.family}
        return _vendor(model, Path(d), shared)


def _vendor(model: Any, d: Path, shared: dict[str, Any]) -> dict[str, Any]:
    import time

    from ..backends.hls4ml import to_hls4ml
    from ..processes import run_in_group
    from ..resources import read_vendor_report

    project = d / "project"
    backend = "Vitis" if shared["tool"] == "vitis" else "Vivado"
    to_hls4ml(model, project, backend=backend, part=shared["part"])
    exe = _find_tool(shared["tool"])
    cmd = [exe, "--tcl", "build_prj.tcl"] if exe == "vitis-run" else [exe, "-f", "build_prj.tcl"]
    t0 = time.perf_counter()
    # in a process group of its own: an interrupted or timed-out build takes the vendor tool's children with it
    code, output = run_in_group(cmd, project, desc=f"{exe} build", timeout=shared["timeout"])
    if code != 0:
        raise RuntimeError(f"{exe} failed (exit {code}):\n{output[-2000:]}")
    r = read_vendor_report(project)
    return {"lut": r.lut, "ff": r.ff, "dsp": r.dsp, "bram": r.bram, "latency_cycles": r.latency_cycles,
            "seconds": round(time.perf_counter() - t0, 3), "source": str(r.source)}


def synthesize_many(
    models_or_dirs: str | os.PathLike | Sequence[str | os.PathLike], *, tool: str = "yosys", runner: str = "local",
    workers: int | None = None, cpus_per_task: float = 1, address: str | None = None, retries: int = 1,
    family: str = "xc7", part: str = "xcvu13p-flga2577-2-e", timeout: float = 3600.0, front: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Synthesize each model in parallel (see the module docstring).

    Args:
        models_or_dirs: a sweep folder (every stored trial), or ``.keras`` files.
        tool: ``"yosys"``, ``"vivado"`` or ``"vitis"``.
        runner, workers, address, retries: as for :func:`hgq_fpga.sweep`.
        cpus_per_task: CPUs each synthesis may use (Ray schedules by it).
        family: yosys's ``-family`` (``xc7``, ``xcu``, ``xcup``).
        part: the FPGA part of the vendor projects.
        timeout: seconds per synthesis.
        front: a sweep folder's Pareto front only (accuracy against estimated LUTs:
            :func:`~hgq_fpga.sweeps.folder.pareto_front`).

    Returns:
        One row per model: ``trial`` (the sweep key or the file's stem) and
        ``<tool>_lut``, ``<tool>_ff``, ...; for a sweep folder, its whole table
        (``results.csv`` is rewritten with the new columns). A failed
        synthesis has ``<tool>_error``.
    """
    from .runners import check_runner

    check_runner(runner, workers, retries)
    _find_tool(tool)  # before any work: the tool is missing here, it is likely missing on the workers too
    folder, items = _inputs(models_or_dirs, front)
    shared = {"tool": tool, "family": family, "part": part, "timeout": timeout}
    results: dict[str, dict[str, Any]] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc=f"{tool} syntheses", unit="model", disable=not progress or not items)

    def on_result(key: str, out: Outcome) -> None:
        value = dict(out.value) if out.ok else {"error": (out.error or "failed").splitlines()[0]}
        results[key] = value
        if folder is not None:
            folder.store_extra(key, f"synth-{tool}", value)
        bar.update(1)

    try:
        run_tasks(synth_task, [(k, (p.read_bytes(),)) for k, p in items], shared=shared, on_result=on_result,
                  runner=runner, workers=workers, retries=retries, cpus=cpus_per_task, address=address,
                  env=thread_env(cpus_per_task))
    finally:
        bar.close()
    if folder is not None:
        rows = folder.rows()
        folder.write_tables(rows)
        return rows
    return [{"trial": k, **{f"{tool}_{n}": v for n, v in results[k].items()}} for k, _ in items if k in results]
