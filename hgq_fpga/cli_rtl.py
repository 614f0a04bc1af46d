"""``hgq-fpga convert --backend rtl``: the Verilog project and its self-check."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli_files import EXIT_CHECK_FAILED, EXIT_OK, CliError

__all__ = ["convert_rtl", "refuse_hls_flags"]


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
                         part=args.part, overwrite=args.overwrite)
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
