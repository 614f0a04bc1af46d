"""SIGTERM and SIGKILL during convert and verify: no staging folder or temporary
project outlives its run, and no g++ / cc1plus is left running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.files import OWNER_FILE, remove_stale
from hgq_fpga.layers import QDense
from hgq_fpga.loading import load_model

SCRIPT = shutil.which("hgq-fpga", path=str(Path(sys.executable).parent)) or shutil.which("hgq-fpga")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("signals")
    model = keras.Sequential([keras.Input((8,)), QDense(8, activation="relu"), QDense(4)])
    x = np.random.default_rng(0).standard_normal((64, 8)).astype("float32")
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    model.save(d / "m.keras")
    np.save(d / "x.npy", x)
    return d


def _processes_in(root: Path) -> list[int]:
    """Processes whose working folder is inside ``root`` (our g++, cc1plus, build_lib.sh)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(root)):
            found.append(int(entry.name))
    return found


def _wait_for(predicate, timeout: float = 240.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _communicate(proc: subprocess.Popen, timeout: float = 120.0) -> tuple[str, str]:
    """``proc.communicate``; a child still running after ``timeout`` seconds gets SIGABRT, and the test fails
    with where each of its threads was (the children run with ``PYTHONFAULTHANDLER=1``)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        pytest.fail(f"the child was still running {timeout:.0f} s after the signal; its threads:\n{err[-6000:]}")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_verify_killed_while_gxx_runs(saved, tmp_path, sig):
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen([SCRIPT, "verify", str(saved / "m.keras"), str(saved / "x.npy")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: bool(_processes_in(tmp))), "g++ never started"
        proc.send_signal(sig)
        out, err = _communicate(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _wait_for(lambda: not _processes_in(tmp), timeout=30), "g++/cc1plus outlived hgq-fpga"
    left = sorted(p.name for p in tmp.iterdir() if p.name.startswith("hgq_fpga_verify_"))
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and left == [], err[-2000:]
    else:  # nothing runs on SIGKILL: the next run finds the folder of the dead process and removes it
        assert len(left) == 1 and (tmp / left[0] / OWNER_FILE).is_file()
        assert [p.name for p in remove_stale(tmp, "hgq_fpga_verify_")] == left
        # (a compiler killed by SIGKILL may leave its own ccXXXX.s in TMPDIR: g++'s, not ours)
        assert not any(p.name.startswith("hgq_fpga") for p in tmp.iterdir())


CHILD = textwrap.dedent("""
    import sys, time
    import keras
    import hgq_fpga
    from hgq_fpga.backends.hls4ml import project
    from hgq_fpga.loading import load_model
    from hgq_fpga.processes import sigterm_as_interrupt

    original = project._reproducible

    def slow(staging, hls_model):  # the project is half-way: written, not yet moved into place
        original(staging, hls_model)
        print("writing", flush=True)
        for _ in range(2400):  # Python code running, as a real write is; one long sleep would be a C call
            time.sleep(0.05)   # that a signal delivered to another thread (TF has many) does not interrupt

    project._reproducible = slow
    sigterm_as_interrupt()
    model = load_model(sys.argv[1])
    try:
        hgq_fpga.to_hls4ml(model, sys.argv[2])
    except KeyboardInterrupt:
        sys.exit(130)
""")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_convert_killed_while_writing(saved, tmp_path, sig):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(saved / "m.keras"), str(out / "prj")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        staging = [p for p in out.iterdir() if p.name.startswith(".prj.")]
        assert len(staging) == 1 and (staging[0] / OWNER_FILE).is_file()
        proc.send_signal(sig)
        _, err = _communicate(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = [p.name for p in out.iterdir()]
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and left == [], err[-2000:]
    else:
        assert left == [staging[0].name]
        # the next conversion into the same folder removes the dead run's staging folder
        hgq_fpga.to_hls4ml(load_model(saved / "m.keras"), out / "prj")
        assert sorted(p.name for p in out.iterdir()) == ["prj"]
        assert not (out / "prj" / OWNER_FILE).exists()


SWALLOWED = textwrap.dedent("""
    import argparse, os, signal, sys
    from hgq_fpga import cli

    class Finalised:
        def __del__(self):  # Python ignores an exception raised in a finaliser, the handler's too
            os.kill(os.getpid(), signal.SIGTERM)

    def work(args):
        Finalised()
        print("finished", flush=True)
        return 0

    argparse.ArgumentParser.parse_args = lambda self, argv=None: argparse.Namespace(func=work, command="work")
    sys.exit(cli.main([]))
""")


def test_a_swallowed_sigterm_still_ends_with_the_interrupted_code():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", SWALLOWED], env=env, capture_output=True, text=True, timeout=120)
    assert "finished" in done.stdout and "Exception ignored" in done.stderr
    assert done.returncode == 130 and "interrupted" in done.stderr


OTHER_THREAD = textwrap.dedent("""
    import signal, subprocess, threading, time
    from hgq_fpga.processes import run_in_group, sigterm_as_interrupt

    sigterm_as_interrupt()

    def other():  # the kernel may give a process's SIGTERM to any thread that does not block it
        time.sleep(1.0)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    threading.Thread(target=other, daemon=True).start()
    start = time.monotonic()
    try:
        run_in_group(["sleep", "300.25"], ".", desc="sleep")
    except KeyboardInterrupt:
        waited = time.monotonic() - start
        for _ in range(100):  # SIGKILLed, the sleep may take a moment to go
            alive = subprocess.run(["pgrep", "-f", "^sleep 300.25$"], capture_output=True).returncode == 0
            if not alive:
                break
            time.sleep(0.1)
        print(f"interrupted after {waited:.1f} s; sleep alive: {alive}")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pthread_kill to a thread; reads pgrep")
def test_sigterm_given_to_another_thread_still_stops_a_build():
    done = subprocess.run([sys.executable, "-c", OTHER_THREAD], capture_output=True, text=True, timeout=200)
    assert done.stdout.startswith("interrupted after"), done.stdout + done.stderr
    waited = float(done.stdout.split()[2])
    assert waited < 60 and done.stdout.rstrip().endswith("sleep alive: False"), done.stdout
