"""The suite's seeding (``tests/conftest.py``): every test draws Keras's initial weights from a seed of
its own name, so that it sees the same model in CI as on a developer's machine, whichever tests ran
before it in its process."""

from __future__ import annotations

import zlib

import keras
import numpy as np


def _kernel() -> np.ndarray:
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    return keras.ops.convert_to_numpy(layer.kernel)


def test_a_test_draws_its_initial_weights_from_its_own_name(request):
    drawn = _kernel()
    keras.utils.set_random_seed(zlib.crc32(request.node.nodeid.encode()))
    assert np.array_equal(_kernel(), drawn)
    keras.utils.set_random_seed(zlib.crc32(b"another test"))
    assert not np.array_equal(_kernel(), drawn)
