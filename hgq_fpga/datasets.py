"""Data sets for examples, tests and benchmarks.

* :func:`digits` -- scikit-learn's bundled 8x8 handwritten digits (no download);
* :func:`jets` -- the hls4ml LHC jet-tagging data set (OpenML
  ``hls4ml_lhc_jets_hlf``: 16 high-level features, 5 classes), downloaded and
  cached by scikit-learn when online; :func:`jets_sample` generates a small
  offline stand-in with the same schema (for tests and offline runs).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["JET_CLASSES", "JET_FEATURES", "Split", "digits", "jets", "jets_sample"]

#: the 16 features of ``hls4ml_lhc_jets_hlf``, in OpenML's order
JET_FEATURES = (
    "zlogz", "c1_b0_mmdt", "c1_b1_mmdt", "c1_b2_mmdt", "c2_b1_mmdt", "c2_b2_mmdt", "d2_b1_mmdt",
    "d2_b2_mmdt", "d2_a1_b1_mmdt", "d2_a1_b2_mmdt", "m2_b1_mmdt", "m2_b2_mmdt", "n2_b1_mmdt",
    "n2_b2_mmdt", "mass_mmdt", "multiplicity",
)
#: the 5 classes: gluon, light quark, top, W, Z jets
JET_CLASSES = ("g", "q", "t", "w", "z")


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


def _standardize(split: Split) -> Split:
    mean = split.x_train.mean(axis=0)
    std = split.x_train.std(axis=0) + 1e-6
    return Split(((split.x_train - mean) / std).astype(np.float32), split.y_train,
                 ((split.x_test - mean) / std).astype(np.float32), split.y_test)


def jets(*, seed: int = 0, test_size: float = 0.2, limit: int | None = None, data_home: str | None = None) -> Split:
    """The hls4ml LHC jet data (OpenML ``hls4ml_lhc_jets_hlf``), standardized with
    the training split's mean and standard deviation.

    Downloads once (about 80 MB) into scikit-learn's data home, then reads the
    cache. ``limit`` keeps the first ``limit`` samples.

    Raises:
        RuntimeError: offline without a cache, naming the data set and the
            offline alternative :func:`jets_sample`.
    """
    from sklearn.datasets import fetch_openml
    from sklearn.model_selection import train_test_split

    try:
        bunch = fetch_openml("hls4ml_lhc_jets_hlf", version=1, as_frame=False, parser="auto", data_home=data_home)
    except Exception as e:  # network errors come in many types
        raise RuntimeError(
            "jets: could not download OpenML 'hls4ml_lhc_jets_hlf' "
            f"({type(e).__name__}: {e}); offline, use hgq_fpga.datasets.jets_sample()"
        ) from e
    x = np.asarray(bunch.data, np.float32)
    labels = np.asarray(bunch.target).astype(str)
    y = np.searchsorted(np.array(JET_CLASSES), labels).astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return _standardize(Split(x_tr, y_tr, x_te, y_te))


def jets_sample(n: int = 5000, *, seed: int = 0, test_size: float = 0.2) -> Split:
    """A generated stand-in for :func:`jets`: ``n`` samples, 16 features, 5 classes.

    Each class is a Gaussian cloud with its own mean and a shared random
    correlation, so that a small MLP learns it to about the accuracy of the
    real data (which is about 0.75); the schema (feature count and order,
    class labels, standardization) is that of :func:`jets`. It is not physics.
    """
    from sklearn.model_selection import train_test_split

    if n < 50:
        raise ValueError(f"jets_sample: n must be >= 50. Received: n={n}")
    rng = np.random.default_rng(1234)  # the class structure is fixed; ``seed`` draws the samples
    means = rng.normal(0.0, 0.12, (len(JET_CLASSES), len(JET_FEATURES)))
    mix = rng.normal(0.0, 1.0, (len(JET_FEATURES), len(JET_FEATURES))) / np.sqrt(len(JET_FEATURES))
    draw = np.random.default_rng(seed)
    y = draw.integers(0, len(JET_CLASSES), n)
    x = (means[y] + draw.normal(0.0, 1.0, (n, len(JET_FEATURES))) @ mix.T).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y.astype(np.int64), test_size=test_size, random_state=seed,
                                              stratify=y)
    return _standardize(Split(x_tr, y_tr, x_te, y_te))
