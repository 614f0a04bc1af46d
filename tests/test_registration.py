"""``import hgq_fpga`` is enough for ``keras.models.load_model`` (issue 18), whichever is imported first,
and it does not import Keras itself."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.layers import QActivation, QConv1D, QDense


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("reg") / "m.keras"
    model = keras.Sequential([keras.Input((8, 2)), QConv1D(3, 3, name="c"), keras.layers.Flatten(),
                              QDense(4, name="d"), QActivation("relu", name="a")])
    x = np.random.default_rng(0).standard_normal((32, 8, 2))
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    model.save(path)
    np.save(path.with_suffix(".npy"), x)
    np.save(path.with_suffix(".out.npy"), hgq_fpga.emulate(model, x))
    return path


@pytest.mark.parametrize("order", ["hgq_fpga first", "keras first"])
def test_plain_keras_load_model_after_import_hgq_fpga(saved, order):
    imports = "import hgq_fpga; import keras" if order == "hgq_fpga first" else "import keras; import hgq_fpga"
    code = (f"import sys, numpy as np; {imports}; m = keras.models.load_model(sys.argv[1]); "
            "x = np.load(sys.argv[2]); assert np.array_equal(hgq_fpga.emulate(m, x), np.load(sys.argv[3])); "
            "print(type(m.get_layer('d')).__module__)")
    r = subprocess.run([sys.executable, "-c", code, str(saved), str(saved.with_suffix(".npy")),
                        str(saved.with_suffix(".out.npy"))], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("hgq_fpga.layers.dense") or "hgq_fpga.layers" in r.stdout


def test_import_hgq_fpga_does_not_import_keras():
    r = subprocess.run([sys.executable, "-c", "import sys, hgq_fpga; print('keras' in sys.modules)"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
