"""The ``hgq-fpga`` command's inputs and outputs: model and data files read and
checked, output paths refused before any work, every message in the CLI's terms."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["CliError", "EXIT_BAD_INPUT", "EXIT_CHECK_FAILED", "EXIT_OK", "checked_data", "fresh_output", "load_cli_model", "load_data", "model_from_args",
           "write_output"]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class CliError(Exception):
    """An error to report in one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def load_cli_model(path: str, max_mib: float | None = None) -> Any:
    from .loading import MAX_TOTAL_BYTES, check_archive, load_model

    limit = MAX_TOTAL_BYTES if max_mib is None else int(max_mib * 2**20)
    try:
        check_archive(path, max_total_bytes=limit)
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e).replace("max_total_bytes=..., or ", "")) from None
    from .startup import import_keras_quietly

    import_keras_quietly()  # only now: a refused file never waits for (or prints) TensorFlow's start-up
    try:
        return load_model(path, max_total_bytes=limit)
    except ValueError as e:  # a file keras cannot read: says which and why
        raise CliError(str(e)) from e


#: the first bytes of the data files the CLI reads
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


def load_data(path: str) -> Any:
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise CliError(f"{path}: no such file (expected .npy, or .npz with one array per model input)")
    with open(p, "rb") as f:
        head = f.read(6)
    if not head.startswith((_NPY_MAGIC, _ZIP_MAGIC)):
        kind = "a text file (CSV?)" if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "not numpy data"
        raise CliError(f"{path}: {kind}; expected a numpy .npy file (or .npz). Convert it, e.g. in Python: "
                       f"np.save('data.npy', np.loadtxt({path!r}, delimiter=','))")
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as e:
        raise CliError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
    if isinstance(data, np.lib.npyio.NpzFile):
        arrays = [data[k] for k in data.files]
        if not arrays:
            raise CliError(f"{path}: the .npz file holds no array (expected one per model input)")
        return arrays if len(arrays) > 1 else arrays[0]
    return data


def _checked_inputs(model: Any, x: Any, name: str) -> Any:
    from .calibration import check_inputs

    try:
        arrays = check_inputs(model, x, what=name)
    except ValueError as e:
        raise CliError(str(e)) from e
    return arrays if len(arrays) > 1 else arrays[0]


def _require_calibrated(model: Any, path: str) -> None:
    from .calibration import is_calibrated

    if not is_calibrated(model):
        raise CliError(f"{path}: the model is not calibrated; run hgq_fpga.calibrate(model, x_train) "
                       f"before saving it, or pass --calibration DATA.npy")


def _maybe_calibrate(model: Any, args: argparse.Namespace) -> None:
    if getattr(args, "calibration", None):
        from .calibration import calibrate

        calibrate(model, _checked_inputs(model, load_data(args.calibration), "--calibration"), progress=True)
    _require_calibrated(model, args.model)


def model_from_args(args: argparse.Namespace) -> Any:
    """The subcommand's model: loaded safely, calibrated if asked, checked."""
    from .diagnosis import firmware_problem

    model = load_cli_model(args.model, getattr(args, "max_model_mib", None))
    problem = firmware_problem(model)
    if problem is not None:
        raise CliError(f"{args.model}: {problem}")
    _maybe_calibrate(model, args)
    return model


def checked_data(model: Any, path: str) -> Any:
    """A data file's inputs, checked against the model."""
    return _checked_inputs(model, load_data(path), path)


#: what marks a folder as one hgq-fpga wrote (and may replace with --overwrite)
_MARKERS = {"project": "hls4ml_config.yml", "report": "report.html"}


def fresh_output(path: str, overwrite: bool, kind: str = "file", flag: str = "-o/--output") -> Path:
    """Refuse an output that exists (a dangling link too) before any work is done, in the CLI's terms.

    ``kind`` is ``"file"`` (with ``--overwrite``, a file or a link at ``path`` is
    replaced, never written through), or ``"project"``/``"report"`` for a folder:
    an existing folder is replaced with ``--overwrite`` only if it holds what
    hgq-fpga writes there (``hls4ml_config.yml``, ``report.html``) or is empty.
    """
    p = Path(path)
    if not os.path.lexists(p):
        return p
    what = "file" if kind == "file" else f"{kind} folder"
    if kind != "file" and p.is_symlink():
        raise CliError(f"{path} is a link; give {flag} a new {what} name (hgq-fpga never writes through links)")
    if kind == "file" and p.is_dir() and not p.is_symlink():
        raise CliError(f"{path} is a folder; give {flag} a file name (nothing was written)")
    if kind != "file" and not p.is_dir():
        raise CliError(f"{path} is a file, not a {what}; give {flag} a new folder name (nothing was written)")
    if kind != "file" and any(p.iterdir()) and not (p / _MARKERS[kind]).is_file():
        raise CliError(f"{path} is a folder with other files in it (no {_MARKERS[kind]}), not a {what} that "
                       f"hgq-fpga wrote; --overwrite replaces only those. Give {flag} a new folder name")
    if not overwrite:
        raise CliError(f"{path} exists; pass --overwrite to replace it (nothing was written)")
    return p


def write_output(path: Path, data: bytes, overwrite: bool) -> None:
    """Atomic, never through a link (:func:`hgq_fpga.files.write_file`), in the CLI's terms."""
    from .files import write_file

    try:
        write_file(path, data, overwrite=overwrite)
    except (FileExistsError, IsADirectoryError) as e:
        raise CliError(str(e).replace("overwrite=True (--overwrite)", "--overwrite")) from None
