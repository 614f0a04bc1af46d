"""Atomic projects, limits with clear errors, compiler failures, zero-width tensors."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga import projects
from hgq_fpga.backends.hls4ml import CompileError, ModelTooLarge, UnsupportedForHls4ml, check_limits, project, to_hls4ml
from hgq_fpga.backends.hls4ml.limits import MAX_UNROLLED_MULTIPLICATIONS
from hgq_fpga.frontend import build_ir
from hgq_fpga.layers import QActivation, QConcatenate, QConv2D, QDense
from hgq_fpga.testing import edge_inputs, perturb_bits


def tree(root):
    """Every file under ``root`` with its bytes (the byte-for-byte identity of a project)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def small(rng, units=4, n_in=6, seed_bits=True):
    model = keras.Sequential([keras.Input((n_in,)), QDense(units, activation="relu"), QDense(2)])
    x = rng.standard_normal((64, n_in)).astype("float32")
    model(x[:2])
    if seed_bits:
        perturb_bits(model, rng)
    hgq_fpga.calibrate(model, x)
    return model, x


@pytest.fixture
def old_project(rng, tmp_path):
    """An existing project (of another model) and its bytes."""
    model, _ = small(rng, units=3)
    target = tmp_path / "prj"
    to_hls4ml(model, target)
    (target / "my_notes.txt").write_text("synthesis notes the user keeps in the project")
    return target, tree(target)


def _fail_inside(monkeypatch, where, error):
    """Make the converter raise ``error`` in the middle of writing, after real files were written."""
    if where == "after_hls4ml_wrote":
        original = project._exact_testbench

        def boom(staging, name):
            original(staging, name)
            raise error
        monkeypatch.setattr(project, "_exact_testbench", boom)
    elif where == "half_way_through_a_file":
        def boom(directory, inputs, outputs):
            directory.mkdir(parents=True, exist_ok=True)
            with open(directory / "tb_input_features.dat", "w") as fh:
                fh.write("0.5 0.25 ")  # a truncated line, as a full disk would leave it
            raise error
        monkeypatch.setattr(project, "_write_tb_data", boom)
    elif where == "while_moving_into_place":
        def boom(a, b):
            raise error
        monkeypatch.setattr(projects, "exchange", boom)


@pytest.mark.parametrize("where", ["after_hls4ml_wrote", "half_way_through_a_file", "while_moving_into_place"])
@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError(28, "No space left on device")],
                         ids=["ctrl-c", "disk-full"])
def test_interrupted_write_leaves_previous_project_byte_identical(where, error, old_project, rng, monkeypatch):
    target, before = old_project
    model, _ = small(rng)
    _fail_inside(monkeypatch, where, error)
    with pytest.raises(type(error)):
        to_hls4ml(model, target, overwrite=True)
    assert tree(target) == before
    assert os.listdir(target.parent) == ["prj"], "a half-written staging folder was left behind"


def test_overwrite_replaces_atomically_and_completely(old_project, rng, tmp_path):
    target, _ = old_project
    model, _ = small(rng)
    to_hls4ml(model, target, overwrite=True)
    to_hls4ml(model, tmp_path / "fresh")
    assert tree(target) == tree(tmp_path / "fresh")  # nothing of the old project remains
    assert sorted(os.listdir(tmp_path)) == ["fresh", "prj"]


def test_exchange_swaps_folders_atomically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a"), (b / "y").write_text("b")
    if not projects.exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here; the two-rename fallback is used")
    assert (a / "y").read_text() == "b" and (b / "x").read_text() == "a"


@pytest.mark.parametrize("kind", ["user_folder", "file", "symlink"])
def test_overwrite_never_replaces_what_is_not_a_project(kind, rng, tmp_path):
    model, _ = small(rng)
    target = tmp_path / "thing"
    if kind == "user_folder":
        target.mkdir()
        (target / "thesis.tex").write_text("years of work")
    elif kind == "file":
        target.write_text("a file")
    else:
        (tmp_path / "real").mkdir()
        target.symlink_to(tmp_path / "real")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="not an hls4ml project|not a folder"):
        to_hls4ml(model, target, overwrite=True)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert len(os.listdir(tmp_path)) == (2 if kind == "symlink" else 1)


def test_overwrite_of_an_empty_folder_is_allowed(rng, tmp_path):
    model, _ = small(rng)
    (tmp_path / "empty").mkdir()
    to_hls4ml(model, tmp_path / "empty", overwrite=True)
    assert (tmp_path / "empty" / "hls4ml_config.yml").is_file()


# -- limits -------------------------------------------------------------------------------------
def test_too_large_for_latency_is_refused_before_anything_is_written(rng, tmp_path):
    inp = keras.Input((80,))
    h = QDense(64, activation="relu", name="wide")(inp)  # 80 x 64 = 5120 > 4096
    out = QDense(10, name="fine")(h)
    model = keras.Model(inp, out)
    x = rng.standard_normal((32, 80)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    with pytest.raises(ModelTooLarge) as info:
        to_hls4ml(model, tmp_path / "p")
    message = str(info.value)
    assert "'wide'" in message and "5120 multiplications" in message and str(MAX_UNROLLED_MULTIPLICATIONS) in message
    assert "'fine'" not in message
    assert "distributed_arithmetic" in message and "check_limits=False" in message
    assert not any(tmp_path.iterdir())
    graph = build_ir(model)
    check_limits(graph, "distributed_arithmetic")  # no unrolled loop there: no limit
    to_hls4ml(model, tmp_path / "p", graph=graph, check_limits=False)  # written when asked
    assert (tmp_path / "p" / "firmware").is_dir()


def test_conv_kernel_counts_per_output_pixel(rng):
    inp = keras.Input((6, 6, 32))
    model = keras.Model(inp, QConv2D(16, 3, name="big_conv")(inp))  # 3*3*32*16 = 4608
    x = rng.standard_normal((8, 6, 6, 32)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    with pytest.raises(ModelTooLarge, match="'big_conv'.*kernel 3x3x32x16.*4608 multiplications"):
        check_limits(build_ir(model), "Latency")


def test_cli_reports_too_large_with_exit_code_2(rng, tmp_path):
    import subprocess
    import sys

    inp = keras.Input((70,))
    model = keras.Model(inp, QDense(60, name="wide")(inp))
    x = rng.standard_normal((16, 70)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    model.save(tmp_path / "m.keras")
    cli = [sys.executable, "-m", "hgq_fpga.cli", "convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "p")]
    proc = subprocess.run(cli, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "'wide'" in proc.stderr and "4200 multiplications" in proc.stderr
    assert not (tmp_path / "p").exists()
    proc = subprocess.run([*cli, "--no-check-limits"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# -- compiler failures ------------------------------------------------------------------------
def test_gpp_failure_shows_the_compiler_message_and_the_project(rng, tmp_path):
    model, _ = small(rng)
    hls_model = to_hls4ml(model, tmp_path / "prj")
    source = tmp_path / "prj" / "firmware" / "hgq_fpga_prj.cpp"
    source.write_text(source.read_text() + "\n#error planted_by_the_test\n")
    with pytest.raises(CompileError) as info:
        hls_model.compile()
    message = str(info.value)
    assert str(tmp_path / "prj") in message and "planted_by_the_test" in message and "build_lib.sh" in message


# -- zero-width tensors ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("overflow", ["WRAP", "SAT", "SAT_SYM"])
def test_zero_width_tensor_converts_bit_exactly(overflow, rng):
    """A hidden layer whose input quantizer keeps no bit at all: a tensor of zero-width elements.

    With SAT, hls4ml used to fuse it into the ReLU before as a 1-bit type that
    kept values up to 0.5 (found by the random-model suite at a larger budget).
    """
    inp = keras.Input((5,))
    h = QDense(4, activation="relu")(inp)
    mid = QDense(3, activation="relu", name="starved", input_quantizer={"overflow": overflow})
    out = QDense(2)(mid(h))
    model = keras.Model(inp, out)
    x = rng.standard_normal((64, 5)).astype("float32")
    model(x[:2])
    perturb_bits(model, rng, prune_fraction=0.0)
    mid.input_quantizer.set_f(np.full(mid.input_quantizer.bits_shape, -12.0))
    hgq_fpga.calibrate(model, x)
    graph = build_ir(model)
    widths = [np.asarray(n.k + n.i + n.f) for n in graph.nodes
              if n.op == "quantize" and "starved" in n.name]
    assert widths and all((np.maximum(w, 0) == 0).all() for w in widths)  # the tensor really has zero width
    result = hgq_fpga.verify(model, edge_inputs(x))
    assert result.ok, str(result)
    y = hgq_fpga.emulate(model, edge_inputs(x))
    assert np.unique(y, axis=0).shape[0] == 1  # everything after it is constant


# -- hls4ml 1.3.0's bit-width narrowing: corrected, or refused ----------------------------------
def floor_after_tiny_range(chained: bool):
    """Signed elements within [-0.25, 0.25) with f=2 (so in {-0.25, 0, ...}), then floored (TRN, f=0).

    ``chained=False``: a concatenation sits between the two quantizers and only
    one element has the tiny range (the pattern a random CNN hit);
    ``chained=True``: two quantizers in a row, every element tiny.
    """
    keras.utils.set_random_seed(0)  # the second branch's weights: the same model every run
    inp = keras.Input((3,))
    if chained:
        tiny = QDense(3, use_bias=False, name="a")(inp)
        h = QActivation("linear", input_quantizer={"f0": 2.0, "i": -2, "k": 1})(tiny)
    else:
        h = QConcatenate(input_quantizer={"f0": 2.0})([QDense(3, use_bias=False, name="a")(inp), QDense(2)(inp)])
    out = QActivation("linear", input_quantizer={"f0": 0.0}, name="floor")(h)
    model = keras.Model(inp, out)
    x = np.linspace(-3, 3, 90, dtype="float32").reshape(30, 3)
    model(x[:2])
    kernel = np.ones((3, 3), "float32")
    kernel[:, 0] = 1 / 64  # output 0 of layer 'a' stays within [-0.25, 0.25)
    model.get_layer("a").kernel.assign(kernel)
    hgq_fpga.calibrate(model, x)
    return model, x


@pytest.mark.slow
def test_floor_of_a_tiny_signed_range_is_bit_exact(monkeypatch):
    """hls4ml narrows such an element to zero bits (C simulation 0 instead of -1); our correction keeps it."""
    from hls4ml.model.optimizer.passes import bit_exact
    from hls4ml.model.optimizer.passes.hgq_proxy_model import FixedPointQuantizer

    import hgq_fpga.compat.hls4ml as compat
    from hgq_fpga.backends.hls4ml.fixes import install_corrections

    model, x = floor_after_tiny_range(chained=False)
    assert -1.0 in hgq_fpga.emulate(model, x)[:, 0]  # the floor of -0.25 really is -1
    result = hgq_fpga.verify(model, x)
    assert result.ok, str(result)
    rule = bit_exact._produce_kif.dispatch(FixedPointQuantizer)
    install_corrections()
    assert bit_exact._produce_kif.dispatch(FixedPointQuantizer) is rule  # registered once, never swapped
    # layers hgq_fpga did not create keep hls4ml's own rule: unmarked, ours get it wrong
    monkeypatch.setattr(compat, "MARK", "not_an_hgq_fpga_layer")
    with pytest.raises(UnsupportedForHls4ml, match="layer 'floor'"):  # hls4ml 1.3.0 alone gets it wrong,
        hgq_fpga.verify(model, x)  # and our type check (test_typecheck.py) refuses what it would write


def test_chained_quantizers_hls4ml_cannot_type_are_refused(tmp_path):
    model, _ = floor_after_tiny_range(chained=True)
    with pytest.raises(UnsupportedForHls4ml, match="'floor' truncates.*rounding='RND'"):
        to_hls4ml(model, tmp_path / "p")
    assert not any(tmp_path.iterdir())


def test_projects_are_identical_whatever_stamp_hls4ml_draws(rng, tmp_path, monkeypatch):
    """hls4ml's random stamp is replaced; YAML quotes an all-digit one, which must not show through."""
    import uuid

    model, _ = small(rng)
    to_hls4ml(model, tmp_path / "a")
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID("00000000-0000-0000-0000-000012345678"))
    to_hls4ml(model, tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["relu", "linear", "k1_i-7"])
def test_zero_width_signed_input_quantizer_is_bit_exact(variant):
    """Issue 12, case 1: a quantizer that zeroes every element of a signed tensor. hls4ml fuses it
    into the input's type (ap_ufixed<2,32>, wrapping negative inputs to 3 * 2**30); it is now kept as
    a layer whose C++ writes 0, so the C simulation is exact again."""
    rng = np.random.default_rng(0)
    quantizer = {"f0": -2.0, "rounding": "RND"} if variant != "k1_i-7" else {"f0": 6.0, "k": 1, "i": -7}
    inp = keras.Input((4,))
    h = QDense(3, activation="relu" if variant == "relu" else None, input_quantizer=quantizer, name="zero_in")(inp)
    model = keras.Model(inp, QDense(2, name="out")(h))
    x = rng.uniform(-1.9, 1.9, (32, 4))
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    q = build_ir(model).nodes[1]
    assert np.all(q.k + q.i + q.f <= 0)  # every element of the quantizer has zero bits
    result = hgq_fpga.verify(model, x)
    assert result.ok, str(result)


def _appear_meanwhile(monkeypatch, make):
    """Run ``make()`` after the project is written and before it is moved into place: the race."""
    original = project._reproducible

    def racing(staging, hls_model):
        original(staging, hls_model)
        make()
    monkeypatch.setattr(project, "_reproducible", racing)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_created_at_the_target_meanwhile_is_kept(rng, tmp_path, monkeypatch, overwrite):
    """Issue 12, case 3: a user's folder appearing during the conversion is never swapped out and deleted,
    with or without overwrite (a non-project is never replaced)."""
    model, _ = small(rng)
    target = tmp_path / "prj"

    def user_folder():
        target.mkdir()
        (target / "thesis.tex").write_text("years of work")
    _appear_meanwhile(monkeypatch, user_folder)
    with pytest.raises(FileExistsError, match="left as it is"):
        to_hls4ml(model, target, overwrite=overwrite)
    assert sorted(p.name for p in target.iterdir()) == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]  # no staging folder left


def test_two_conversions_into_one_folder_the_second_is_refused(rng, tmp_path, monkeypatch):
    """Issue 12, case 6: of two converts into one new folder (no overwrite), one wins, one is refused."""
    model, _ = small(rng)
    other, _ = small(rng, units=3)
    target = tmp_path / "prj"
    first = {}

    def other_finishes_first():
        monkeypatch.undo()  # the racing conversion itself runs unpatched
        to_hls4ml(other, target)
        first.update(tree(target))
    _appear_meanwhile(monkeypatch, other_finishes_first)
    with pytest.raises(FileExistsError, match="appeared while the project was being written"):
        to_hls4ml(model, target)
    assert tree(target) == first and sorted(p.name for p in tmp_path.iterdir()) == ["prj"]


def test_options_that_reach_tcl_or_the_budget_are_checked(rng, tmp_path):
    """Issue 12, case 7: part text reaches project.tcl verbatim, so it must look like a part number;
    clock periods are finite; budgets take numpy scalars and whole DSP counts."""
    from hgq_fpga.constraints import ResourceBudget

    model, x = small(rng)
    for part in ("xc7z020; exec rm -rf /", "a b", "[x]"):
        with pytest.raises(ValueError, match="part must be a part number"):
            to_hls4ml(model, tmp_path / "p", part=part)
    with pytest.raises(ValueError, match="finite"):
        to_hls4ml(model, tmp_path / "p", clock_period=float("inf"))
    assert not any(tmp_path.iterdir())
    assert ResourceBudget(lut=np.int64(500), dsp=np.float32(2.0), calibration_data=x).dsp == 2
    with pytest.raises(ValueError, match="whole DSP slices.*0.5"):
        ResourceBudget(dsp=0.5, calibration_data=x)
    r = _run_cli("estimate", "x.keras", "--part", "xc7; puts hi")
    assert r.returncode == 2 and "part number" in r.stderr


def _run_cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "hgq_fpga.cli", *args], capture_output=True, text=True,
                          check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.slow
def test_self_check_of_tb_data(rng, tmp_path):
    """The cheap self-check: the project's C simulation must reproduce its own tb_data, from the CLI
    (--self-check) and from Python; a tampered expectation is reported, not passed."""
    from hgq_fpga.backends.hls4ml import SelfCheckError, check_project

    model, _ = small(rng)
    model.save(tmp_path / "m.keras")
    proc = _run_cli("convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "p"), "--self-check")
    assert proc.returncode == 0, proc.stderr
    assert "self-check: the C simulation reproduces tb_data (32 values, 0 mismatches)" in proc.stdout
    hls_model = to_hls4ml(model, tmp_path / "q")
    expected = tmp_path / "q" / "tb_data" / "tb_output_predictions.dat"
    rows = expected.read_text().splitlines()
    values = rows[3].split()
    values[1] = repr(float(values[1]) + 2.0**-30)
    rows[3] = " ".join(values)
    expected.write_text("\n".join(rows) + "\n")
    with pytest.raises(SelfCheckError, match=r"1 of 32 values \(first: sample 3, output value 1"):
        check_project(hls_model)


def constant_into_sat_sym():
    """A dense layer whose output is the constant -1 (zero kernel, bias -1), then SAT_SYM with f=2:
    ap_fixed<3,1,AP_SAT_SYM> gives -0.75 for -1."""
    inp = keras.Input((3,))
    dense = QDense(2, name="const")
    out = QActivation("linear", input_quantizer={"f0": 2.0, "overflow": "SAT_SYM"}, name="sym")(dense(inp))
    model = keras.Model(inp, QDense(2, name="out")(out))
    x = np.linspace(-2, 2, 60).reshape(20, 3)
    model(x[:2])
    dense.kernel.assign(np.zeros((3, 2), "float32"))
    dense.bias.assign(np.full(2, -1.0, "float32"))
    hgq_fpga.calibrate(model, x)
    return model, x


@pytest.mark.slow
def test_symmetric_saturation_is_not_narrowed(monkeypatch, tmp_path):
    """hls4ml 1.3.0 narrows that quantizer to ap_fixed<1,1,AP_SAT_SYM>, which keeps -1 (found by the type
    check in the random-model suite). With our corrected rule: bit-exact; with hls4ml's: refused."""
    import hgq_fpga.compat.hls4ml as compat

    model, x = constant_into_sat_sym()
    inner = keras.Model(model.inputs, model.get_layer("sym").output)
    assert np.all(hgq_fpga.emulate(inner, x) == -0.75)  # the model's value
    result = hgq_fpga.verify(model, x)
    assert result.ok, str(result)
    monkeypatch.setattr(compat, "MARK", "not_an_hgq_fpga_layer")
    with pytest.raises(UnsupportedForHls4ml, match=r"layer 'sym'.*AP_SAT_SYM"):
        to_hls4ml(model, tmp_path / "p")


@pytest.mark.slow
def test_sat_zero_input_quantizer_beyond_its_range():
    """hls4ml saturates an input read by a per-element SAT_ZERO quantizer at that quantizer's own bounds,
    so 5.0 became the maximum instead of 0 (found by the type check in the random-model suite); the input
    now has one integer bit more."""
    rng = np.random.default_rng(0)
    dense = QDense(2, input_quantizer={"overflow": "SAT_ZERO", "f0": 1.0}, name="d")
    model = keras.Sequential([keras.Input((3,)), dense])
    x = rng.standard_normal((50, 3))
    model(x[:2])
    q = dense.input_quantizer
    q.set_f(np.array([1.0, 2.0, 1.0]).reshape(q.bits_shape))  # per element: hls4ml keeps the layer
    hgq_fpga.calibrate(model, x)
    result = hgq_fpga.verify(model, np.concatenate([x, 8 * x, [[5.0, -5.0, 0.75]]]))
    assert result.ok, str(result)
