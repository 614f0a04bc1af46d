"""The hgq-fpga command, end to end through the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.layers import QDense

SCRIPT = shutil.which("hgq-fpga", path=str(Path(sys.executable).parent)) or shutil.which("hgq-fpga")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    assert SCRIPT, "the hgq-fpga console script is not installed (pip install -e .)"
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=full_env, timeout=600, check=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), QDense(5, activation="relu"), QDense(3)])
    x = rng.standard_normal((200, 6)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    model.save(d / "model.keras")
    fresh = keras.Sequential([keras.Input((6,)), QDense(3)])
    fresh(x[:2])
    fresh.save(d / "fresh.keras")
    np.save(d / "x.npy", x[:50])
    np.save(d / "bad.npy", x[:50, :4])
    nan = x[:10].copy()
    nan[0, 0] = np.nan
    np.save(d / "nan.npy", nan)
    return d, model, x[:50]


def test_help_on_every_subcommand():
    top = run("--help")
    assert top.returncode == 0 and "exit codes" in top.stdout
    for cmd in ("estimate", "convert", "emulate", "verify", "report", "synth", "demo"):
        r = run(cmd, "--help")
        assert r.returncode == 0 and "usage: hgq-fpga " + cmd in r.stdout, cmd


def test_estimate_prints_and_writes_json(files):
    d, model, _ = files
    r = run("estimate", str(d / "model.keras"), "--json", str(d / "est.json"))
    assert r.returncode == 0, r.stderr
    assert "total" in r.stdout
    data = json.loads((d / "est.json").read_text())
    assert data["lut"] == hgq_fpga.estimate(model).lut
    again = run("estimate", str(d / "model.keras"), "--json", str(d / "est.json"))
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr


def test_emulate_matches_the_library(files):
    d, model, x = files
    r = run("emulate", str(d / "model.keras"), str(d / "x.npy"), "-o", str(d / "y.npy"))
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(d / "y.npy"), hgq_fpga.emulate(model, x))


@pytest.mark.slow
def test_convert_and_verify(files):
    d, _, _ = files
    r = run("verify", str(d / "model.keras"), str(d / "x.npy"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "BIT-EXACT" in r.stdout
    r = run("convert", str(d / "model.keras"), "-o", str(d / "prj"))
    assert r.returncode == 0, r.stderr
    assert (d / "prj" / "build_prj.tcl").exists()
    before = sorted(p.name for p in (d / "prj").iterdir())
    r = run("convert", str(d / "model.keras"), "-o", str(d / "prj"))
    assert r.returncode == 2 and "exists" in r.stderr
    assert sorted(p.name for p in (d / "prj").iterdir()) == before


def test_synth_reads_reports_of_an_earlier_build(tmp_path):
    r = run("synth", str(tmp_path), "--read-only")
    assert r.returncode == 2  # no reports there: a clear error, not a traceback
    assert "Traceback" not in r.stderr


def test_report_writes_html_and_plots(files):
    d, _, _ = files
    r = run("report", str(d / "model.keras"), "-o", str(d / "report"))
    assert r.returncode == 0, r.stderr
    html = (d / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "Tensor formats" in html
    for name in ("weight_bits_hist", "weight_bits_map", "resources"):
        assert (d / "report" / f"{name}.png").stat().st_size > 2000
    r = run("report", str(d / "model.keras"), "-o", str(d / "report"))
    assert r.returncode == 2 and "exists" in r.stderr
