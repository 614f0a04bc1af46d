"""``hgq-fpga estimate``: the resource estimate of a model's hls4ml or RTL project."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import _EPILOG, _FMT, _PART_HELP, _STRATEGY_HELP, _common, _part, _positive
from .cli_files import EXIT_OK, CliError, checked_data, fresh_output, model_from_args, write_output
from .cli_rtl import add_prefer, refuse_rtl_flags

__all__ = ["add_estimate", "cmd_estimate"]


def cmd_estimate(args: argparse.Namespace) -> int:
    from .resources import estimate

    if args.json:
        fresh_output(args.json, args.overwrite, flag="--json")
    if args.backend != "rtl":
        refuse_rtl_flags(args)
    if args.backend == "rtl" and args.strategy != "Latency":
        raise CliError(f"--strategy {args.strategy} is an hls4ml strategy; --backend rtl estimates the Verilog "
                       "project of 'convert --backend rtl' (drop --strategy, or drop --backend rtl)")
    model = model_from_args(args)
    x = checked_data(model, args.data) if args.data else None
    from .progress import elapsed

    with elapsed(f"estimate ({args.strategy if args.backend == 'hls4ml' else 'RTL'})", enabled=sys.stderr.isatty()):
        report = estimate(model, strategy=args.strategy, part=args.part, backend=args.backend,
                          clock_period=args.clock_period, latency_cutoff=args.latency_cutoff,
                          prefer=args.prefer or "latency")
    print(report)
    if x is not None:
        from .constraints.sensitivity import layer_sensitivities

        with elapsed("layer sensitivities", enabled=sys.stderr.isatty()):
            print(layer_sensitivities(model, x, strategy=args.strategy, part=args.part))
    from .resources.parts import device

    dev = device(args.part)
    if dev is not None:
        use = dev.utilization(lut=report.lut, dsp=report.dsp, ff=report.ff or 0)
        ff = f", FF {use['ff']:.2f}% of {dev.ff:,}" if report.ff is not None else ""
        print(f"utilization of {dev.name} ({dev.family}): LUT {use['lut']:.2f}% of {dev.lut:,}, "
              f"DSP {use['dsp']:.2f}% of {dev.dsp:,}{ff}")
    if args.json:
        write_output(Path(args.json), report.to_json(indent=1).encode(), args.overwrite)
    return EXIT_OK


def add_estimate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``estimate`` subcommand."""
    p = sub.add_parser("estimate", help="LUTs, DSPs and EBOPs per layer", epilog=_EPILOG, formatter_class=_FMT)
    _common(p)
    p.add_argument("--strategy", default="Latency", choices=("Latency", "distributed_arithmetic"),
                   help=_STRATEGY_HELP)
    p.add_argument("--part", type=_part, default="xcvu13p-flga2577-2-e", help=_PART_HELP)
    p.add_argument("--backend", default="hls4ml", choices=("hls4ml", "rtl"),
                   help="the project estimated: hls4ml's (by --strategy) or the Verilog project of "
                        "'convert --backend rtl' (adds flip-flops and latency)")
    p.add_argument("--clock-period", type=_positive, default=5.0, metavar="NS", help="rtl: the clock period in ns")
    p.add_argument("--latency-cutoff", type=_positive, default=None, metavar="NS",
                   help="rtl: estimated logic delay allowed between registers (default 70%% of the clock period)")
    add_prefer(p)
    p.add_argument("--json", metavar="OUT.json", help="also write the report as JSON")
    p.add_argument("--data", metavar="DATA.npy",
                   help="also measure each layer's sensitivity on these inputs: the LUTs one fractional bit less "
                        "saves, and the share of predictions it changes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=cmd_estimate)
