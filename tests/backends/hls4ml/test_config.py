"""hls4ml configuration in hls4ml's terms (issue 18): reuse factors, the Resource strategy and
per-layer settings keyed by the user's layer names, from Python and from a YAML/JSON file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.backends.hls4ml import ModelTooLarge, to_hls4ml
from hgq_fpga.backends.hls4ml.config import parse_layer_config, read_config_file
from hgq_fpga.layers import QDense
from hgq_fpga.testing import edge_inputs


def mlp():
    rng = np.random.default_rng(3)
    model = keras.Sequential([keras.Input((16,)), QDense(8, activation="relu", name="h1"), QDense(4, name="out")])
    x = rng.standard_normal((200, 16))
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    return model, x


@pytest.mark.parametrize("config, match", [
    ({"nope": {"ReuseFactor": 2}}, r"layers the model does not have: \['nope'\]"),
    ({"h1": {"reuse": 2}}, r"layer_config\['h1'\]: unknown keys \['reuse'\]"),
    ({"h1": {"ReuseFactor": 0}}, r"ReuseFactor must be a whole number >= 1"),
    ({"h1": {"Strategy": "Fast"}}, r"Strategy must be one of \('Latency', 'Resource'\)"),
    (["h1"], r"layer_config must be a dict"),
])
def test_bad_layer_config_is_named(config, match):
    with pytest.raises(ValueError, match=match):
        parse_layer_config(config, ["h1", "out"])


def test_config_files_yaml_and_json(tmp_path):
    (tmp_path / "c.yml").write_text("Model:\n  ReuseFactor: 2\nLayerName:\n  h1: {ReuseFactor: 4, Strategy: Resource}\n")
    assert read_config_file(tmp_path / "c.yml") == ({"ReuseFactor": 2}, {"h1": {"ReuseFactor": 4, "Strategy": "Resource"}})
    (tmp_path / "c.json").write_text(json.dumps({"LayerName": {"out": {"ReuseFactor": 2}}}))
    assert read_config_file(tmp_path / "c.json") == ({}, {"out": {"ReuseFactor": 2}})
    (tmp_path / "s.yml").write_text("IOType: io_stream\nModel: {Strategy: Resource}\n")
    assert read_config_file(tmp_path / "s.yml") == ({"Strategy": "Resource", "IOType": "io_stream"}, {})
    (tmp_path / "t.yml").write_text("IOType: io_serial\n")
    with pytest.raises(ValueError, match=r"IOType must be io_parallel or io_stream. Received: 'io_serial'"):
        read_config_file(tmp_path / "t.yml")
    (tmp_path / "bad.yml").write_text("Layers:\n  h1: {}\n")
    with pytest.raises(ValueError, match=r"unknown top-level keys \['Layers'\]"):
        read_config_file(tmp_path / "bad.yml")
    with pytest.raises(ValueError, match="no such configuration file"):
        read_config_file(tmp_path / "missing.yml")


def test_a_reuse_factor_hls4ml_would_change_is_refused(tmp_path, capsys):
    model, _ = mlp()
    with pytest.raises(ValueError, match=r"layer 'h1': ReuseFactor 3 does not divide its 16x8 kernel.*valid: 1, 2, 4"):
        to_hls4ml(model, tmp_path / "p", strategy="Resource", reuse_factor=3)
    assert not (tmp_path / "p").exists()
    assert "Invalid ReuseFactor" not in capsys.readouterr().out  # hls4ml's warning, under its own layer names


def test_unroll_limit_follows_the_reuse_factor(tmp_path):
    inp = keras.Input((70,))
    model = keras.Model(inp, QDense(60, name="wide")(inp))
    x = np.random.default_rng(0).standard_normal((16, 70))
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    with pytest.raises(ModelTooLarge, match="'wide'.*4200 multiplications"):
        to_hls4ml(model, tmp_path / "a")
    to_hls4ml(model, tmp_path / "b", layer_config={"wide": {"ReuseFactor": 2}})  # 2100 per cycle: fits
    assert "ReuseFactor: 2" in (tmp_path / "b" / "hls4ml_config.yml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {"reuse_factor": 2},
    {"reuse_factor": 4, "strategy": "Resource"},
    {"reuse_factor": 16, "strategy": "Resource"},
    {"layer_config": {"h1": {"ReuseFactor": 16, "Strategy": "Resource"}}},
], ids=["rf2", "rf4-resource", "rf16-resource", "per-layer"])
def test_reuse_factors_and_resource_verify_bit_exactly(options):
    model, x = mlp()
    result = hgq_fpga.verify(model, edge_inputs(x), **options)
    assert result.ok, str(result)


def test_cli_config_file_reaches_the_project(tmp_path):
    model, _ = mlp()
    model.save(tmp_path / "m.keras")
    (tmp_path / "cfg.yml").write_text("IOType: io_stream\nModel: {Strategy: Resource}\nLayerName:\n"
                                      "  h1: {ReuseFactor: 4}\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cli = [sys.executable, "-m", "hgq_fpga.cli", "convert", str(tmp_path / "m.keras")]
    r = subprocess.run([*cli, "-o", str(tmp_path / "p"), "--config", str(tmp_path / "cfg.yml")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    written = (tmp_path / "p" / "hls4ml_config.yml").read_text()
    assert "Strategy: Resource" in written and "ReuseFactor: 4" in written and "IOType: io_stream" in written
    (tmp_path / "bad.yml").write_text("LayerName:\n  h2: {ReuseFactor: 4}\n")
    r = subprocess.run([*cli, "-o", str(tmp_path / "q"), "--config", str(tmp_path / "bad.yml")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "['h2']" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "q").exists()
