"""``to_rtl``: the pipelined Verilog project, simulated by Icarus Verilog bit for bit
against the emulator, its testbench, its files, and yosys on the shipped source
(needs yosys and iverilog; .ci/run installs them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.backends.rtl import run_testbench, synthesize, to_rtl
from hgq_fpga.backends.rtl.build import logic_path
from hgq_fpga.backends.rtl.project import RTL_PROJECT
from hgq_fpga.backends.rtl.verilog import VerilogModule, to_verilog
from hgq_fpga.layers import QActivation, QAdd, QAveragePooling1D, QConcatenate, QConv1D, QDense, QMaxPooling1D
from hgq_fpga.testing import dense_layer_model, edge_inputs, perturb_bits


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def calibrated(model, x, rng):
    model(x[:2])
    perturb_bits(model, rng, prune_fraction=0.2)
    hgq_fpga.calibrate(model, x)
    return model


def mixed_model(rng, overflow):
    """Every kind of operation: convolutions, add, both poolings, concatenation, dense, relu, a table."""
    iq = {"overflow": overflow, "rounding": "TRN" if overflow == "WRAP" else "RND"}
    x_in = keras.Input((8, 2))
    a = QConv1D(3, 3, padding="same", activation="relu", input_quantizer=iq)(x_in)
    b = QConv1D(3, 3, padding="same", input_quantizer=iq)(x_in)
    s = QAdd()([a, b])
    c = QConcatenate()([QMaxPooling1D(2)(s), QAveragePooling1D(2)(s)])
    h = QDense(5, activation="relu", input_quantizer=iq)(keras.layers.Flatten()(c))
    y = QActivation("sigmoid")(QDense(3, input_quantizer=iq)(h))
    x = rng.standard_normal((200, 8, 2)).astype("float32")
    return calibrated(keras.Model(x_in, y), x, rng), x


@pytest.mark.parametrize("overflow, cutoff", [("WRAP", 0.6), ("SAT", None), ("SAT", float("inf"))],
                         ids=["wrap-deep", "sat-default", "sat-outputs_only"])
def test_pipelined_projects_are_bit_exact(overflow, cutoff, tmp_path):
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    model, x = mixed_model(rng, overflow)
    probe = edge_inputs(x)  # overflow both ways, ties, range edges, values far beyond float32's grid
    result = hgq_fpga.verify(model, probe, tmp_path / "prj", backend="rtl", latency_cutoff=cutoff)
    assert result.backend == "rtl" and result.n_samples == len(probe)
    assert result.ok, str(result)
    meta = json.loads((tmp_path / "prj" / RTL_PROJECT.marker).read_text())
    if cutoff == float("inf"):
        assert meta["latency_cycles"] == 1
    if cutoff == 0.6:  # each stage's estimated logic fits the cutoff unless one net alone exceeds it
        assert meta["latency_cycles"] > 3
    # the project's own testbench checks the same samples
    passed, _, log = run_testbench(tmp_path / "prj")
    assert passed and f"PASS: {len(probe)} samples" in log


def test_testbench_reports_a_wrong_output(tmp_path):
    model, x = dense_layer_model(6, 4, seed=1)
    project = to_rtl(model, tmp_path / "prj", test_inputs=x[:20])
    out = tmp_path / "prj" / "tb_data" / "out0.hex"
    words = out.read_text().split()
    words[7] = format(int(words[7], 16) ^ 1, f"0{len(words[7])}x")  # one bit of one expected word
    out.write_text("\n".join(words) + "\n")
    passed, _, log = run_testbench(project)
    assert not passed and "FAIL: 1 of 20 samples differ" in log and "sample 7" in log


def test_project_is_reproducible_and_carries_no_model_text(tmp_path):
    rng = np.random.default_rng(0)
    name = 'evil"); $finish; (* x *) \\'  # Verilog, attribute and string syntax in a layer name
    model = keras.Sequential([keras.Input((5,)), QDense(4, activation="relu"), QDense(2, name=name)])
    x = rng.standard_normal((64, 5)).astype("float32")
    calibrated(model, x, rng)
    a, b = to_rtl(model, tmp_path / "a"), to_rtl(model, tmp_path / "b")
    assert tree(a.path) == tree(b.path)
    for rel, data in tree(a.path).items():
        if rel.endswith((".v", ".tcl", ".ys", ".xdc", ".sdc")) or rel == "Makefile":
            assert b"evil" not in data, rel
    meta = json.loads((a.path / RTL_PROJECT.marker).read_text())
    assert meta["outputs"][0]["layer"] == name  # the name map keeps the user's name, JSON-escaped
    assert sorted(tree(a.path)) == sorted([
        "Makefile", "build_vivado.tcl", "build_yosys.ys", "constraints/model.sdc", "constraints/model.xdc",
        RTL_PROJECT.marker, "src/model.v", "tb/tb_model.v", "tb_data/in0.hex", "tb_data/out0.hex"])


def test_existing_folders_are_refused_and_overwrite_replaces_only_projects(tmp_path):
    model, _ = dense_layer_model(4, 2)
    target = tmp_path / "prj"
    to_rtl(model, target)
    with pytest.raises(FileExistsError, match="already exists.*overwrite=True"):
        to_rtl(model, target)
    to_rtl(model, target, overwrite=True, clock_period=2.0)
    assert json.loads((target / RTL_PROJECT.marker).read_text())["clock_period_ns"] == 2.0
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not an RTL project"):
        to_rtl(model, user, overwrite=True)
    assert (user / "thesis.tex").read_text() == "years of work"
    link = tmp_path / "link"
    os.symlink(user, link)
    with pytest.raises(FileExistsError, match="not a folder"):
        to_rtl(model, link, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["link", "prj", "thesis"]  # no staging folder left


@pytest.mark.parametrize("bad, match", [({"flavor": "vhdl"}, "flavor"), ({"clock_period": 0}, "clock_period"),
                                        ({"latency_cutoff": -1.0}, "latency_cutoff"), ({"top": "1x"}, "identifier"),
                                        ({"prefer": "area"}, "prefer must be 'latency'.*Received: prefer='area'")])
def test_bad_options_are_named(bad, match, tmp_path):
    model, _ = dense_layer_model(4, 2)
    with pytest.raises(ValueError, match=match):
        to_rtl(model, tmp_path / "prj", **bad)
    assert not (tmp_path / "prj").exists()


def _yosys_project(path):
    """The project's own yosys script (as a user runs it); its cell counts and the longest logic
    path between registers."""
    (path / "reports").mkdir(exist_ok=True)
    subprocess.run(["yosys", "-q", "-s", "build_yosys.ys"], cwd=path, check=True, capture_output=True)
    stat = (path / "reports" / "yosys_utilization.txt").read_text()
    cells = {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", stat, re.MULTILINE)}
    return cells, logic_path(path)


@pytest.mark.slow
def test_flip_flops_and_stage_depth_against_flattened_yosys(tmp_path):
    """The project's flip-flop count is yosys's on the shipped source (flattened); the longest
    path between registers that yosys reports is no deeper than the deepest stage the pipeline
    was written with, and under a tight cutoff its delay (by the same delay model) fits it."""
    model, _ = dense_layer_model(12, 8, weight_bits=5, input_bits=6)
    one = to_rtl(model, tmp_path / "one", latency_cutoff=float("inf"))
    two = to_rtl(model, tmp_path / "two")
    four = to_rtl(model, tmp_path / "four", latency_cutoff=1.5)
    (cells_one, path_one), (cells_two, path_two), (cells_four, path_four) = (
        _yosys_project(p.path) for p in (one, two, four))
    assert (one.latency, two.latency) == (1, 2) and four.latency >= 3
    for project, cells, path in ((one, cells_one, path_one), (two, cells_two, path_two), (four, cells_four, path_four)):
        assert cells["FDRE"] == project.module.ff
        assert 0 < path.cells <= max(project.module.pipeline.stage_cells)
    assert path_four.cells < path_two.cells < path_one.cells
    assert path_four.delay() <= 1.5 < path_two.delay()
    # the LUTs of the clocked project are those of the combinational circuit the estimate counts
    comb = synthesize(to_verilog(hgq_fpga.build_ir(model), shared=True), flatten=True)
    lut = sum(v for k, v in cells_two.items() if re.fullmatch(r"LUT\d", k))
    assert abs(lut - comb.lut) <= 0.02 * comb.lut
    # sharing subexpressions across outputs is what makes the shipped circuit smaller than per-output trees
    assert comb.lut < 0.9 * synthesize(model, flatten=True).lut
    # estimate(backend="rtl") counts the shipped project: its adders as synthesized one by one, its
    # flip-flops and latency as written
    report = hgq_fpga.estimate(model, backend="rtl")
    kept = synthesize(VerilogModule(two.module.source, "model", [], []), family="xcup")
    assert (report.ff, report.latency_cycles) == (two.module.ff, two.latency) == (kept.ff, 2)
    assert report.lut == kept.lut and report.carry == kept.carry


def test_cli_convert_rtl_self_check_and_hls_flags_refused(cli, tmp_path):
    model, x = dense_layer_model(5, 3)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x[:30])
    code, out, err = cli("convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "prj"), "--backend", "rtl",
                         "--self-check")
    assert code == 0, err
    assert re.search(r"latency \d+ cycles \(\d+ ns at 5 ns\), \d+ flip-flops", out) and "self-check: PASS" in out
    code, out, err = cli("convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "p2"), "--backend", "rtl",
                         "--reuse-factor", "2")
    assert code == 2 and "--reuse-factor is an hls4ml setting" in err
    assert not (tmp_path / "p2").exists()
    code, out, err = cli("verify", str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), "--backend", "rtl")
    assert code == 0 and "BIT-EXACT" in out and "rtl!=emu" in out


def test_rtl_estimate_reports_the_projects_flip_flops_and_latency(cli, tmp_path):
    model, _ = dense_layer_model(10, 6, weight_bits=6, input_bits=7, seed=2)
    for period, cutoff in ((5.0, None), (2.0, None), (5.0, 0.6)):
        report = hgq_fpga.estimate(model, backend="rtl", clock_period=period, latency_cutoff=cutoff)
        project = to_rtl(model, tmp_path / f"p{period}{cutoff}", clock_period=period, latency_cutoff=cutoff)
        assert (report.ff, report.latency_cycles) == (project.module.ff, project.latency)
        assert report.latency_ns == project.latency * period and report.dsp == 0
        assert report.to_dict()["ff"] == report.ff and "flip-flops" in report.what_it_counts
    # the shared adder graphs cost less than the Latency rules' per-output trees (every product in
    # LUTs) on the same weights; a faster clock costs cycles, not LUTs
    assert report.lut < 0.85 * hgq_fpga.estimate(model, cost_model=hgq_fpga.CostModel(dsp_min_bits=1 << 30)).lut
    slow, fast = (hgq_fpga.estimate(model, backend="rtl", clock_period=p) for p in (10.0, 1.5))
    assert fast.latency_cycles > slow.latency_cycles and fast.lut == slow.lut
    assert f"latency: {fast.latency_cycles} cycles" in str(fast)
    with pytest.raises(ValueError, match="backend='rtl' writes its own adder trees"):
        hgq_fpga.estimate(model, backend="rtl", strategy="distributed_arithmetic")
    with pytest.raises(ValueError, match="backend must be one of"):
        hgq_fpga.estimate(model, backend="vhdl")
    model.save(tmp_path / "m.keras")
    code, out, err = cli("estimate", str(tmp_path / "m.keras"), "--backend", "rtl", "--clock-period", "2")
    assert code == 0 and re.search(r"latency: \d+ cycles \(\d+ ns at a 2 ns clock\); flip-flops: \d+", out)
    code, out, err = cli("estimate", str(tmp_path / "m.keras"), "--backend", "rtl", "--strategy",
                         "distributed_arithmetic")
    assert code == 2 and "--strategy distributed_arithmetic is an hls4ml strategy" in err


def test_prefer_luts_writes_the_smallest_graphs_for_more_cycles(cli, tmp_path):
    """``prefer="luts"`` (da4ml's own choice) on an 8x8 layer of 2-bit weights (benchmarks/rtl.py's
    layer07): da4ml's two-stage decomposition, a third fewer LUTs than the default's graph by the
    estimate and by flattened yosys on each shipped project, for one cycle more; still bit-exact."""
    from hgq_fpga.backends.rtl.build import synthesize_project

    model, x = dense_layer_model(8, 8, weight_bits=2, zero_fraction=0.0, input_bits=8, signed_input=False, seed=7)
    fast, small = (hgq_fpga.estimate(model, backend="rtl", prefer=p) for p in ("latency", "luts"))
    assert small.lut < 0.75 * fast.lut and small.latency_cycles == fast.latency_cycles + 1
    result = hgq_fpga.verify(model, edge_inputs(x), tmp_path / "luts", backend="rtl", prefer="luts")
    assert result.ok, str(result)
    for report, path in ((small, tmp_path / "luts"), (fast, to_rtl(model, tmp_path / "latency").path)):
        synth = synthesize_project(path)
        assert abs(synth.lut - report.lut) <= 0.05 * report.lut and synth.ff == report.ff
    meta = json.loads((tmp_path / "luts" / RTL_PROJECT.marker).read_text())
    assert meta["estimate"]["lut"] == small.lut and meta["prefer"] == "luts"
    model.save(tmp_path / "m.keras")
    code, out, err = cli("estimate", str(tmp_path / "m.keras"), "--backend", "rtl", "--prefer", "luts")
    assert code == 0 and f"latency: {small.latency_cycles} cycles" in out
    code, out, err = cli("convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "v"), "--prefer", "luts")
    assert code == 2 and "--prefer chooses the adder graphs of --backend rtl" in err and not (tmp_path / "v").exists()
    with pytest.raises(ValueError, match="prefer= chooses the adder graphs of backend='rtl'"):
        hgq_fpga.estimate(model, prefer="luts")


@pytest.mark.slow
def test_cli_synth_runs_the_projects_yosys_script_and_shows_both_counts(cli, tmp_path):
    import shutil

    from hgq_fpga.backends.rtl.build import project_estimate, synthesize_project

    model, _ = dense_layer_model(8, 6, weight_bits=6, input_bits=6)
    project = to_rtl(model, tmp_path / "prj")
    code, out, err = cli("synth", str(project.path), "--tool", "yosys")
    assert code == 0, err
    est, result = project_estimate(project), synthesize_project(project)
    assert est["ff"] == result.ff == project.module.ff and est["lut"] == hgq_fpga.estimate(model, backend="rtl").lut
    assert abs(result.lut / est["lut"] - 1) <= 0.15
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["estimate"], ["yosys"])}
    assert rows["estimate"][:2] == [str(est["lut"]), str(est["ff"])] and rows["yosys"][:2] == [str(result.lut),
                                                                                              str(result.ff)]
    assert (project.path / "reports" / "yosys_utilization.txt").is_file()
    path = logic_path(project)
    assert re.search(rf"longest logic path between registers: {path.cells} cells .* deepest stage as written: "
                     rf"{max(project.module.pipeline.stage_cells)} cells, cutoff 3.5 ns", out)
    if shutil.which("vivado") is None:
        code, out, err = cli("synth", str(project.path), "--tool", "vivado")
        assert code == 3 and "vivado" in err.lower()
    code, out, err = cli("synth", str(project.path), "--tool", "vitis")
    assert code == 2 and "--tool yosys or --tool vivado" in err


def test_cli_convert_rtl_without_da4ml_says_what_to_install(cli, tmp_path, monkeypatch):
    """da4ml (which solves the shared adder graphs) missing from a broken install: one line naming it
    and the pip command, exit 3 (a missing tool), nothing written."""
    model, _ = dense_layer_model(5, 3)
    model.save(tmp_path / "m.keras")
    for name in [k for k in sys.modules if k.startswith("da4ml.")] + ["da4ml"]:
        monkeypatch.setitem(sys.modules, name, None)  # import da4ml... fails
    monkeypatch.delitem(sys.modules, "hgq_fpga.resources.da_cmvm", raising=False)
    code, out, err = cli("convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "prj"), "--backend", "rtl")
    assert code == 3 and "da4ml" in err and "pip install" in err and "Traceback" not in err, err
    assert not (tmp_path / "prj").exists()


def test_synth_writes_no_report_through_a_link(cli, tmp_path):
    """A link planted at the project's reports/ (or at a report inside it) is refused before the tool
    runs: nothing is written outside the project."""
    model, _ = dense_layer_model(3, 2)
    project = to_rtl(model, tmp_path / "prj")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("mine")
    os.symlink(outside, project.path / "reports")
    code, _, err = cli("synth", str(project.path), "--tool", "yosys")
    assert code == 2 and "symbolic link" in err and "reports" in err
    os.unlink(project.path / "reports")
    (project.path / "reports").mkdir()
    os.symlink(outside / "notes.txt", project.path / "reports" / "yosys_utilization.txt")
    code, _, err = cli("synth", str(project.path), "--tool", "yosys")
    assert code == 2 and "yosys_utilization.txt is a symbolic link" in err
    assert os.listdir(outside) == ["notes.txt"] and (outside / "notes.txt").read_text() == "mine"
