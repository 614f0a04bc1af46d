"""Shared fixtures and backend-neutral helpers for the test suite."""

from __future__ import annotations

import zlib
from collections import Counter
from typing import Any, Callable

import keras
import numpy as np
import pytest


def _value_and_grads(fn: Callable[..., Any], *args: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """``fn(*args)`` summed, and its gradients w.r.t. every arg, on any backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        ts = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            for t in ts:
                tape.watch(t)
            out = fn(*ts)
            total = tf.reduce_sum(out)
        grads = tape.gradient(total, ts)
        return np.asarray(out), [np.asarray(g) for g in grads]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        out = fn(*[jnp.asarray(a) for a in args])
        grads = jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=tuple(range(len(args))))(
            *[jnp.asarray(a) for a in args]
        )
        return np.asarray(out), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        ts = [torch.tensor(a, requires_grad=True) for a in args]
        out = fn(*ts)
        out.sum().backward()
        return out.detach().numpy(), [t.grad.numpy() for t in ts]
    pytest.skip(f"no gradient helper for backend {backend}")


@pytest.fixture(autouse=True)
def _seeded(request: pytest.FixtureRequest) -> None:
    """Every test draws Keras's initial weights (and numpy's and Python's global draws) from a seed of its
    own name: a test sees the same model in CI as here, whichever tests ran before it in its process."""
    keras.utils.set_random_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


@pytest.fixture
def value_and_grads() -> Callable[..., Any]:
    """The backend-neutral gradient helper (see ``_value_and_grads``)."""
    return _value_and_grads


_TALLY: Counter[str] = Counter()


@pytest.fixture(scope="session")
def tally() -> Counter[str]:
    """Counts that property-based tests add to (printed after the run; quoted in RELIABILITY.md)."""
    return _TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for key, count in sorted(_TALLY.items()):
        terminalreporter.write_line(f"tally: {key}: {count}")


@pytest.fixture
def cli(capsys):
    """``main(argv)`` as the console script calls it: ``(exit code, stdout, stderr)``; SIGTERM's handler restored."""
    import signal

    from hgq_fpga.cli import main

    def call(*args: str) -> tuple[int, str, str]:
        handler = signal.getsignal(signal.SIGTERM)
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's usage errors
            code = e.code
        finally:
            signal.signal(signal.SIGTERM, handler)
        out = capsys.readouterr()
        return code, out.out, out.err

    return call
