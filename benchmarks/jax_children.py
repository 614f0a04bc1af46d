"""What the JAX start-up benchmarks share: fresh JAX processes on one thread, run in turns.

``jax_calibration.py`` and ``jax_first_estimate.py`` each time a first call in a fresh process
(compilation included) against a former way of doing it; this module starts their children
(the script itself with ``--kind``) and collects the JSON line each prints after ``tag``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Callable


def env() -> dict[str, str]:
    """The children's environment: JAX, BLAS, OpenMP and XLA's CPU client on one thread (the
    machine is shared), and no persistent compilation cache (nothing compiled by an earlier process)."""
    out = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", PJRT_NPROC="1")
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        out[k] = "1"
    out["XLA_FLAGS"] = (out.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    out.pop("JAX_COMPILATION_CACHE_DIR", None)
    return out


def in_turns(script: str, kinds: tuple[str, ...], model: str, repeats: int,
             tag: str) -> dict[str, list[dict[str, Any]]]:
    """``repeats`` rounds, each running ``script --kind K --model model`` for every kind in turn;
    each child's results (the JSON after ``tag`` on its output) per kind."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for _ in range(repeats):
        for kind in kinds:
            out = subprocess.run([sys.executable, script, "--kind", kind, "--model", model], env=env(),
                                 capture_output=True, text=True, check=True).stdout
            runs[kind].append(json.loads(next(line for line in out.splitlines() if line.startswith(tag))[len(tag):]))
    return runs


def parse_and_run(doc: str, script: str, kinds: tuple[str, ...], models: list[str], tag: str,
                  child: Callable[[str, str], dict[str, Any]],
                  argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, list[dict[str, Any]]]] | None:
    """A benchmark's command line (``--repeats``, ``--model``; ``--kind`` for a child). In a child:
    print ``child(kind, model)`` after ``tag`` and return None; else the arguments and :func:`in_turns`'s runs."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=models, default=models[0])
    parser.add_argument("--kind", choices=kinds, help=argparse.SUPPRESS)  # (a child)
    args = parser.parse_args(argv)
    if args.kind:
        print(f"{tag} {json.dumps(child(args.kind, args.model))}", flush=True)
        return None
    return args, in_turns(script, kinds, args.model, args.repeats, tag)
