"""Output files: nothing a user saved is replaced without --overwrite, nothing is
written through a link, and a file appearing at the target meanwhile is kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga import files as hfiles
from hgq_fpga.files import write_file
from hgq_fpga.layers import QDense

SCRIPT = shutil.which("hgq-fpga", path=str(Path(sys.executable).parent)) or shutil.which("hgq-fpga")


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env, timeout=600, check=False)


def test_write_file_never_replaces_without_overwrite(tmp_path):
    target = tmp_path / "a.bin"
    write_file(target, b"first")
    with pytest.raises(FileExistsError, match="exists"):
        write_file(target, b"second")
    assert target.read_bytes() == b"first"
    write_file(target, b"second", overwrite=True)
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no temporary left


def test_write_file_never_follows_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / "precious.txt"
    precious.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "linked.txt").symlink_to(precious)
    (out / "dangling.txt").symlink_to(outside / "new.txt")
    with pytest.raises(FileExistsError):
        write_file(out / "dangling.txt", b"x")  # a dangling link counts as existing
    assert not (outside / "new.txt").exists()
    write_file(out / "linked.txt", b"replaced", overwrite=True)  # replaces the link itself
    assert precious.read_text() == "keep me"
    assert not (out / "linked.txt").is_symlink() and (out / "linked.txt").read_bytes() == b"replaced"
    with pytest.raises(IsADirectoryError):
        write_file(out, b"x", overwrite=True)


def test_write_file_keeps_a_file_that_appears_meanwhile(tmp_path, monkeypatch):
    """The race: the target is created between the check and the move; it is never replaced."""
    target = tmp_path / "a.txt"
    real = hfiles.check_new_output

    def check_then_race(path, overwrite):
        p = real(path, overwrite)
        Path(path).write_text("the user's file")
        return p

    monkeypatch.setattr(hfiles, "check_new_output", check_then_race)
    with pytest.raises(FileExistsError, match="appeared while it was being written"):
        write_file(target, b"ours")
    assert target.read_text() == "the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((4,)), QDense(3, name="$x^2$ \\sqrt{" * 3)])
    x = rng.standard_normal((64, 4)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    model.save(d / "m.keras")
    np.save(d / "x.npy", x)
    return d, model


def test_cli_outputs_never_go_through_links(model_file, tmp_path):
    d, _ = model_file
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    # a link planted where the old code wrote its partial file
    (tmp_path / ".y.npy.partial").symlink_to(outside)
    r = run("emulate", str(d / "m.keras"), str(d / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    assert outside.read_text() == "keep me" and np.load(tmp_path / "y.npy").shape == (64, 3)
    (tmp_path / "est.json").symlink_to(tmp_path / "nowhere.json")  # dangling
    r = run("estimate", str(d / "m.keras"), "--json", str(tmp_path / "est.json"))
    assert r.returncode == 2 and "--overwrite" in r.stderr and "LUT" not in r.stdout  # refused before any work
    assert not (tmp_path / "nowhere.json").exists()


def test_report_replaces_links_not_their_targets_and_escapes_names(model_file, tmp_path):
    """A layer name with mathtext ($...$, \\sqrt{) is plot text, and report.html as a link is replaced."""
    from hgq_fpga.report import write_report

    _, model = model_file
    outside = tmp_path / "outside.html"
    outside.write_text("keep me")
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.html").symlink_to(outside)
    files = write_report(model, out, overwrite=True)
    assert outside.read_text() == "keep me"
    assert not files.html.is_symlink() and "EBOPs" in files.html.read_text()
    with pytest.raises(FileExistsError):
        write_report(model, out)
