"""``hgq-fpga sweep CONFIG.yml -o DIR`` and ``hgq-fpga synth SWEEP_DIR --tool yosys``.

A sweep configuration (YAML or JSON)::

    model: mlp                     # mlp, cnn, or package.module:function
    architectures:                 # name -> the builder's options
      small: {widths: [16, 10]}
      wide:  {widths: [32, 32, 10]}
    data: digits                   # digits, digits-image, or .npy files:
                                   #   {x: x.npy, y: y.npy, x_test: xt.npy, y_test: yt.npy}
    budgets: [1500, 4000, null]    # LUTs; null = no budget (a reference point)
    seeds: [0, 1]
    epochs: 10
    batch_size: 32                 # optional, and so are the next three
    learning_rate: 0.003
    method: constraint             # or step (ResourceBudget's default), primal_dual
    budget: {strategy: Latency}    # more ResourceBudget arguments (dsp, part, ...)

Relative ``.npy`` paths are read from the configuration file's folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli_files import CliError

__all__ = ["CONFIG_KEYS", "add_sweep_command", "cmd_sweep", "cmd_synth_sweep", "read_sweep_config"]

CONFIG_KEYS = ("model", "architectures", "data", "budgets", "seeds", "epochs", "batch_size", "learning_rate",
               "method", "budget")
_REQUIRED = ("model", "budgets", "epochs")
_MAX_CONFIG_BYTES = 1 << 20


def read_sweep_config(path: str) -> dict[str, Any]:
    """The configuration as :func:`hgq_fpga.sweep` arguments (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{p}: no such file (give a sweep configuration, YAML or JSON)")
    if p.stat().st_size > _MAX_CONFIG_BYTES:
        raise CliError(f"{p}: {p.stat().st_size} bytes; a sweep configuration is at most 1 MiB")
    import yaml

    try:
        cfg = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CliError(f"{p}: not YAML or JSON ({str(e).splitlines()[0]})") from e
    if not isinstance(cfg, dict):
        raise CliError(f"{p}: expected a mapping with keys {', '.join(CONFIG_KEYS)}; received {type(cfg).__name__}")
    unknown = sorted(set(map(str, cfg)) - set(CONFIG_KEYS))
    if unknown:
        raise CliError(f"{p}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(CONFIG_KEYS)}")
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise CliError(f"{p}: missing {', '.join(missing)} (see 'hgq-fpga sweep --help' for an example)")
    return {
        "build": cfg["model"], "data": _data(cfg.get("data", "digits"), p.parent), "budgets": cfg["budgets"],
        "epochs": cfg["epochs"], "architectures": cfg.get("architectures"), "seeds": cfg.get("seeds", [0]),
        "batch_size": cfg.get("batch_size", 32), "learning_rate": cfg.get("learning_rate", 3e-3),
        "method": cfg.get("method", "constraint"), "budget_options": cfg.get("budget") or {},
    }


def _data(data: Any, base: Path) -> Any:
    if isinstance(data, str):
        return data
    keys = ("x", "y", "x_test", "y_test")
    if not isinstance(data, dict) or sorted(data) != sorted(keys):
        raise CliError(f"data: 'digits', 'digits-image', or a mapping with exactly {', '.join(keys)} "
                       f"(.npy files); received {data!r}")
    from .cli_files import load_data

    arrays = []
    for k in keys:
        f = Path(str(data[k]))
        arrays.append(load_data(str(f if f.is_absolute() else base / f)))
    return tuple(arrays)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .startup import import_keras_quietly

    config = read_sweep_config(args.config)
    import_keras_quietly()
    from .sweeps import SweepConflictError, SweepError, sweep

    try:
        result = sweep(**config, output_dir=args.output, runner=args.runner, workers=args.workers,
                       cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, address=args.address,
                       retries=args.retries, overwrite=args.overwrite, progress=True, raise_on_failure=False)
    except (SweepConflictError, TypeError) as e:
        raise CliError(str(e)) from e
    print(f"{len(result.ran)} trial(s) run, {len(result.skipped)} already in {result.path}, "
          f"{len(result.failed)} failed; table: {result.path / 'results.csv'}")
    for key, error in result.failed.items():
        print(f"failed: {key}: {error.splitlines()[0]}", file=sys.stderr)
    if result.failed:
        raise SweepError(f"{len(result.failed)} trial(s) failed; run the same command again to retry them")
    return 0


def cmd_synth_sweep(args: argparse.Namespace) -> int:
    """``hgq-fpga synth SWEEP_DIR``: every stored trial, synthesized in parallel."""
    from .startup import import_keras_quietly

    import_keras_quietly()
    from .sweeps import synthesize_many

    rows = synthesize_many(args.project, tool=args.tool, runner=args.runner, workers=args.workers,
                           address=args.address, cpus_per_task=args.cpus_per_trial, front=args.front, progress=True)
    t = args.tool
    print(f"{'trial':<32} {'estimate LUT':>12} {t + ' LUT':>12} {'FF':>7} {'CARRY':>7} {'DSP':>5}")
    for r in rows:
        if f"{t}_lut" not in r and f"{t}_error" not in r:
            continue  # not synthesized (off the front)
        if r.get(f"{t}_error"):
            print(f"{r['trial']:<32} {r['lut']:>12.0f}  failed: {r[f'{t}_error']}")
            continue
        print(f"{r['trial']:<32} {r['lut']:>12.0f} {r.get(f'{t}_lut', '-')!s:>12} {r.get(f'{t}_ff', '-')!s:>7} "
              f"{r.get(f'{t}_carry', '-')!s:>7} {r.get(f'{t}_dsp', '-')!s:>5}")
    print(f"table: {Path(args.project) / 'results.csv'}")
    return 1 if any(r.get(f"{t}_error") for r in rows) else 0


def runner_options(p: argparse.ArgumentParser, *, what: str) -> None:
    """``--runner``, ``--workers``, ``--address``, ``--cpus-per-trial``."""
    p.add_argument("--runner", default="local", choices=("local", "ray", "inline"),
                   help=f"local: a pool of processes; ray: Ray tasks (pip install 'hgq_fpga[cluster]'); "
                        f"inline: one {what} after another in this process")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local runner: processes (default: CPUs // --cpus-per-trial)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="ray runner: the cluster (default: $RAY_ADDRESS, else a Ray started for this run)")
    p.add_argument("--cpus-per-trial", type=float, default=1, metavar="N", help=f"CPUs of each {what}")


def add_sweep_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], formatter: Any, epilog: str) -> None:
    """Add the ``sweep`` subcommand."""
    p = sub.add_parser("sweep", help="train architectures x LUT budgets x seeds (resumable, local or Ray)",
                       description=__doc__.split("\n", 1)[1], epilog=epilog, formatter_class=formatter)
    p.add_argument("config", help="the sweep configuration, YAML or JSON (see above)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="the sweep folder; run the command again with the same folder to resume")
    runner_options(p, what="trial")
    p.add_argument("--gpus-per-trial", type=float, default=0, metavar="N", help="ray runner: GPUs of each trial")
    p.add_argument("--retries", type=int, default=2, metavar="N", help="more attempts for a trial whose worker died")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the trials of a sweep with other settings in DIR and start over")
    p.set_defaults(func=cmd_sweep)
