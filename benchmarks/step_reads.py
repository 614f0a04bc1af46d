"""What the budget's reads of the cost add to JAX's training steps: outside the step or inside it.

Run:  python benchmarks/step_reads.py [--rounds 25] [--python-us 250] [--every 4]

The digits MLP of ``benchmarks/budget_training.py`` (64-64-32-32-10, trained one epoch
first), 39 training steps of batch 32 (one digits epoch), ``--python-us`` of busy
Python before each (about what Keras's loop spends a batch on this machine:
slicing the batch, its callbacks, the state it keeps), and a read of the cost
(:class:`~hgq_fpga.constraints.softcost.SoftCost`, unshifted) after one step in
``--every``, taken a batch later (as ``ResourceBudget`` takes a routine read on
JAX). Five ways, in turns within each round (the first round, which compiles,
not counted); reported: the median time of the 39 steps over the rounds, and
what the reads add to the steps without them:

* ``no reads``: Keras's training step alone (``jax.jit(model.train_step)``);
* ``outside``: a separate compiled read started after the step (``SoftCost.start``);
* ``second program``: a second compiled program, the step and its read, for the
  read steps;
* ``cond, never``: one program, the step and the read under ``lax.cond``, the
  flag never set (what the steps that do not read cost);
* ``cond``: the same program, the flag set for the read steps.

Also reported: the first round of each way, which compiles what it adds (the
``no reads`` step is compiled by the ``fit`` before, the outside read by
``SoftCost.prepare``; the other two compile the step again with the read).
``ResourceBudget`` reads outside the step (BENCHMARKS.md, "Reads inside JAX's
training step": the in-step read saved at most 2-5% of a bits epoch in
``benchmarks/budget_training.py`` and its compile cost 0.5-0.9 s a ``fit``).

BLAS and JAX's CPU client (``PJRT_NPROC``, ``XLA_FLAGS``) pinned to one thread
(set before JAX is imported). Keep the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["KERAS_BACKEND"] = "jax"
for _key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PJRT_NPROC"):
    os.environ[_key] = "1"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

WAYS = ("no reads", "outside", "second program", "cond, never", "cond")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--python-us", type=float, default=250.0)
    parser.add_argument("--every", type=int, default=4)
    args = parser.parse_args(argv)

    import jax
    import keras

    from hgq_fpga.constraints.softcost import SoftCost
    from hgq_fpga.datasets import digits
    from hgq_fpga.layers import QDense

    data = digits(seed=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), *[QDense(n, activation="relu") for n in (64, 32, 32)], QDense(10)])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train, data.y_train, epochs=1, batch_size=32, verbose=0)
    soft = SoftCost(model)
    trainable, others = list(model.trainable_variables), list(model.non_trainable_variables)

    def read_of(state):  # (SoftCost's unshifted read, traced into the step)
        with keras.StatelessScope(state_mapping=[*zip(trainable, state[0]), *zip(others, state[1])]):
            return keras.ops.stack(soft._layer_luts(0.0, False))  # noqa: SLF001

    def with_read(state, data):
        logs, state = model.train_step(state, data)
        return logs, state, read_of(state)

    def with_cond(state, data, on):
        logs, state = model.train_step(state, data)
        return logs, state, jax.lax.cond(on, lambda: read_of(state), lambda: jax.numpy.zeros(len(soft.layers)))

    plain = jax.jit(model.train_step, donate_argnums=0)
    second = jax.jit(with_read, donate_argnums=0)
    cond = jax.jit(with_cond, donate_argnums=0)
    flags = {False: jax.numpy.asarray(False), True: jax.numpy.asarray(True)}
    soft.prepare()
    batches = [(jax.numpy.asarray(data.x_train[i * 32:(i + 1) * 32], "float32"),
                jax.numpy.asarray(data.y_train[i * 32:(i + 1) * 32])) for i in range(len(data.x_train) // 32)]
    model._jax_state_synced = True  # noqa: SLF001 (reads the state as the trainer keeps it)
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,  # noqa: SLF001
                                 optimizer_variables=True, metrics_variables=True)

    def python() -> None:
        until = time.perf_counter() + args.python_us * 1e-6
        while time.perf_counter() < until:
            pass

    def epoch(way: str, state):
        pending = None
        start = time.perf_counter()
        for k, batch in enumerate(batches):
            python()
            if pending is not None:
                SoftCost.finish(pending)
                pending = None
            reads = k % args.every == 0
            if way == "outside":
                _, state = plain(state, batch)
                if reads:
                    model._jax_state = {"trainable_variables": state[0], "non_trainable_variables": state[1]}  # noqa: SLF001
                    model._jax_state_synced = False  # noqa: SLF001
                    pending = soft.start(0.0)
            elif way == "second program" and reads:
                _, state, pending = second(state, batch)
            elif way.startswith("cond"):
                on = reads and way == "cond"
                _, state, luts = cond(state, batch, flags[on])
                pending = luts if on else None
            else:
                _, state = plain(state, batch)
        jax.block_until_ready(state)
        return time.perf_counter() - start, state

    times: dict[str, list[float]] = {way: [] for way in WAYS}
    first: dict[str, float] = {}
    for r in range(args.rounds + 1):
        for way in WAYS:
            t, state = epoch(way, state)
            if r:
                times[way].append(t)
            else:  # (compiles what this way adds)
                first[way] = t
    base = statistics.median(times["no reads"])
    print(f"JAX {jax.__version__}, {os.cpu_count()} CPUs; {len(batches)} steps, {args.python_us:g} us of Python "
          f"before each, a read after one in {args.every}; medians of {args.rounds} rounds")
    print("| way | 39 steps | the reads add | the first round (compiling) |\n|---|---|---|---|")
    for way in WAYS:
        med = statistics.median(times[way])
        print(f"| {way} | {med * 1e3:.2f} ms | {(med - base) * 1e3:+.2f} ms | {first[way]:.2f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
