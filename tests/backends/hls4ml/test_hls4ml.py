"""hls4ml projects: three-way bit-exactness through the real g++ C simulation, and the same project
from the model saved and loaded in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.backends.hls4ml import to_hls4ml
from hgq_fpga.layers import (
    QActivation,
    QAdd,
    QAveragePooling2D,
    QBatchNormalization,
    QConcatenate,
    QConv1D,
    QConv2D,
    QDense,
    QMaxPooling2D,
)
from hgq_fpga.testing import edge_inputs, perturb_bits


def trained(model: keras.Model, xs: list[np.ndarray], rng: np.random.Generator, prune: bool = True) -> keras.Model:
    model.compile("adam", "mse")
    y = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    model.fit(xs if len(xs) > 1 else xs[0], rng.standard_normal(y.shape), epochs=1, verbose=0)
    perturb_bits(model, rng, prune_fraction=0.2 if prune else 0.0)
    hgq_fpga.calibrate(model, xs if len(xs) > 1 else xs[0])
    return model


def probe(xs: list[np.ndarray]) -> list[np.ndarray]:
    return [edge_inputs(x) for x in xs]


FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    import hgq_fpga  # the only import that makes the saved model loadable

    folder, options, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    model = keras.models.load_model(f"{folder}/model.keras")
    xs = [np.load(f"{folder}/x{i}.npy") for i in range(n)]
    hgq_fpga.to_hls4ml(model, f"{folder}/fresh", test_inputs=[x[:64] for x in xs], **options)
""")


def assert_bit_exact(model: keras.Model, xs: list[np.ndarray], **options: str) -> hgq_fpga.VerifyResult:
    """Verified three ways; then saved, loaded in a fresh process with only ``import hgq_fpga`` and
    converted again: every file of that project is byte-identical to the verified one (issue 18)."""
    p = probe(xs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result = hgq_fpga.verify(model, p if len(p) > 1 else p[0], folder / "verified", **options)
        assert result.ok, str(result)
        assert result.outputs and all(o["size"] > 0 for o in result.outputs)
        model.save(folder / "model.keras")
        for n, x in enumerate(p):
            np.save(folder / f"x{n}.npy", x)
        done = subprocess.run([sys.executable, "-c", FRESH, tmp, json.dumps(options), str(len(p))],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert done.returncode == 0, done.stderr[-3000:]
        fresh, verified = _tree(folder / "fresh"), _tree(folder / "verified")
        assert len(fresh) > 20 and [k for k in fresh if fresh[k] != verified.get(k)] == []
    return result


@pytest.mark.slow
def test_lookup_tables_three_way(rng):
    model = keras.Sequential([
        keras.Input((8,)),
        QDense(6),
        QActivation("sigmoid", input_quantizer={"f0": 3}),
        QDense(4),
        QActivation("tanh", table_f=6, input_quantizer={"f0": 2}),
    ])
    x = rng.standard_normal((200, 8)).astype("float32")
    assert_bit_exact(trained(model, [x], rng), [x])


@pytest.mark.slow
@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_softmax_three_way(io_type, rng):
    from hgq_fpga.layers import QSoftmax

    model = keras.Sequential([keras.Input((8,)), QDense(6, activation="relu"), QDense(4),
                              QSoftmax(input_quantizer={"f0": 3})])
    x = rng.standard_normal((200, 8)).astype("float32")
    assert_bit_exact(trained(model, [x], rng), [x], io_type=io_type)


@pytest.mark.slow
@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_cnn_every_layer_three_way(io_type, rng):
    inp = keras.Input((8, 8, 1))
    x = QConv2D(3, 3, activation="relu", padding="same")(inp)
    x = QMaxPooling2D(2)(x)
    y = QConv2D(3, 3, padding="same")(x)
    y = QAdd()([x, y])
    y = QBatchNormalization()(y)
    y = QAveragePooling2D(2)(y)
    z = keras.layers.Flatten()(y)
    c = QConcatenate()([QDense(4)(z), QDense(3, activation="relu")(z)])
    out = QActivation("linear")(c)
    data = rng.standard_normal((200, 8, 8, 1)).astype("float32")
    model = trained(keras.Model(inp, out), [data], rng)
    assert_bit_exact(model, [data], io_type=io_type)


@pytest.mark.slow
def test_two_input_model_three_way(rng):
    a, b = keras.Input((5,)), keras.Input((3,))
    c = QConcatenate()([QDense(4, activation="relu")(a), QDense(2)(b)])
    model = keras.Model([a, b], QDense(2)(c))
    xs = [rng.standard_normal((150, 5)).astype("float32"), rng.standard_normal((150, 3)).astype("float32")]
    assert_bit_exact(trained(model, xs, rng), xs)


def small_model(rng: np.random.Generator) -> keras.Model:
    model = keras.Sequential([keras.Input((6,)), QDense(4, activation="relu"), QDense(2)])
    return trained(model, [rng.standard_normal((64, 6)).astype("float32")], rng)


@pytest.mark.slow
def test_project_files_and_tb_data(rng, tmp_path):
    model = small_model(rng)
    x = rng.standard_normal((20, 6)) * 8
    hls_model = to_hls4ml(model, tmp_path / "prj", test_inputs=x)
    prj = tmp_path / "prj"
    for name in ("build_prj.tcl", "vivado_synth.tcl", "firmware/hgq_fpga_prj.cpp", "hgq_fpga_layers.json"):
        assert (prj / name).is_file(), name
    tb_in = np.loadtxt(prj / "tb_data" / "tb_input_features.dat")
    tb_out = np.loadtxt(prj / "tb_data" / "tb_output_predictions.dat")
    np.testing.assert_array_equal(tb_in, x)
    np.testing.assert_array_equal(tb_out, hgq_fpga.emulate(model, x))
    test_cpp = (prj / "hgq_fpga_prj_test.cpp").read_text()
    assert "std::vector<double>" in test_cpp and "precision(40)" in test_cpp
    hls_model.compile()  # must not rewrite the project
    assert "precision(40)" in (prj / "hgq_fpga_prj_test.cpp").read_text()
    np.testing.assert_array_equal(hls_model.predict(np.ascontiguousarray(x)), hgq_fpga.emulate(model, x))


def test_existing_directory_is_refused_and_untouched(rng, tmp_path):
    model = small_model(rng)
    target = tmp_path / "prj"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_hls4ml(model, target)
    assert (target / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]  # no staging folder left


def test_failed_conversion_leaves_old_project(rng, tmp_path):
    model = small_model(rng)
    target = tmp_path / "prj"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="input 0 must have shape"):
        hgq_fpga.verify(model, np.ones((2, 7)), output_dir=target, overwrite=True)
    assert (target / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "options,match",
    [
        ({"backend": "Quartus"}, "backend must be one of"),
        ({"io_type": "io_serial"}, r"io_type must be one of \('io_parallel', 'io_stream'\)\. Received: io_type='io_serial'"),
        ({"strategy": "Fast"}, "strategy must be one of"),
        ({"clock_period": 0}, "clock_period must be > 0"),
        ({"project_name": "my-prj"}, "C\\+\\+ identifier"),
    ],
)
def test_bad_options(options, match, rng, tmp_path):
    with pytest.raises(ValueError, match=match):
        to_hls4ml(small_model(rng), tmp_path / "p", **options)
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_every_ap_fixed_mode_is_bit_exact_through_the_c_simulation(rng):
    """All 7 rounding and 4 overflow modes in one model (issue 18): hls4ml's quantizer layer casts
    with the mode, our type check verifies the types around it, the C simulation is bit-exact."""
    import itertools

    from hgq_fpga.backends.hls4ml.layers import FPQ_OVERFLOW, FPQ_ROUNDING

    modes = list(zip(FPQ_ROUNDING, itertools.cycle(FPQ_OVERFLOW)))
    assert {o for _, o in modes} == set(FPQ_OVERFLOW) and len(FPQ_ROUNDING) == 7
    layers = [QDense(5, input_quantizer={"rounding": r, "overflow": o, "f0": 3.0}, name=f"{r}_{o}".lower())
              for r, o in modes]
    model = keras.Sequential([keras.Input((5,)), *layers, QDense(2, name="out")])
    x = 2 * rng.standard_normal((200, 5))
    assert_bit_exact(trained(model, [x], rng), [x])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "conv1d", "conv1d-stream"])
def test_distributed_arithmetic_strategy(kind, rng):
    """hls4ml's distributed_arithmetic (da4ml shift-add) firmware is bit-exact too."""
    if kind == "mlp":
        model = keras.Sequential([keras.Input((6,)), QDense(4, activation="relu"), QDense(2)])
        data = rng.standard_normal((100, 6)).astype("float32")
    else:
        inp = keras.Input((8, 2))
        y = QConv1D(2, 3, activation="relu")(inp)
        model = keras.Model(inp, QDense(2)(keras.layers.Flatten()(y)))
        data = rng.standard_normal((100, 8, 2)).astype("float32")
    model = trained(model, [data], rng)
    io_type = "io_stream" if kind.endswith("stream") else "io_parallel"
    result = hgq_fpga.verify(model, probe([data])[0], strategy="distributed_arithmetic", io_type=io_type)
    assert result.ok, str(result)


def test_verify_result_reports_mismatches():
    from hgq_fpga.backends.hls4ml.verify import VerifyResult, _first_mismatch

    exp = np.array([[0.5, 1.0]])
    assert _first_mismatch(exp, exp.copy(), exp.copy()) is None
    bad = _first_mismatch(exp, np.array([[0.5, 0.75]]), exp.copy())
    assert bad == {"index": (0, 1), "emulator": 1.0, "keras": 0.75, "csim": 1.0}
    result = VerifyResult(1, [{"name": "out", "size": 2, "keras_vs_emulator": 1, "csim_vs_emulator": 0,
                               "first_mismatch": bad}])
    assert not result.ok and result.mismatches == 1
    assert "MISMATCH" in str(result) and "first mismatch" in str(result)


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_conversions_give_identical_projects(rng, tmp_path):
    """Reproducible firmware: same model and options, byte-identical trees (in different folders)."""
    model = small_model(rng)
    to_hls4ml(model, tmp_path / "a")
    to_hls4ml(model, tmp_path / "elsewhere" / "b")
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "elsewhere" / "b")
    assert a.keys() == b.keys() and len(a) > 20
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, differ
    assert str(tmp_path) not in "".join(v.decode(errors="ignore") for v in a.values())


@pytest.mark.slow
def test_hostile_layer_names_convert_bit_exactly(rng):
    """Names Keras accepts but C++ does not: none reaches the sources, and the result is bit-exact."""
    names = ["..", "a-b", "x.y", "int", "a>b", "1st"]
    inp = keras.Input((6,), name="in put")
    h = inp
    for n in names[:-1]:
        h = QDense(4, activation="relu", name=n)(h)
    model = keras.Model(inp, QDense(3, name=names[-1])(h), name="my model; rm -rf")
    x = rng.standard_normal((200, 6)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    assert_bit_exact(model, [x])
