"""How fast the ``hgq-fpga`` command answers: help, a missing file, bad data, a real estimate.

Run:  python benchmarks/cli_startup.py [--repeats 7] [--json out.json]

Each case runs the installed console script as a user would (a fresh process,
wall-clock time from ``subprocess.run``), the cases alternating round by
round; the median of ``--repeats`` rounds is reported, with the exit code.
The fast paths (help, a missing model file, an existing --json output) must
answer before Keras or TensorFlow is imported; a real estimate of a small
model shows what loading TensorFlow costs. BLAS is pinned to one thread
(``OPENBLAS_NUM_THREADS=1``) in every child, since this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _model(folder: Path) -> Path:
    """A small calibrated two-layer model saved in ``folder`` (in a child, to keep this process light)."""
    code = ("import keras, numpy as np, hgq_fpga\nfrom hgq_fpga.layers import QDense\n"
            "x = np.random.default_rng(0).standard_normal((128, 16)).astype('float32')\n"
            "m = keras.Sequential([keras.Input((16,)), QDense(16, activation='relu'), QDense(5)])\n"
            "m(x[:2]); hgq_fpga.calibrate(m, x); m.save(r'%s')\n") % (folder / "m.keras")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return folder / "m.keras"


def cases(folder: Path, model: Path) -> dict[str, list[str]]:
    """The command lines timed, by name."""
    (folder / "est.json").write_text("{}")
    return {
        "hgq-fpga --help": ["--help"],
        "hgq-fpga estimate --help": ["estimate", "--help"],
        "hgq-fpga estimate missing.keras": ["estimate", str(folder / "missing.keras")],
        "estimate M --json existing.json": ["estimate", str(model), "--json", str(folder / "est.json")],
        "hgq-fpga estimate M (16-16-5 MLP)": ["estimate", str(model)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    script = shutil.which("hgq-fpga", path=str(Path(sys.executable).parent)) or shutil.which("hgq-fpga")
    if script is None:
        raise SystemExit("the hgq-fpga console script is not installed (pip install -e .)")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    times: dict[str, list[float]] = {}
    codes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        todo = cases(folder, _model(folder))
        for _ in range(args.repeats):
            for name, argv in todo.items():
                t0 = time.perf_counter()
                r = subprocess.run([script, *argv], capture_output=True, env=env, check=False)
                times.setdefault(name, []).append(time.perf_counter() - t0)
                codes[name] = r.returncode
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; median of {args.repeats} alternating runs")
    print(f"{'command':<36} {'exit':>4} {'median s':>9} {'max s':>7}")
    for name, ts in times.items():
        print(f"{name:<36} {codes[name]:>4} {statistics.median(ts):>9.2f} {max(ts):>7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: {"exit": codes[k], "seconds": v} for k, v in times.items()},
                                              indent=1))


if __name__ == "__main__":
    main()
