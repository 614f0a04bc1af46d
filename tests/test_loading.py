"""Untrusted .keras files: the archive's declared sizes are checked before Keras
reads anything, so a small file cannot make loading take gigabytes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.layers import QDense
from hgq_fpga.loading import check_archive, load_model

SCRIPT = shutil.which("hgq-fpga", path=str(Path(sys.executable).parent)) or shutil.which("hgq-fpga")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("loading")
    model = keras.Sequential([keras.Input((4,)), QDense(3, name="d")])
    x = np.random.default_rng(0).standard_normal((32, 4)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    model.save(d / "m.keras")
    return d


def _inflated(src: Path, dst: Path, member: str, size: int) -> None:
    """A copy of a .keras archive with ``member`` replaced by ``size`` zero bytes (compressed to little)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as b:
        for info in a.infolist():
            if info.filename != member:
                b.writestr(info, a.read(info))
        with b.open(member, "w", force_zip64=True) as fh:
            chunk = bytes(2**24)
            for _ in range(size // len(chunk)):
                fh.write(chunk)


def test_genuine_model_loads(saved):
    model = load_model(saved / "m.keras")
    assert model.get_layer("d").units == 3


def test_inflated_weights_and_config_are_refused_before_reading(saved, tmp_path):
    big = tmp_path / "weights_bomb.keras"
    _inflated(saved / "m.keras", big, "model.weights.h5", 320 * 2**20)
    assert big.stat().st_size < 2 * 2**20  # a small file asking for 320 MiB
    with pytest.raises(ValueError, match=r"model.weights.h5.*over the limit of 256.0 MiB"):
        check_archive(big)
    cfg = tmp_path / "config_bomb.keras"
    _inflated(saved / "m.keras", cfg, "config.json", 32 * 2**20)
    with pytest.raises(ValueError, match=r"'config.json' would take 32.0 MiB"):
        load_model(cfg)
    check_archive(big, max_total_bytes=400 * 2**20)  # a raised limit lets it through to Keras


def test_not_an_archive_is_named(tmp_path):
    fake = tmp_path / "model.keras"
    fake.write_text('{"class_name": "Sequential"}')
    with pytest.raises(ValueError, match="not a .keras archive.*JSON text"):
        load_model(fake)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "missing.keras")


def test_cli_refuses_a_bomb_quickly_with_bounded_memory(saved, tmp_path):
    big = tmp_path / "bomb.keras"
    _inflated(saved / "m.keras", big, "model.weights.h5", 320 * 2**20)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # a fresh parent measures the command's own peak memory (RUSAGE_CHILDREN of that parent only)
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(r.stderr); print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", probe, SCRIPT, "estimate", str(big)], capture_output=True, text=True,
                       env=env, timeout=300)
    code, peak_kib = (int(v) for v in r.stdout.split())
    assert code == 2 and "over the limit of 256.0 MiB" in r.stderr and "--max-model-mib" in r.stderr
    assert peak_kib < 300 * 1024  # the 320 MiB member was never read (nor TensorFlow loaded)
    r = subprocess.run([SCRIPT, "estimate", str(saved / "m.keras"), "--max-model-mib", "inf"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "finite number > 0" in r.stderr


def _edited(src: Path, dst: Path, edit) -> None:
    """A copy of a .keras archive whose config.json is ``edit(config)``."""
    import json

    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as b:
        for info in a.infolist():
            data = a.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            b.writestr(info, data)


def _dense_config(config):
    return next(layer["config"] for layer in config["config"]["layers"] if layer["class_name"] == "QDense")


@pytest.mark.parametrize("edit, match", [
    (lambda c: _dense_config(c).update(name="x" * 2**20), r"name of 1048576 characters .* limit of 256"),
    (lambda c: _dense_config(c).update(units=10**9), r"layer 'd': units=1000000000 is beyond the limit of 65536"),
    (lambda c: _dense_config(c)["input_quantizer"].update(f0=70000.0), r"layer 'd': f0=70000.0 is beyond the limit"),
    (lambda c: _dense_config(c)["input_quantizer"].update(i=-10**9), r"i=-1000000000 is beyond the limit of 1024"),
    (lambda c: c["config"]["layers"][0]["config"].update(batch_shape=[None, 10**6, 10**6]),
     r"batch_shape=\[None, 1000000, 1000000\] has more than 16777216 elements"),
])
def test_absurd_configurations_are_refused_before_keras_builds(saved, tmp_path, edit, match):
    """Issue 12, case 5: names, shapes and bit counts bounded, with the layer named, before any layer is built."""
    bad = tmp_path / "bad.keras"
    _edited(saved / "m.keras", bad, edit)
    with pytest.raises(ValueError, match=match):
        load_model(bad)


def test_absurd_trained_bits_are_refused_by_the_ir(saved):
    """Bits set in the weights file (not the config): the IR refuses them with the layer named."""
    from hgq_fpga.frontend.keras import build_ir

    model = load_model(saved / "m.keras")
    q = model.get_layer("d").input_quantizer
    q.f_max = 1e6  # as a crafted weights file could hold
    q.set_f(np.full(q.bits_shape, 70000.0))
    with pytest.raises(ValueError, match=r"layer 'd' \(its quantizer\): fractional bits f=70000 are beyond"):
        build_ir(model)


def test_cli_refuses_crafted_files_under_a_memory_limit(saved, tmp_path):
    """The command refuses each crafted file with a 1 GiB address-space limit (resource.setrlimit):
    the refusal comes before anything large is read or built."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    files = {"weights member of 2 GiB": tmp_path / "bomb.keras", "1 MiB name": tmp_path / "name.keras",
             "units=10**9": tmp_path / "units.keras"}
    _inflated(saved / "m.keras", files["weights member of 2 GiB"], "model.weights.h5", 2 * 2**30)
    _edited(saved / "m.keras", files["1 MiB name"], lambda c: _dense_config(c).update(name="n" * 2**20))
    _edited(saved / "m.keras", files["units=10**9"], lambda c: _dense_config(c).update(units=10**9))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for what, path in files.items():
        r = subprocess.run([SCRIPT, "estimate", str(path)], capture_output=True, text=True, env=env, timeout=300,
                           preexec_fn=limit)
        assert r.returncode == 2, (what, r.stderr[-500:])
        assert "limit" in r.stderr and "Traceback" not in r.stderr, (what, r.stderr[-500:])
