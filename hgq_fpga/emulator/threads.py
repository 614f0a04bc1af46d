"""One BLAS thread in the emulator's hot path.

The emulator's matrix products are small (a few hundred columns): a second
BLAS thread gains little on a quiet machine and loses badly on a loaded one
(measured here: a 2-thread OpenBLAS matmul chain slowed 40x under load from
other processes, a 1-thread one 3x). :func:`blas_threads` limits BLAS to
``n`` threads for the duration of a ``with`` block, through threadpoolctl
(a scikit-learn dependency); without it, the block runs unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["blas_threads"]

_CONTROLLER: list[Any] = []


def _controller() -> Any | None:
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _CONTROLLER.append(None)
        else:
            _CONTROLLER.append(ThreadpoolController())  # inspects the loaded libraries once
    return _CONTROLLER[0]


@contextlib.contextmanager
def blas_threads(n: int | None = 1) -> Iterator[None]:
    """Limit BLAS to ``n`` threads inside the block (``None``: leave it as it is)."""
    controller = _controller() if n is not None else None
    if controller is None:
        yield
        return
    with controller.limit(limits=n, user_api="blas"):
        yield
