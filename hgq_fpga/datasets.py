"""Small bundled data sets for examples, tests and benchmarks.

Only data that ships inside installed packages is used (no downloads): the
8x8 handwritten digits of scikit-learn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Split", "digits"]


class Split(NamedTuple):
    """Train/test arrays (``x`` float32, ``y`` int labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits(*, seed: int = 0, test_size: float = 0.3, image: bool = False) -> Split:
    """scikit-learn's digits (1,797 images of 8x8 pixels, 10 classes), scaled to [0, 1].

    Args:
        seed: seed of the stratified train/test split.
        test_size: fraction of samples held out.
        image: return ``(n, 8, 8, 1)`` images instead of ``(n, 64)`` vectors.

    Example:
        >>> d = digits()
        >>> d.x_train.shape, d.x_test.shape, float(d.x_train.max())
        ((1257, 64), (540, 64), 1.0)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ValueError(f"digits: test_size must be in (0, 1). Received: test_size={test_size}")
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    if image:
        x = x.reshape(-1, 8, 8, 1)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, data.target, test_size=test_size, random_state=seed, stratify=data.target
    )
    return Split(x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64))
