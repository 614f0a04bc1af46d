"""What the hgq-fpga command says when the input is wrong: one table of cases a new
user met, each with its exit code and the words that tell them what to do; none
may print a traceback. Plus: the fast paths import neither Keras nor TensorFlow,
and no command prints TensorFlow's start-up lines.

The table calls ``hgq_fpga.cli.main`` -- the console script's entry point -- in
this process (one TensorFlow start-up for all cases instead of one each); the
start-up, noise and end-to-end tests run the installed script in a process of
its own."""

from __future__ import annotations

import json
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

SCRIPT = shutil.which("hgq-fpga", path=str(Path(sys.executable).parent)) or shutil.which("hgq-fpga")
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed console script, in an environment without TensorFlow's settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    full_env.update(env or {})
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=full_env, timeout=600, check=False)




@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_messages")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype("float32")
    model = keras.Sequential([keras.Input((6,)), QDense(5, activation="relu", name="hidden"),
                              QDense(3, name="scores")])
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    model.save(d / "model.keras")
    model.save(d / "legacy.h5")
    shutil.copy(d / "legacy.h5", d / "legacy_h5.keras")
    keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="fc")]).save(d / "plain.keras")
    mixed = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="float_fc"), QDense(3)])
    mixed(x[:2])
    mixed.save(d / "mixed.keras")
    np.save(d / "x.npy", x)
    np.save(d / "narrow.npy", x[:, :4])
    nan = x[:10].copy()
    nan[0, 0] = np.nan
    np.save(d / "nan.npy", nan)
    fresh = keras.Sequential([keras.Input((6,)), QDense(3)])
    fresh(x[:2])
    fresh.save(d / "fresh.keras")
    np.savetxt(d / "x.csv", x, delimiter=",")
    (d / "json.keras").write_text('{"class_name": "Sequential"}')
    (d / "garbage.keras").write_bytes(b"\x00\x01garbage" * 20)
    shutil.copy(d / "model.keras", d / "model.zip")
    _other_keras_version(d / "model.keras", d / "other_version.keras")
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("my notes")
    (d / "a_file").write_text("keep")
    return d


def _other_keras_version(src: Path, dst: Path) -> None:
    """The model as a newer Keras would have saved it: another version, a layer class unknown here."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "metadata.json":
                data = json.dumps({**json.loads(data), "keras_version": "3.99.0"}).encode()
            elif name == "config.json":
                data = data.replace(b"QDense", b"QDenseV9")
            zout.writestr(name, data)


#: (arguments, exit code, words the message must hold, words it must not)
CASES = [
    (("estimate", "{d}/plain.keras"), 2, ["plain Keras model", "fc (Dense)", "hgq_fpga.layers", "from_qkeras"],
     ["not calibrated"]),
    (("estimate", "{d}/plain.keras", "--calibration", "{d}/x.npy"), 2, ["plain Keras model", "hgq_fpga.layers"],
     ["activation quantizers"]),
    (("estimate", "{d}/mixed.keras"), 2, ["float_fc (Dense: use hgq_fpga.layers.QDense)"], ["not calibrated"]),
    (("estimate", "{d}/json.keras"), 2, ["not a .keras archive", "JSON"], ["not found"]),
    (("estimate", "{d}/garbage.keras"), 2, ["not a .keras archive", "model.save"], ["not found"]),
    (("estimate", "{d}/legacy_h5.keras"), 2, ["not a .keras archive", "HDF5"], []),
    (("estimate", "{d}/legacy.h5"), 2, ["not a .keras archive", "HDF5"], []),
    (("estimate", "{d}/model.zip"), 2, ["ending in .keras", "model.keras"], []),
    (("estimate", "{d}/other_version.keras"), 2, ["saved by Keras 3.99.0", f"this is Keras {keras.__version__}"],
     []),
    (("estimate", "{d}/missing.keras"), 2, ["no such file"], []),
    (("estimate", "{d}/fresh.keras"), 2, ["not calibrated", "--calibration"], []),
    (("emulate", "{d}/model.keras", "{d}/narrow.npy", "-o", "{d}/y.npy"), 2, ["shape"], []),
    (("emulate", "{d}/model.keras", "{d}/nan.npy", "-o", "{d}/y.npy"), 2, ["NaN"], []),
    (("emulate", "{d}/model.keras", "{d}/none.npy", "-o", "{d}/y.npy"), 2, ["no such file", ".npy"], []),
    (("synth", "{d}/nowhere"), 2, ["no such folder"], []),
    (("emulate", "{d}/model.keras", "{d}/x.csv", "-o", "{d}/y.npy"), 2, ["CSV", ".npy", "np.save"],
     ["pickle"]),
    (("convert", "{d}/model.keras", "-o", "{d}/mine", "--overwrite"), 2,
     ["not a project folder", "--overwrite replaces only", "-o/--output"], ["overwrite=True", "output_dir"]),
    (("convert", "{d}/model.keras", "-o", "{d}/a_file"), 2, ["is a file, not a project folder", "-o/--output"],
     ["pass --overwrite"]),
    (("convert", "{d}/model.keras", "-o", "{d}/a_file", "--overwrite"), 2, ["is a file, not a project folder"],
     ["overwrite=True"]),
    (("verify", "{d}/model.keras", "{d}/x.npy", "--output-dir", "{d}/mine", "--overwrite"), 2,
     ["not a project folder", "--output-dir"], ["output_dir"]),
    (("report", "{d}/model.keras", "-o", "{d}/mine", "--overwrite"), 2, ["not a report folder"], []),
    (("report", "{d}/model.keras", "-o", "{d}/a_file", "--overwrite"), 2, ["is a file, not a report folder"],
     ["Errno"]),
    (("emulate", "{d}/model.keras", "{d}/x.npy", "-o", "{d}/mine"), 2, ["is a folder; give -o/--output a file"],
     ["pass --overwrite"]),
    (("convert", "{d}/model.keras", "-o", "{d}/p", "--strategy", "Resource", "--reuse-factor", "7"), 2,
     ["layer 'hidden'", "ReuseFactor 7", "valid: 1, 2, 3, 6, 30"], []),
    (("estimate", "{d}/model.keras", "--part", "foo"), 0, ["warning: part 'foo'", "xcvu13p"], []),
    (("nonsense",), 2, ["invalid choice", "estimate"], []),
    (("estimate", "{d}/model.keras", "--strategy", "Nope"), 2, ["invalid choice", "distributed_arithmetic"], []),
]


@pytest.mark.parametrize("args,code,words,absent", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_message(files, cli, args, code, words, absent):
    before = sorted(p.name for p in files.rglob("*"))
    returned, _, err = cli(*(a.format(d=files) for a in args))  # an uncaught exception fails the test
    assert returned == code, (returned, err)
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    for w in absent:
        assert w not in err, (w, err)
    if code:  # refused: nothing was written or removed
        assert sorted(p.name for p in files.rglob("*")) == before
    assert (files / "mine" / "notes.txt").read_text() == "my notes"


def test_an_existing_json_is_refused_before_the_estimate(files, cli, tmp_path):
    (tmp_path / "est.json").write_text("{}")
    code, out, err = cli("estimate", str(files / "model.keras"), "--json", str(tmp_path / "est.json"))
    assert code == 2 and "pass --overwrite" in err
    assert out == ""  # no table printed first


def test_synth_without_vendor_tools(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    code, _, err = cli("synth", str(tmp_path))
    assert code == 3 and "no Vitis tools on PATH" in err and "settings64.sh" in err


@pytest.mark.parametrize("command", ["convert", "estimate", "verify"])
def test_distributed_arithmetic_without_da4ml_is_one_line(files, cli, tmp_path, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "da4ml", None)  # as if not installed: import da4ml raises ImportError
    args = {"convert": ["-o", str(tmp_path / "p")], "estimate": [], "verify": [str(files / "x.npy")]}[command]
    code, _, err = cli(command, str(files / "model.keras"), *args, "--strategy", "distributed_arithmetic")
    assert code == 3, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "pip install 'hgq_fpga[da]'" in err and "da4ml" in err
    assert not (tmp_path / "p").exists()


_IMPORTS = ("import sys\nfrom hgq_fpga.cli import main\n"
            "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('LOADED', *sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n"
            "sys.exit(code)")


@pytest.mark.parametrize("args,code", [(("--help",), 0), (("estimate", "--help"), 0),
                                       (("estimate", "missing.keras"), 2), (("--version",), 0),
                                       (("convert", "missing.keras", "-o", "p"), 2)])
def test_fast_paths_import_no_framework(tmp_path, args, code):
    r = subprocess.run([sys.executable, "-c", _IMPORTS, *args], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120, check=False)
    assert r.returncode == code, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "LOADED", r.stdout


def test_no_tensorflow_start_up_lines(files, tmp_path):
    """Without TF_CPP_MIN_LOG_LEVEL: TensorFlow prints its absl/oneDNN notices while it loads."""
    r = run("emulate", str(files / "model.keras"), str(files / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    for noise in ("absl::InitializeLog", "oneDNN", "cpu_feature_guard", "To enable the following"):
        assert noise not in r.stderr, r.stderr
    plain = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if not k.startswith("TF_")}, check=False)
    if keras.backend.backend() == "tensorflow":  # the test means something only if TensorFlow is noisy here
        assert "oneDNN" in plain.stderr or "absl" in plain.stderr


@pytest.mark.slow
def test_verify_names_outputs_by_layer(files):
    r = run("verify", str(files / "model.keras"), str(files / "x.npy"), env=QUIET)
    assert r.returncode == 0, r.stderr
    assert "BIT-EXACT" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("scores"))
    assert row.split()[1] == str(64 * 3)
    assert "_dense_out" not in r.stdout
