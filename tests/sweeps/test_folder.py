"""The sweep's spec and folder: trial keys, validation, atomic trial folders, resuming rules, tables."""

from __future__ import annotations

import csv
import json
import os

import pytest

from hgq_fpga.sweeps import SweepConflictError, SweepFolder, SweepSpec
from hgq_fpga.sweeps.spec import resolve_build


def spec(**kw):
    base = {"build": "mlp", "architectures": {"small": {"widths": [8, 10]}}, "budgets": [500, None],
            "seeds": [0, 1], "epochs": 1, "data": "abc"}
    return SweepSpec(**{**base, **kw})


def payload(lut=100.0):
    return {"metrics": {"trial": "x", "architecture": "small", "budget_lut": 500, "seed": 0, "lut": lut, "dsp": 0,
                        "ebops": 1.0, "accuracy": 0.5, "feasible": True, "repair_rounds": 0, "seconds": 1.0,
                        "method": "constraint"},
            "estimate": {"lut": lut}, "history": [], "model": b"PK fake"}


def test_trials_cover_every_combination_with_readable_keys():
    keys = [t.key for t in spec().trials()]
    assert keys == ["small_lut500_seed0", "small_lut500_seed1", "small_free_seed0", "small_free_seed1"]


@pytest.mark.parametrize(("kw", "message"), [
    ({"budgets": [0]}, "budgets are positive LUT counts"),
    ({"budgets": ["lots"]}, "received 'lots'"),
    ({"budgets": []}, "budgets must be a non-empty list"),
    ({"seeds": [1.5]}, "seeds must be integers"),
    ({"epochs": 0}, "epochs must be integers >= 1"),
    ({"method": "magic"}, "method must be 'constraint', 'step' or 'primal_dual'; received method='magic'"),
    ({"architectures": {"../up": {}}}, "architecture names are letters"),
    ({"architectures": {"a": [1]}}, "architecture 'a': options must be a mapping"),
])
def test_bad_specs_say_what_was_received(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        spec(**kw)


def test_builders_by_name():
    from hgq_fpga.models import mlp

    assert resolve_build("mlp") is mlp
    assert resolve_build("hgq_fpga.models:cnn").__name__ == "cnn"
    with pytest.raises(ValueError, match="neither one of mlp, cnn nor 'package.module:function'"):
        resolve_build("resnet")
    with pytest.raises(ValueError, match="must be importable on every worker"):
        resolve_build("no_such_module_xyz:build")


def test_a_trial_folder_is_complete_or_absent_and_never_stored_twice(tmp_path):
    f = SweepFolder(tmp_path / "s")
    f.open(spec())
    assert f.store("small_lut500_seed0", payload(100.0), attempts=2)
    assert not f.store("small_lut500_seed0", payload(999.0), attempts=1)  # a duplicate is dropped
    d = f.trials_dir / "small_lut500_seed0"
    assert sorted(p.name for p in d.iterdir()) == ["estimate.json", "history.json", "metrics.json", "model.keras",
                                                   "sensitivities.json"]
    assert json.loads((d / "metrics.json").read_text())["lut"] == 100.0
    assert f.finished() == {"small_lut500_seed0"}
    assert [p.name for p in f.trials_dir.iterdir()] == ["small_lut500_seed0"]  # no staging folder left
    assert oct(os.stat(d).st_mode & 0o777) != "0o700"  # the user's permissions, not tempfile's


def test_a_staging_folder_of_a_killed_sweep_is_not_a_trial_and_is_cleaned_up(tmp_path):
    f = SweepFolder(tmp_path / "s")
    f.open(spec())
    stale = f.trials_dir / ".staging-dead"
    stale.mkdir()
    (stale / ".hgq_fpga_owner").write_text("999999999\n")  # no such process
    (stale / "metrics.json").write_text("{}")
    assert f.finished() == set()
    f.store("small_lut500_seed0", payload(), attempts=1)
    assert not stale.exists()


def test_resuming_with_other_settings_is_refused_and_overwrite_starts_over(tmp_path):
    f = SweepFolder(tmp_path / "s")
    f.open(spec())
    f.store("small_lut500_seed0", payload(), attempts=1)
    f.open(spec(budgets=[500, 700], seeds=[0, 1, 2]))  # more budgets and seeds: the same sweep, grown
    assert f.finished() == {"small_lut500_seed0"}
    with pytest.raises(SweepConflictError, match=r"epochs: saved 1, now 5.*another output folder, or "
                                                 r"overwrite=True \(--overwrite\)"):
        f.open(spec(epochs=5))
    with pytest.raises(SweepConflictError, match="architecture 'small': saved"):
        f.open(spec(architectures={"small": {"widths": [4, 10]}}))
    assert f.finished() == {"small_lut500_seed0"}  # nothing lost by the refusals
    f.open(spec(epochs=5), overwrite=True)
    assert f.finished() == set()


def test_other_files_are_never_taken_for_a_sweep(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("keep me")
    with pytest.raises(SweepConflictError, match="with other files in it"):
        SweepFolder(tmp_path / "notes").open(spec())
    (tmp_path / "file").write_text("x")
    with pytest.raises(SweepConflictError, match="is not a folder"):
        SweepFolder(tmp_path / "file").open(spec())
    (tmp_path / "link").symlink_to(tmp_path / "notes")
    with pytest.raises(SweepConflictError, match="is not a folder"):
        SweepFolder(tmp_path / "link").open(spec())
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "keep me"


def test_tables_hold_every_trial_and_the_synthesis_columns(tmp_path):
    import pyarrow.parquet as pq

    f = SweepFolder(tmp_path / "s")
    f.open(spec())
    f.store("small_lut500_seed0", payload(100.0), attempts=1)
    f.store("small_free_seed0", payload(900.0), attempts=1)
    f.store_extra("small_free_seed0", "synth-yosys", {"lut": 870, "carry": 12})
    rows = f.rows()
    paths = f.write_tables(rows)
    assert [p.name for p in paths] == ["results.csv", "results.parquet"]
    table = list(csv.DictReader((tmp_path / "s" / "results.csv").open()))
    assert [r["lut"] for r in table] == ["900.0", "100.0"] and table[0]["yosys_lut"] == "870"
    assert table[1]["yosys_lut"] == "" and table[0]["attempts"] == "1"
    assert pq.read_table(tmp_path / "s" / "results.parquet").column("yosys_lut").to_pylist() == [870, None]
    assert f.write_plot(rows).stat().st_size > 1000


def test_a_sweep_result_shows_as_a_table_and_a_dataframe(tmp_path):
    from hgq_fpga.sweeps import SweepResult

    rows = [{**payload(100.0)["metrics"], "trial": "small_lut500_seed0", "attempts": 1},
            {**payload(90.0)["metrics"], "trial": "<b>x</b>", "attempts": 2}]
    r = SweepResult(tmp_path, rows, ran=["small_lut500_seed0"], skipped=["<b>x</b>"])
    assert repr(r).endswith("2 trial(s) stored; this call ran 1, skipped 1, 0 failed)")
    html = r._repr_html_()
    assert html.count("<tr>") == 3 and "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x" not in html
    df = r.to_pandas()
    assert list(df["lut"]) == [100.0, 90.0] and list(df["attempts"]) == [1, 2]
