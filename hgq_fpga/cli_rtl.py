"""``hgq-fpga convert --backend rtl``: the Verilog project and its self-check."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli_files import EXIT_CHECK_FAILED, EXIT_OK, CliError

__all__ = ["PREFER_HELP", "add_prefer", "convert_rtl", "refuse_hls_flags", "refuse_rtl_flags", "synth_rtl"]

PREFER_HELP = ("rtl: how each dense/conv layer's adder graph is chosen: 'latency' (default: the fewest LUTs that keep "
               "the pipeline as short as da4ml's greedy graphs) or 'luts' (the fewest LUTs, as da4ml chooses; "
               "on small layers of narrow weights up to a third fewer, for a cycle or two more)")


def add_prefer(p: argparse.ArgumentParser) -> None:
    """The ``--prefer`` flag of ``convert`` and ``estimate``."""
    p.add_argument("--prefer", choices=("latency", "luts"), default=None, help=PREFER_HELP)


def refuse_rtl_flags(args: argparse.Namespace) -> None:
    """An hls4ml backend takes no RTL-only flag: say which was given."""
    if getattr(args, "prefer", None) is not None:
        raise CliError(f"--prefer chooses the adder graphs of --backend rtl; --backend {args.backend} writes hls4ml's "
                       "own (drop --prefer, or give --backend rtl)")


def refuse_hls_flags(args: argparse.Namespace) -> None:
    """``--backend rtl`` takes no hls4ml settings: say which flag was given."""
    for flag in ("strategy", "reuse_factor", "io_type", "config"):
        if getattr(args, flag, None) is not None:
            raise CliError(f"--{flag.replace('_', '-')} is an hls4ml setting; --backend rtl writes a Verilog project "
                           "whose structure hgq_fpga fixes (drop the flag, or use --backend Vitis/Vivado)")


def convert_rtl(args: argparse.Namespace, out: Any, model: Any) -> int:
    """``convert --backend rtl``: the pipelined Verilog project, and with ``--self-check`` its testbench."""
    from .backends.rtl import run_testbench, to_rtl

    try:
        project = to_rtl(model, out, clock_period=args.clock_period, latency_cutoff=args.latency_cutoff,
                         part=args.part, overwrite=args.overwrite, prefer=args.prefer or "latency")
    except (ValueError, FileExistsError) as e:
        raise CliError(str(e)) from e
    m = project.module
    print(f"wrote the RTL project to {out}: latency {m.latency} cycles ({m.latency_ns:g} ns at {m.clock_period:g} ns), "
          f"{m.ff} flip-flops; make sim | yosys | vivado there")
    if args.self_check:
        passed, _, log = run_testbench(project)
        if not passed:
            print(f"error: the testbench failed:\n{log[-2000:]}", file=sys.stderr)
            return EXIT_CHECK_FAILED
        print(f"self-check: {log.strip().splitlines()[-1]}")
    return EXIT_OK


def synth_rtl(args: argparse.Namespace) -> int:
    """``hgq-fpga synth RTL_DIR [--tool yosys|vivado]``: the project's own build script, its
    cell counts beside the ones the project was written with."""
    from .backends.rtl.build import TOOLS, logic_path, project_estimate, synthesize_project
    from .backends.rtl.synth import ToolMissingError

    if args.tool not in TOOLS:
        raise CliError(f"synth: an RTL project is built with --tool yosys or --tool vivado, not --tool {args.tool}")
    try:
        result = synthesize_project(args.project, tool=args.tool, progress=True)
    except ToolMissingError as e:
        raise CliError(str(e), 3) from e  # EXIT_TOOL_MISSING (hgq_fpga.cli)
    except RuntimeError as e:
        raise CliError(str(e), EXIT_CHECK_FAILED) from e
    except FileExistsError as e:  # a link planted in reports/
        raise CliError(str(e)) from e
    est = project_estimate(args.project)
    print(f"{'':<10} {'LUT':>9} {'FF':>9} {'CARRY':>7} {'DSP':>5}")
    print(f"{'estimate':<10} {est.get('lut', '-')!s:>9} {est['ff']!s:>9} {est.get('carry', '-')!s:>7} {0:>5}")
    print(f"{args.tool:<10} {result.lut:>9} {result.ff:>9} {result.carry:>7} {result.dsp:>5}")
    print(f"latency {est['latency_cycles']} cycles; reports in {args.project}/reports ({result.seconds:.0f} s)")
    if args.tool == "yosys" and est["stage_cells"]:
        path = logic_path(args.project)
        print(f"longest logic path between registers: {path.cells} cells ({path.luts} LUT levels, {path.carries} "
              f"carry cells; {path.delay():.2f} ns by the delay model); deepest stage as written: "
              f"{max(est['stage_cells'])} cells, cutoff {est['latency_cutoff_ns']:g} ns")
    return EXIT_OK
