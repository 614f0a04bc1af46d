"""``hgq-fpga sweep`` and ``hgq-fpga synth SWEEP_DIR``: one-line errors in the CLI's terms, before any
work; yosys syntheses of a sweep's models added to its table."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

GOOD = "model: mlp\nbudgets: [500]\nepochs: 1\n"




@pytest.mark.parametrize(("config", "message"), [
    ("model: mlp\nbudgets: [500]\nepochs: 1\nepoch: 3\n", "unknown key(s) epoch; the keys are model, architectures"),
    ("budgets: [500]\nepochs: 1\n", "missing model"),
    ("- 1\n- 2\n", "expected a mapping with keys model"),
    ("model: [unclosed\n", "not YAML or JSON"),
    (GOOD + "data: {x: x.npy}\n", "a mapping with exactly x, y, x_test, y_test"),
    (GOOD.replace("mlp", "resnet"), "'resnet' is neither one of mlp, cnn"),
    (GOOD.replace("[500]", "[-5]"), "budgets are positive LUT counts"),
    (GOOD + "budget: {luts: 3}\n", "unexpected keyword argument 'luts'"),
])
def test_bad_configurations_are_one_line_with_exit_code_2(cli, tmp_path, config, message):
    f = tmp_path / "sweep.yml"
    f.write_text(config)
    code, out, err = cli("sweep", str(f), "-o", str(tmp_path / "out"))
    assert code == 2 and message in err and "Traceback" not in err, err
    assert err.startswith("hgq-fpga sweep: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_bad_runner_flags_are_refused_before_any_work(cli, tmp_path):
    (tmp_path / "s.yml").write_text(GOOD)
    code, _, err = cli("sweep", str(tmp_path / "s.yml"), "-o", str(tmp_path / "out"), "--workers", "0")
    assert code == 2 and "workers must be a whole number >= 1; received workers=0" in err
    assert not (tmp_path / "out").exists()


def test_missing_config_and_data_files(cli, tmp_path):
    code, _, err = cli("sweep", str(tmp_path / "nope.yml"), "-o", str(tmp_path / "out"))
    assert code == 2 and "no such file (give a sweep configuration" in err
    (tmp_path / "s.yml").write_text(GOOD + "data: {x: a.npy, y: b.npy, x_test: c.npy, y_test: d.npy}\n")
    code, _, err = cli("sweep", str(tmp_path / "s.yml"), "-o", str(tmp_path / "out"))
    assert code == 2 and "a.npy" in err


def test_a_folder_with_other_files_is_refused_in_flag_terms(cli, tmp_path):
    (tmp_path / "s.yml").write_text(GOOD)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("x")
    code, _, err = cli("sweep", str(tmp_path / "s.yml"), "-o", str(tmp_path / "out"))
    assert code == 2 and "with other files in it" in err


def test_ray_runner_without_ray_is_exit_3_before_any_work(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    (tmp_path / "s.yml").write_text(GOOD)
    code, _, err = cli("sweep", str(tmp_path / "s.yml"), "-o", str(tmp_path / "out"), "--runner", "ray")
    assert code == 3 and "pip install 'hgq_fpga[cluster]'" in err and "--runner ray" in err
    assert not (tmp_path / "out").exists()


def test_help_shows_a_configuration(cli):
    code, out, _ = cli("sweep", "--help")
    assert code == 0 and "architectures:" in out and "--runner" in out and "(default: local)" in out


def _sweep_folder_with_models(tmp_path: Path) -> Path:
    """A sweep folder holding two small calibrated models (as if trained by two trials)."""
    import keras

    import hgq_fpga
    from hgq_fpga.layers import QDense
    from hgq_fpga.sweeps import SweepFolder, SweepSpec

    folder = SweepFolder(tmp_path / "s")
    folder.open(SweepSpec(build="mlp", budgets=[100], seeds=[0, 1], epochs=1))
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((6,)), QDense(4, activation="relu", name="a"), QDense(3, name="b")])
        hgq_fpga.calibrate(model, rng.uniform(-1, 1, (64, 6)))
        model.save(tmp_path / "m.keras")
        rep = hgq_fpga.estimate(model)
        metrics = {"trial": f"model_lut100_seed{seed}", "architecture": "model", "budget_lut": 100, "seed": seed,
                   "lut": rep.lut, "dsp": rep.dsp, "ebops": rep.ebops, "accuracy": 0.5, "feasible": True,
                   "repair_rounds": 0, "seconds": 0.1, "method": "constraint"}
        folder.store(f"model_lut100_seed{seed}", {"metrics": metrics, "estimate": rep.to_dict(), "history": [],
                                                  "model": (tmp_path / "m.keras").read_bytes()}, attempts=1)
    return folder.path


@pytest.mark.slow
def test_synth_adds_yosys_counts_of_every_trial_to_the_table(cli, tmp_path):
    from hgq_fpga.backends.rtl import synthesize
    from hgq_fpga.loading import load_model

    path = _sweep_folder_with_models(tmp_path)
    code, out, err = cli("synth", str(path), "--tool", "yosys", "--runner", "inline")  # the pool: test_runners
    assert code == 0, err
    rows = list(csv.DictReader((path / "results.csv").open()))
    assert len(rows) == 2 and all(int(r["yosys_lut"]) > 0 for r in rows)
    direct = synthesize(load_model(path / "trials" / "model_lut100_seed1" / "model.keras"), flatten=True)
    assert int(rows[1]["yosys_lut"]) == direct.lut and int(rows[1]["yosys_carry"]) == direct.carry
    assert "model_lut100_seed1" in out and "yosys LUT" in out


def test_only_the_front_is_synthesized_when_asked(tmp_path):
    from hgq_fpga.sweeps import synthesize_many
    from hgq_fpga.sweeps.folder import pareto_front

    path = _sweep_folder_with_models(tmp_path)  # same accuracy: the cheaper model alone is on the front
    rows = synthesize_many(path, tool="yosys", runner="inline", front=True, progress=False)
    front = pareto_front(rows)
    assert len(front) == 1
    assert [r["trial"] for r in rows if "yosys_lut" in r] == front


def test_synth_without_yosys_is_exit_3(cli, tmp_path, monkeypatch):
    from hgq_fpga.sweeps import SweepFolder, SweepSpec

    SweepFolder(tmp_path / "s").open(SweepSpec(build="mlp", budgets=[100], epochs=1))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    code, _, err = cli("synth", str(tmp_path / "s"))
    assert code == 3 and "needs yosys on PATH" in err and "apt-get install yosys" in err


def test_the_example_configuration_is_valid():
    from hgq_fpga.cli_sweep import read_sweep_config
    from hgq_fpga.sweeps import SweepSpec

    root = Path(__file__).resolve().parents[2]
    config = read_sweep_config(str(root / "examples" / "sweep.yml"))
    spec = SweepSpec(build=config["build"], budgets=config["budgets"], epochs=config["epochs"],
                     architectures=config["architectures"], seeds=config["seeds"])
    assert len(spec.trials()) == 24 and spec.budgets[-1] is None
