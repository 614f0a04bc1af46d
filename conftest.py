"""Root pytest configuration: names available to every doctest."""

import keras
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    import hgq_fpga
    from hgq_fpga.layers import QDense

    doctest_namespace.update(np=np, keras=keras, hgq_fpga=hgq_fpga, QDense=QDense)
