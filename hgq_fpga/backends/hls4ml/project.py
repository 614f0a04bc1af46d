"""``to_hls4ml``: write an hls4ml project for a calibrated hgq_fpga model."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...files import OWNER_FILE, make_staging
from ...ir import Graph, ops as ir
from ...projects import ProjectKind, check_project_target, publish_project
from .fixes import fix_input_types, install_corrections
from .layers import graph_to_layer_list
from .limits import check_limits as _check_limits

__all__ = ["BACKENDS", "STRATEGIES", "CompileError", "SelfCheckError", "check_project", "to_hls4ml"]

BACKENDS = ("Vitis", "Vivado")
#: what overwrite=True may replace: an hls4ml project folder
HLS4ML_PROJECT = ProjectKind("to_hls4ml", "hls4ml_config.yml", "an hls4ml project")
STRATEGIES = ("Latency", "Resource", "distributed_arithmetic")


#: hls4ml's interfaces: arrays (every value at once) or streams (one pixel's channels per word)
IO_TYPES = ("io_parallel", "io_stream")

#: what a vendor part number looks like (letters, digits, '-', '_', '.'): nothing Tcl would interpret
PART_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{2,63}"


def _check_options(backend: str, io_type: str, strategy: str, clock_period: float, part: str,
                   project_name: str = "hgq_fpga_prj", reuse_factor: int = 1) -> None:
    if isinstance(reuse_factor, bool) or not isinstance(reuse_factor, int) or reuse_factor < 1:
        raise ValueError(f"to_hls4ml: reuse_factor must be a whole number >= 1. Received: reuse_factor={reuse_factor!r}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", project_name):
        raise ValueError(
            "to_hls4ml: project_name must be a C++ identifier (letter first, then letters, "
            f"digits, '_'). Received: project_name={project_name!r}"
        )
    if backend not in BACKENDS:
        raise ValueError(f"to_hls4ml: backend must be one of {BACKENDS}. Received: backend={backend!r}")
    if io_type not in IO_TYPES:
        raise ValueError(f"to_hls4ml: io_type must be one of {IO_TYPES}. Received: io_type={io_type!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"to_hls4ml: strategy must be one of {STRATEGIES}. Received: strategy={strategy!r}")
    if strategy == "distributed_arithmetic":
        from ...optional import require_da4ml

        require_da4ml()
    if not 0 < clock_period < float("inf"):
        raise ValueError(f"to_hls4ml: clock_period must be > 0 ns and finite. Received: clock_period={clock_period}")
    if not (isinstance(part, str) and re.fullmatch(PART_PATTERN, part)):
        raise ValueError("to_hls4ml: part must be a part number like xcvu13p-flga2577-2-e (it is written into Tcl "
                         f"scripts as it is). Received: part={part!r}")


def hls_config(output_dir: Path, project: str, backend: str, part: str, clock_period: float,
               io_type: str, strategy: str, reuse_factor: int = 1) -> dict[str, Any]:
    """The hls4ml configuration dict; types come from hls4ml's BitExact pass."""
    return {
        "OutputDir": str(output_dir), "ProjectName": project, "Backend": backend, "Version": "1.0.0",
        "Part": part, "ClockPeriod": clock_period, "ClockUncertainty": "27%", "IOType": io_type,
        "InputData": None, "OutputPredictions": None,
        "HLSConfig": {"Model": {"Precision": "fixed<16,6>", "ReuseFactor": reuse_factor, "Strategy": strategy,
                                "BitExact": True}},
        "WriterConfig": {"Namespace": None, "WriteWeightsTxt": True, "WriteTar": False,
                         "TBOutputStream": "both", "WriteEmulationConstants": False},
    }


def _write_tb_data(directory: Path, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
    """tb_data in hls4ml's format: one sample per line; ``repr`` of float64 is exact."""
    directory.mkdir(parents=True, exist_ok=True)
    for fname, arrays in (("tb_input_features.dat", inputs), ("tb_output_predictions.dat", outputs)):
        flat = np.concatenate([a.reshape(len(a), -1) for a in arrays], axis=1)
        with open(directory / fname, "w") as fh:
            for row in flat:
                fh.write(" ".join(repr(float(v)) for v in row) + "\n")


def _exact_testbench(project_dir: Path, project: str) -> None:
    """Make hls4ml's C testbench read and print doubles at full precision.

    The stock testbench parses inputs into ``float`` and prints 6 digits, which
    hides differences; the vendor C simulation must compare exact values.
    """
    from ...templates import apply_patch

    path = project_dir / f"{project}_test.cpp"
    text = path.read_text()
    patched = apply_patch("exact_testbench.txt", text)  # hls_templates/exact_testbench.txt
    if patched == text:
        raise RuntimeError(f"could not make {path} exact: hls4ml's testbench layout changed")
    path.write_text(patched)


def to_hls4ml(
    model: Any,
    output_dir: str | os.PathLike,
    *,
    backend: str = "Vitis",
    part: str = "xcvu13p-flga2577-2-e",
    clock_period: float = 5.0,
    io_type: str = "io_parallel",
    strategy: str = "Latency",
    overwrite: bool = False,
    project_name: str = "hgq_fpga_prj",
    test_inputs: Any = None,
    graph: Graph | None = None,
    check_limits: bool = True,
    self_check: bool = False,
    reuse_factor: int = 1,
    layer_config: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """Write an hls4ml project (firmware, build scripts, test bench; staged aside, moved in when complete).

    Args:
        model: a calibrated hgq_fpga Keras model.
        output_dir: project folder; refused if it exists unless ``overwrite``.
        backend, part, clock_period: ``"Vitis"`` or ``"Vivado"``; the FPGA part; the clock period (ns).
        io_type: ``"io_parallel"`` (arrays) or ``"io_stream"`` (a tensor ``(..., C)`` as a stream of
            ``C``-value words, pixel by pixel; quantizers' stream C++ from :mod:`.stream`).
        strategy: ``"Latency"``, ``"Resource"`` or ``"distributed_arithmetic"``.
        overwrite: replace an existing ``output_dir``.
        project_name: the HLS top-level name (a C++ identifier).
        test_inputs, graph: samples for ``tb_data`` (default: 16 spanning each input's range); the IR.
        check_limits: refuse kernels too large for ``strategy`` before writing.
        self_check: then build the C simulation and compare it with ``tb_data`` (:func:`check_project`).
        reuse_factor, layer_config: hls4ml's ``ReuseFactor`` for every layer, and per-layer
            ``{"layer name": {"ReuseFactor": 4, "Strategy": "Resource"}}`` (:mod:`.config`).

    Returns:
        the hls4ml model; ``.compile()`` builds its C simulation (g++, without rewriting
        the project; :class:`CompileError`), then ``.predict(x)`` runs it (float64 ``x``).

    Raises:
        FileExistsError: ``output_dir`` exists (without ``overwrite``, or not a project).
        ModelTooLarge: a kernel exceeds what ``strategy`` can unroll.
        UnsupportedForHls4ml: something hls4ml cannot express, or a type hls4ml
            chose that would change the model's values (:mod:`.typecheck`, always run).
        SelfCheckError: with ``self_check``, the C simulation differs from ``tb_data``.
    """
    from ...frontend.keras import build_ir  # a Keras model: built (or taken from the cache) here

    _check_options(backend, io_type, strategy, clock_period, part, project_name, reuse_factor)
    check_project_target(Path(output_dir).absolute(), overwrite, HLS4ML_PROJECT)
    graph = graph if graph is not None else build_ir(model)
    layer_config = _layer_settings(graph, strategy, reuse_factor, layer_config, check_limits)
    options = dict(project=project_name, backend=backend, part=part, clock_period=clock_period, io_type=io_type,
                   strategy=strategy, overwrite=overwrite, reuse_factor=reuse_factor, layer_config=layer_config)
    hls_model = _write_project(graph, Path(output_dir).resolve(), options, test_inputs)
    if self_check:
        check_project(hls_model)
    return hls_model


def _layer_settings(graph: Graph, strategy: str, reuse_factor: int, layer_config: Any,
                    check_limits: bool) -> dict[str, dict[str, Any]]:
    """The checked per-layer settings; the unroll limit under them."""
    from .config import parse_layer_config

    layer_config = parse_layer_config(layer_config, [n.layer for n in graph.nodes if n.layer])
    if layer_config and strategy == "distributed_arithmetic":
        raise ValueError("to_hls4ml: layer_config applies to the Latency and Resource strategies, not to "
                         "distributed_arithmetic (model-wide)")
    if check_limits:
        _check_limits(graph, strategy, reuse_factor, layer_config)
    return layer_config


class SelfCheckError(RuntimeError):
    """The C simulation of a written project differs from its ``tb_data`` (the emulator's outputs)."""


def check_project(hls_model: Any, progress: bool = False) -> int:
    """Build a written project's C simulation and run its ``tb_data`` inputs through it.

    ``tb_data/tb_output_predictions.dat`` holds the emulator's outputs for
    ``tb_input_features.dat`` (16 samples spanning each input's range and its
    edges, or the ``test_inputs`` given to :func:`to_hls4ml`), written as exact
    decimal doubles; every C-simulation output must equal them.

    Returns:
        the number of values compared.

    Raises:
        SelfCheckError: with the number of mismatches and the first one.
        CompileError: g++ failed.
    """
    project_dir = Path(hls_model.config.get_output_dir())
    inputs = np.loadtxt(project_dir / "tb_data" / "tb_input_features.dat", dtype=np.float64, ndmin=2)
    expected = np.loadtxt(project_dir / "tb_data" / "tb_output_predictions.dat", dtype=np.float64, ndmin=2)
    compile_csim(hls_model, progress=progress)
    sizes = [int(np.prod(v.shape)) for v in hls_model.get_input_variables()]
    arrays = np.split(inputs, np.cumsum(sizes)[:-1], axis=1)
    got = hls_model.predict(arrays[0] if len(arrays) == 1 else arrays)
    got = np.concatenate([np.asarray(g, np.float64).reshape(len(inputs), -1)
                          for g in (got if isinstance(got, list) else [got])], axis=1)
    bad = np.argwhere(got != expected)
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise SelfCheckError(
            f"the C simulation of {project_dir} differs from tb_data in {len(bad)} of {expected.size} values "
            f"(first: sample {r}, output value {c}: C simulation {got[r, c]!r}, expected {expected[r, c]!r}). "
            "Please report this model to hgq_fpga; use the emulator's outputs meanwhile."
        )
    return int(expected.size)


def _write_project(graph: Graph, target: Path, options: dict[str, Any], test_inputs: Any) -> Any:
    """Write the project into a staging sibling of ``target``, then move it into place."""
    from hls4ml.backends import get_backend

    from ...compat.hls4ml import ProjectGraph, keep_marked_quantizers
    from ...emulator import emulate_mantissas
    from .config import check_requested_reuse, check_reuse_factors, hls_layer_settings
    from .stream import install_stream_quantizers

    layers, ins, outs, origin = graph_to_layer_list(graph)
    nodes = {n.name: n for n in graph.nodes}
    if test_inputs is None:
        test_inputs = default_test_inputs(graph)
    arrays = list(test_inputs) if isinstance(test_inputs, (list, tuple)) else [test_inputs]
    arrays = [np.asarray(a, np.float64) for a in arrays]
    expected = [m.values() for m in emulate_mantissas(graph, arrays)]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging(target.parent, f".{target.name}.")  # a killed run's leftovers are removed first
    try:
        o = options
        config = hls_config(staging, o["project"], o["backend"], o["part"], o["clock_period"], o["io_type"],
                            o["strategy"], o["reuse_factor"])
        config["HLSConfig"]["LayerName"] = hls_layer_settings(layers, origin, nodes, o["layer_config"])
        install_corrections()
        keep_marked_quantizers()
        install_stream_quantizers()
        requested, user = _requested_reuse(layers, config, origin, nodes)
        check_requested_reuse(get_backend(o["backend"]), layers, requested, user)
        with warnings.catch_warnings():  # hls4ml's 24-bit input rule, which fix_input_types replaces
            warnings.filterwarnings("ignore", message="Saturation mode .* may compromise bit-exactness")
            hls_model = ProjectGraph.from_layer_list(config, layers, ins, outs)
        check_reuse_factors(hls_model, requested, user)
        fix_input_types(hls_model)
        if o["strategy"] != "distributed_arithmetic":  # DA: da4ml's traced logic absorbs the quantizers
            _refuse_wrong_types(hls_model, graph, origin)
        hls_model.write()
        _exact_testbench(staging, o["project"])
        _write_tb_data(staging / "tb_data", arrays, expected)
        (staging / "hgq_fpga_layers.json").write_text(json.dumps(origin, indent=1, sort_keys=True))
        _reproducible(staging, hls_model)
        (staging / OWNER_FILE).unlink()  # the project itself carries no trace of the process
        publish_project(staging, target, o["overwrite"], HLS4ML_PROJECT)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    hls_model.config.config["OutputDir"] = str(target)
    return hls_model


def _requested_reuse(layers: list[dict[str, Any]], config: dict[str, Any], origin: dict[str, str],
                     nodes: dict[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
    """``({hls dense/conv layer: reuse factor asked for}, {hls layer: the user's layer name})``."""
    default = config["HLSConfig"]["Model"]["ReuseFactor"]
    per_layer = config["HLSConfig"]["LayerName"]
    requested = {d["name"]: per_layer.get(d["name"], {}).get("ReuseFactor", default) for d in layers
                 if d["class_name"] in ("Dense", "Conv1D", "Conv2D")}
    user = {name: getattr(nodes.get(origin.get(name, "")), "layer", name) for name in requested}
    return requested, user


def _refuse_wrong_types(hls_model: Any, graph: Graph, origin: dict[str, str]) -> None:
    """Our own check of every type hls4ml chose (:mod:`.typecheck`); refuse before writing."""
    from .layers import UnsupportedForHls4ml
    from .typewalk import check_types, format_problems

    problems = check_types(hls_model, graph, origin)
    if problems:
        raise UnsupportedForHls4ml(
            "hls4ml chose types with which the firmware would differ from the model (checked by hgq_fpga "
            "against the model's exact values):\n" + format_problems(problems) + "\nNothing was written. "
            "Change the named layers' quantizers (more integer or fractional bits, or another rounding or "
            "overflow mode), or report the model to hgq_fpga if it should convert."
        )


class CompileError(RuntimeError):
    """g++ could not build a project's C simulation; the message has its output and the project path."""


def compile_csim(hls_model: Any, progress: bool = False) -> None:
    """Build the C simulation library of a written project and load it into ``hls_model``.

    Does what hls4ml's ``ModelGraph._compile`` does (run ``build_lib.sh``, load
    ``firmware/<project>-<stamp>.so``), but keeps the compiler's output: on
    failure it raises :class:`CompileError` with the last lines g++ printed,
    the project path and the command to reproduce it. ``progress`` shows the
    elapsed time while g++ runs (10-30 s for small models). An interruption
    (Ctrl-C) stops g++ too.
    """
    from ...compat.hls4ml import load_library

    project_dir = Path(hls_model.config.get_output_dir())
    from ...processes import run_in_group

    code, output = run_in_group(["bash", "./build_lib.sh"], project_dir, progress=progress,
                                desc=f"g++: C simulation of {project_dir.name}")  # Ctrl-C stops g++ too
    if code != 0:
        log = output.strip().splitlines()
        errors = [line for line in log if "error" in line.lower()][:20]
        raise CompileError(
            f"g++ failed to build the C simulation of the project {project_dir} (exit {code}). "
            f"To reproduce: cd {project_dir} && ./build_lib.sh\n--- compiler errors ---\n" + "\n".join(errors)
            + "\n--- last lines of the compiler output ---\n" + "\n".join(log[-15:])
        )
    library = project_dir / "firmware" / f"{hls_model.config.get_project_name()}-{hls_model.config.get_config_value('Stamp')}.so"
    load_library(hls_model, library)


def _reproducible(staging: Path, hls_model: Any) -> None:
    """Make the project a function of the model and the options only.

    hls4ml names the C simulation library with a random stamp and records the
    (temporary) output folder in ``hls4ml_config.yml``. The stamp becomes a
    digest of the firmware sources -- different models still get different
    library names, so several can be loaded in one process -- and the
    recorded folder becomes ``.`` (the project folder itself).
    """
    old = str(hls_model.config.config["Stamp"])
    digest = hashlib.sha256()
    for path in sorted(p for p in (staging / "firmware").rglob("*") if p.is_file()):
        digest.update(path.relative_to(staging).as_posix().encode())
        digest.update(path.read_bytes())
    new = digest.hexdigest()[: len(old)]
    for path in sorted(p for p in staging.rglob("*") if p.is_file() and p.suffix in ("", ".sh", ".yml", ".tcl")):
        text = path.read_text(errors="surrogateescape")
        fixed = text.replace(str(staging), ".").replace(old, new)
        if path.name == "hls4ml_config.yml":  # YAML quotes a stamp like '12345678' but not 'abcdef12'
            fixed = re.sub(r"^Stamp: .*$", f"Stamp: '{new}'", fixed, flags=re.MULTILINE)
        if fixed != text:
            path.write_text(fixed, errors="surrogateescape")
    hls_model.config.config["Stamp"] = new


def default_test_inputs(graph: Graph, n: int = 16) -> list[np.ndarray]:
    """Deterministic samples around each input quantizer's range (edges included)."""
    rng = np.random.default_rng(0)
    out = []
    for name in graph.inputs:
        consumer = next(nd for nd in graph.nodes if name in nd.inputs)
        shape = graph.tensors[name].shape
        if isinstance(consumer, ir.Quantize):
            k, i = consumer.k, consumer.i
            top = np.exp2(i.astype(float))
            x = rng.uniform(-1.5, 1.5, (n,) + shape) * top
            x[0], x[1] = top - np.exp2(-consumer.f.astype(float)), -k * top
        else:
            x = rng.standard_normal((n,) + shape)
        out.append(x)
    return out
