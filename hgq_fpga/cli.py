"""The ``hgq-fpga`` command: a saved model through the flow.

Exit codes (for scripts):

====  ==============================================================
0     success
1     the check failed: a verification mismatch, an unmet budget
2     bad input: usage, a missing or unreadable file, wrong shapes,
      NaN data, an existing output folder, an uncalibrated model
3     a required external tool or optional package is missing
      (Vitis/Vivado, yosys, da4ml)
4     the C simulation did not compile (g++'s message is printed)
130   interrupted (Ctrl-C, SIGTERM); nothing half-written is left
====  ==============================================================

Model files are loaded with Keras's safe mode (no code from the file is run).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .cli_files import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    CliError,
    checked_data,
    fresh_output,
    model_from_args,
    write_output,
)
from .cli_rtl import add_prefer, convert_rtl, refuse_hls_flags, refuse_rtl_flags

__all__ = ["EXIT_BAD_INPUT", "EXIT_CHECK_FAILED", "EXIT_COMPILE_FAILED", "EXIT_INTERRUPTED", "EXIT_OK",
           "EXIT_TOOL_MISSING", "main"]

EXIT_TOOL_MISSING = 3
EXIT_COMPILE_FAILED, EXIT_INTERRUPTED = 4, 130

_EPILOG = """exit codes: 0 success; 1 check failed (verification mismatch, budget unmet);
2 bad input (usage, missing file, wrong shapes, NaN, existing output folder, uncalibrated model);
3 external tool or optional package missing (Vitis/Vivado, yosys, da4ml); 4 the C simulation did not compile (g++'s
message and the project path are printed); 130 interrupted (Ctrl-C; no half-written project is left)."""


# -- subcommands ------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    from .backends.hls4ml import to_hls4ml

    if args.backend == "rtl":
        refuse_hls_flags(args)
    else:
        refuse_rtl_flags(args)
    out = fresh_output(args.output, args.overwrite, "project")
    model = model_from_args(args)
    if args.backend == "rtl":
        return convert_rtl(args, out, model)
    try:
        hls_model = to_hls4ml(model, out, backend=args.backend, part=args.part, clock_period=args.clock_period,
                              overwrite=args.overwrite, project_name=args.project_name,
                              check_limits=not args.no_check_limits, **_hls_settings(args))
    except (ValueError, FileExistsError) as e:
        raise CliError(str(e)) from e
    print(f"wrote the hls4ml project to {out}")
    if args.self_check:
        from .backends.hls4ml import SelfCheckError, check_project

        try:
            n = check_project(hls_model, progress=True)
        except SelfCheckError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_CHECK_FAILED
        print(f"self-check: the C simulation reproduces tb_data ({n} values, 0 mismatches)")
    return EXIT_OK


def cmd_emulate(args: argparse.Namespace) -> int:
    import numpy as np

    from .emulator import emulate

    out = fresh_output(args.output, args.overwrite)
    model = model_from_args(args)
    x = checked_data(model, args.data)
    y = emulate(model, x)
    buffer = io.BytesIO()
    if isinstance(y, list):
        np.savez(buffer, *y)
    else:
        np.save(buffer, y)
    write_output(out, buffer.getvalue(), args.overwrite)  # atomic: never a truncated file, never through a link
    shapes = [a.shape for a in (y if isinstance(y, list) else [y])]
    print(f"emulated {len(x[0] if isinstance(x, list) else x)} samples -> {out} {shapes}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from .backends.hls4ml import verify

    if args.output_dir:
        fresh_output(args.output_dir, args.overwrite, "project", "--output-dir")
    if args.backend == "rtl":
        refuse_hls_flags(args)
    model = model_from_args(args)
    x = checked_data(model, args.data)
    try:
        settings = {} if args.backend == "rtl" else _hls_settings(args)
        if args.backend == "rtl":
            result = verify(model, x, output_dir=args.output_dir, overwrite=args.overwrite, backend="rtl")
            print(result)
            return EXIT_OK if result.ok else EXIT_CHECK_FAILED
        result = verify(model, x, output_dir=args.output_dir, overwrite=args.overwrite, backend=args.backend,
                        check_limits=not args.no_check_limits, progress=True, **settings)
    except ValueError as e:
        raise CliError(str(e)) from e
    print(result)
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    fresh_output(args.output, args.overwrite, "report")
    model = model_from_args(args)
    data = checked_data(model, args.data) if args.data else None
    files = write_report(model, args.output, data=data, overwrite=args.overwrite, strategy=args.strategy,
                         model_path=args.model,
                         part=args.part, progress=True)
    print(f"wrote {files.html} and {len(files.plots)} plots")
    return EXIT_OK


def _vendor_tool(backend: str) -> str | None:
    names = ("vitis-run", "vitis_hls") if backend == "Vitis" else ("vivado_hls", "vivado")
    return next((n for n in names if shutil.which(n)), None)


def cmd_synth(args: argparse.Namespace) -> int:
    from .resources import read_vendor_report

    project = Path(args.project)
    if not project.is_dir():
        raise CliError(f"{project}: no such folder (expected a project written by 'hgq-fpga convert', hls4ml or "
                       f"--backend rtl, or a sweep folder written by 'hgq-fpga sweep')")
    if (project / "sweep.json").is_file():
        from .cli_sweep import cmd_synth_sweep

        return cmd_synth_sweep(args)
    if (project / "hgq_fpga_rtl.json").is_file():
        from .cli_rtl import synth_rtl

        return synth_rtl(args)
    if args.read_only:
        report = read_vendor_report(project)
    else:
        tool = _vendor_tool(args.backend)
        if tool is None:
            raise CliError(
                f"synth: no {args.backend} tools on PATH (looked for "
                f"{'vitis-run, vitis_hls' if args.backend == 'Vitis' else 'vivado_hls, vivado'}). Source the "
                f"vendor's settings64.sh first, or estimate without vendor tools: 'hgq-fpga estimate MODEL.keras' "
                f"(and hgq_fpga.backends.rtl.synthesize for yosys).", EXIT_TOOL_MISSING)
        script = project / "build_prj.tcl"
        if not script.is_file():
            raise CliError(f"{project}: no build_prj.tcl; is it an hls4ml project?")
        cmd = ([tool, "--tcl", script.name] if tool == "vitis-run" else [tool, "-f", script.name])
        print("running:", " ".join(cmd), f"(in {project})")
        proc = subprocess.run(cmd, cwd=project, check=False)
        if proc.returncode != 0:
            raise CliError(f"synth: {tool} failed with exit code {proc.returncode}; see the logs in {project}",
                           EXIT_CHECK_FAILED)
        report = read_vendor_report(project)
    print(f"LUT {report.lut}, FF {report.ff}, DSP {report.dsp}, BRAM18 {report.bram}, "
          f"latency {report.latency_cycles} cycles (from {report.source})")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    examples = Path(__file__).resolve().parents[1] / "examples" / "digits_mlp.py"
    if not examples.is_file():
        raise CliError("demo: examples/digits_mlp.py is not next to the package (run from a clone of the repository)")
    out = Path(args.out)
    cmd = [sys.executable, str(examples), "--epochs", str(args.epochs), "--lut-budget", str(args.lut_budget),
           "--output", str(out / "digits_mlp.keras"), "--json", str(out / "digits_mlp.json"),
           "--project", str(out / "digits_mlp_hls4ml"), "--report", str(out / "digits_mlp_report")]
    if args.overwrite:
        cmd.append("--overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run(cmd, check=False).returncode


# -- parser ---------------------------------------------------------------------------
def _part(text: str) -> str:
    """An FPGA part number as vendors write them (it goes into Tcl scripts verbatim)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{2,63}", text):
        raise argparse.ArgumentTypeError(
            f"expected a part number like xcvu13p-flga2577-2-e (letters, digits, '-', '_', '.'), received {text!r}")
    return text


def _hls_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``strategy``, ``reuse_factor``, ``layer_config`` from the flags and ``--config`` (flags win)."""
    from .backends.hls4ml.config import read_config_file

    model_cfg, layer_cfg = read_config_file(args.config) if args.config else ({}, {})
    return {"strategy": args.strategy or model_cfg.get("Strategy", "Latency"),
            "reuse_factor": args.reuse_factor or model_cfg.get("ReuseFactor", 1),
            "io_type": args.io_type or model_cfg.get("IOType", "io_parallel"),
            "layer_config": layer_cfg or None}


def _whole(text: str) -> int:
    """A whole number >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, received {text!r}")
    return value


def _hls_options(p: argparse.ArgumentParser) -> None:
    """``--strategy``, ``--reuse-factor`` and ``--config`` (hls4ml's settings, in hls4ml's terms)."""
    p.add_argument("--strategy", default=None, choices=("Latency", "Resource", "distributed_arithmetic"),
                   help="hls4ml strategy for every layer (default Latency, or the --config file's Model.Strategy)")
    p.add_argument("--reuse-factor", type=_whole, default=None, metavar="N",
                   help="hls4ml ReuseFactor for every layer (default 1, or the --config file's Model.ReuseFactor)")
    p.add_argument("--io-type", default=None, choices=("io_parallel", "io_stream"),
                   help="hls4ml interface: io_parallel (arrays) or io_stream (a stream of pixels; "
                        "for convolutional models) (default io_parallel, or the --config file's IOType)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="YAML or JSON like hls4ml's HLSConfig: IOType, Model: {Strategy, ReuseFactor}, "
                        "LayerName: {<your layer name>: {ReuseFactor, Strategy}}")


def _positive(text: str) -> float:
    """A finite number > 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, received {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, received {text!r}")
    return value


def _common(p: argparse.ArgumentParser, *, calibration: bool = True) -> None:
    p.add_argument("model", help="a .keras model of hgq_fpga layers (calibrated, or see --calibration)")
    p.add_argument("--max-model-mib", type=_positive, default=None, metavar="MIB",
                   help="largest model file to read, uncompressed (default 256 MiB; see hgq_fpga.loading)")
    if calibration:
        p.add_argument("--calibration", metavar="DATA.npy", help="calibrate on these inputs first")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """The epilog as written, and an option's default after its help (unless the help names it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


_FMT = _Formatter
_PART_HELP = "FPGA part number, as Vivado names it (known devices give utilization in %%)"
_STRATEGY_HELP = ("what the estimate counts: Latency (every multiplication by a constant as shifts and adds, or "
                  "a DSP when wide) or distributed_arithmetic (da4ml adder graphs; needs pip install 'hgq_fpga[da]')")


def _add_convert(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``convert`` subcommand."""
    p = sub.add_parser("convert", help="write an hls4ml project or a Verilog project", epilog=_EPILOG, formatter_class=_FMT)
    _common(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="project folder (must not exist)")
    p.add_argument("--backend", default="Vitis", choices=("Vitis", "Vivado", "rtl"),
                   help="hls4ml backend (the HLS tool), or rtl: a pipelined Verilog project (testbench, "
                        "constraints, Vivado and yosys scripts)")
    p.add_argument("--part", type=_part, default="xcvu13p-flga2577-2-e", help=_PART_HELP)
    p.add_argument("--clock-period", type=_positive, default=5.0, metavar="NS", help="target clock period in ns")
    p.add_argument("--latency-cutoff", type=_positive, default=None, metavar="NS",
                   help="rtl: estimated logic delay allowed between registers (default 70%% of the clock period)")
    add_prefer(p)
    _hls_options(p)
    p.add_argument("--project-name", default="hgq_fpga_prj", metavar="NAME",
                   help="HLS top-level name (a C++ identifier)")
    p.add_argument("--overwrite", action="store_true", help="replace a project folder hgq-fpga wrote before")
    p.add_argument("--no-check-limits", action="store_true",
                   help="write kernels larger than the HLS tools unroll (4096 multiplications) anyway")
    p.add_argument("--self-check", action="store_true",
                   help="then build the C simulation (g++, 10-30 s), or with --backend rtl run the Verilog testbench "
                        "(Icarus Verilog), and check it reproduces the project's tb_data")
    p.set_defaults(func=cmd_convert)


def _add_emulate_verify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``emulate`` and ``verify`` subcommands."""
    p = sub.add_parser("emulate", help="bit-exact firmware outputs of a data file", epilog=_EPILOG,
                       formatter_class=_FMT)
    _common(p)
    p.add_argument("data", help="inputs: .npy, or .npz with one array per model input")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npy", help=".npy (.npz for several outputs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_emulate)

    p = sub.add_parser("verify", help="Keras = emulator = C simulation, bit for bit", epilog=_EPILOG,
                       formatter_class=_FMT)
    _common(p)
    p.add_argument("data", help="inputs: .npy or .npz (include values far outside the training range)")
    p.add_argument("--output-dir", metavar="DIR", help="keep the project here (default: a temporary folder)")
    p.add_argument("--backend", default="Vitis", choices=("Vitis", "Vivado", "rtl"),
                   help="hls4ml backend (the C simulation is compared), or rtl (the Verilog project's "
                        "Icarus Verilog simulation is compared)")
    _hls_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace a project folder hgq-fpga wrote before")
    p.add_argument("--no-check-limits", action="store_true",
                   help="convert kernels larger than the HLS tools unroll (4096 multiplications) anyway")
    p.set_defaults(func=cmd_verify)


def _add_report_synth_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report``, ``synth`` and ``demo`` subcommands."""
    p = sub.add_parser("report", help="HTML report: bits, resources, formats (and verification)",
                       epilog=_EPILOG, formatter_class=_FMT)
    _common(p)
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="report folder (must not exist)")
    p.add_argument("--data", metavar="DATA.npy", help="also verify on these inputs (compiles the C simulation)")
    p.add_argument("--strategy", default="Latency", choices=("Latency", "distributed_arithmetic"),
                   help=_STRATEGY_HELP)
    p.add_argument("--part", type=_part, default="xcvu13p-flga2577-2-e", help=_PART_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace a report folder hgq-fpga wrote before")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("synth", help="synthesize a sweep's models (yosys, in parallel) or build an hls4ml project "
                       "with the vendor tool; read the reports", epilog=_EPILOG, formatter_class=_FMT)
    p.add_argument("project", help="a sweep folder ('hgq-fpga sweep'), an hls4ml project folder or an RTL project "
                   "('convert --backend rtl')")
    p.add_argument("--backend", default="Vitis", choices=("Vitis", "Vivado"),
                   help="hls4ml project: the vendor tool to run")
    p.add_argument("--read-only", action="store_true", help="hls4ml project: only read the reports of an earlier build")
    p.add_argument("--tool", default="yosys", choices=("yosys", "vivado", "vitis"),
                   help="sweep folder: yosys (flattened synth_xilinx of each model's Verilog) or the vendor HLS tool; "
                        "RTL project: its build_yosys.ys or build_vivado.tcl")
    p.add_argument("--front", action="store_true",
                   help="sweep folder: only the trials on the Pareto front (accuracy against estimated LUTs)")
    from .cli_sweep import runner_options

    runner_options(p, what="synthesis")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("demo", help="train under a LUT budget, estimate, convert, verify and report the digits MLP",
                       epilog=_EPILOG, formatter_class=_FMT)
    p.add_argument("--epochs", type=_whole, default=60, help="training epochs")
    p.add_argument("--lut-budget", type=_whole, default=20_000, help="the LUT budget of the training")
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo")
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="hgq-fpga", description="From a trained hgq_fpga Keras model to FPGA firmware.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hgq-fpga {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from .cli_estimate import add_estimate

    add_estimate(sub)
    _add_convert(sub)
    _add_emulate_verify(sub)
    _add_report_synth_demo(sub)
    from .cli_sweep import add_sweep_command

    add_sweep_command(sub, _FMT, _EPILOG)
    return parser


#: library wording -> the CLI's flags, for messages that come from the Python API
_CLI_TERMS = (("overwrite=True (--overwrite)", "--overwrite"), ("overwrite=True", "--overwrite"),
              ("Choose another output_dir", "Choose another output folder"), ("output_dir", "output folder"),
              ("strategy=", "--strategy "), ("reuse_factor=", "--reuse-factor "), ("io_type=", "--io-type "),
              ("clock_period=", "--clock-period "), ("part=", "--part "), ("project_name=", "--project-name "))


def _in_cli_terms(message: str) -> str:
    """A library message with Python argument names replaced by the CLI's flags."""
    for python, flag in _CLI_TERMS:
        message = message.replace(python, flag)
    return message


def _error(args: argparse.Namespace, e: BaseException | str, code: int) -> int:
    print(f"hgq-fpga {args.command}: error: {_in_cli_terms(str(e))}", file=sys.stderr)
    return code


def _exit_code(e: Exception) -> int | None:
    """The exit code of an error the CLI reports in one line (None: a bug, shown with its traceback)."""
    from .optional import MissingDependencyError

    if isinstance(e, CliError):
        return e.code
    from .sweeps.core import SweepError

    if isinstance(e, SweepError):
        return EXIT_CHECK_FAILED
    if isinstance(e, MissingDependencyError):
        return EXIT_TOOL_MISSING
    if isinstance(e, (FileNotFoundError, FileExistsError, ValueError)):
        return EXIT_BAD_INPUT
    from .backends.hls4ml import CompileError
    from .backends.rtl import ToolMissingError

    if isinstance(e, CompileError):
        return EXIT_COMPILE_FAILED
    if isinstance(e, ToolMissingError):
        return EXIT_TOOL_MISSING
    return None


def _prepare(args: argparse.Namespace) -> None:
    """Checks that need no model: optional packages, the part."""
    if getattr(args, "strategy", None) == "distributed_arithmetic":
        from .optional import require_da4ml

        require_da4ml()
    part = getattr(args, "part", None)
    if part is not None:
        from .resources.parts import device, known_devices

        if device(part) is None:
            print(f"hgq-fpga {args.command}: warning: part {part!r} is not in hgq_fpga's device table "
                  f"({known_devices()}); check the part number. The estimate does not depend on it beyond the "
                  "DSP family; utilization in % is not shown.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hgq-fpga`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    from .processes import signal_received, sigterm_as_interrupt

    sigterm_as_interrupt()  # SIGTERM cleans up like Ctrl-C: staging folders, temporary projects, g++
    try:
        _prepare(args)
        code = int(args.func(args))
        if signal_received() is not None:  # the KeyboardInterrupt was swallowed on the way
            raise KeyboardInterrupt
        return code
    except KeyboardInterrupt:
        print(f"hgq-fpga {args.command}: interrupted; projects and output files are written aside and "
              "moved into place when complete, so nothing half-written was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        code = _exit_code(e)
        if code is None:
            raise
        return _error(args, e, code)


if __name__ == "__main__":
    raise SystemExit(main())

