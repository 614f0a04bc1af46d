"""Where a TensorFlow training step's time goes, per operation: float against quantized.

Run:  python benchmarks/step_profile.py [--model 64-256-256-10] [--epochs 3] [--top 25]

The model of ``benchmarks/budget_training.py`` (``digits`` or ``64-256-256-10``),
float (``keras.layers.Dense``) and quantized (``QDense``, no budget), each
trained two epochs unprofiled and then ``--epochs`` epochs under TensorFlow's
profiler (``tf.profiler.experimental``) on the digits training split, batch 32,
Adam. The trace's kernel events on TensorFlow's compute thread are summed per
operation type and per operation, in microseconds a training step, so that an
expensive kind of op (TensorFlow's ``SelectV2`` or ``LeftShift`` on a kernel-sized
tensor, say) shows up by name. Profiling adds a few microseconds to every op: the
totals are for comparing ops, not for a step's time (``budget_training.py``).

Every thread pool is pinned to one thread (BLAS, OpenMP, TensorFlow's op pools),
as in ``budget_training.py``.
"""

from __future__ import annotations

import os

for _key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
             "TF_NUM_INTEROP_THREADS"):
    os.environ[_key] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

MODELS = {"digits": (64, 32, 32), "64-256-256-10": (256, 256)}
#: the executor's own spans, which enclose the op kernels
_SPANS = ("ThreadpoolListener", "ExecutorState", "ExecutorDoneCallback")


def _build(kind: str, hidden: tuple[int, ...]) -> Any:
    import keras

    from hgq_fpga.layers import QDense

    keras.utils.set_random_seed(0)
    layer = (lambda n, **kw: keras.layers.Dense(n, **kw)) if kind == "float" else QDense
    model = keras.Sequential([keras.Input((64,)), *[layer(n, activation="relu") for n in hidden], layer(10)])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _profile(kind: str, hidden: tuple[int, ...], epochs: int) -> tuple[collections.Counter, collections.Counter, int]:
    """Per op type and per op name: microseconds summed over the profiled steps; and the steps."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    from hgq_fpga.datasets import digits

    data = digits(seed=0)
    model = _build(kind, hidden)
    model.fit(data.x_train, data.y_train, epochs=2, batch_size=32, verbose=0)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
        tf.profiler.experimental.stop()
        trace = json.loads(plugin.xspace_to_tools_data(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True),
                                                       "trace_viewer@")[0])
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"]
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    frames = trace.get("stackFrames", {})
    by_type: collections.Counter = collections.Counter()
    by_name: collections.Counter = collections.Counter()
    for e in trace["traceEvents"]:
        if e.get("ph") != "X" or not threads.get((e["pid"], e["tid"]), "").startswith("tf_Compute"):
            continue
        if e["name"].startswith(_SPANS):
            continue
        by_type[e["name"]] += e["dur"]
        by_name[frames.get(str(e.get("sf")), {}).get("name", e["name"])] += e["dur"]
    steps = epochs * -(-len(data.x_train) // 32)
    return by_type, by_name, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="64-256-256-10")
    parser.add_argument("--epochs", type=int, default=3, help="profiled epochs (default 3)")
    parser.add_argument("--top", type=int, default=25, help="ops listed by name (default 25)")
    args = parser.parse_args(argv)
    hidden = MODELS[args.model]
    results = {kind: _profile(kind, hidden, args.epochs) for kind in ("float", "quantized")}
    print(f"{args.model}: op kernel time per training step (us), TensorFlow, one thread, profiled")
    print("| op type | float | quantized |\n|---|---|---|")
    (f_type, _, f_steps), (q_type, q_name, q_steps) = results["float"], results["quantized"]
    for op, us in q_type.most_common(25):
        print(f"| {op} | {f_type[op] / f_steps:.1f} | {us / q_steps:.1f} |")
    print(f"| **all** | {sum(f_type.values()) / f_steps:.0f} | {sum(q_type.values()) / q_steps:.0f} |")
    print(f"\nquantized: the {args.top} costliest ops (us a step)")
    for name, us in q_name.most_common(args.top):
        print(f"{us / q_steps:8.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
