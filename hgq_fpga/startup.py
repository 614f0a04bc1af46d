"""Import Keras without TensorFlow's start-up lines.

TensorFlow's C++ runtime writes lines like ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR`` and ``oneDNN custom
operations are on ...`` straight to file descriptor 2 while it loads, twice
(two of its shared libraries log), whatever ``TF_CPP_MIN_LOG_LEVEL`` says:
they are printed before the level is read. :func:`import_keras_quietly` points
descriptor 2 at a temporary file during the import, then writes back every line
except those start-up notices, so real errors still reach the terminal.

Example (at the top of a script, before ``import keras``)::

    from hgq_fpga.startup import import_keras_quietly
    import_keras_quietly()
    import keras
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any

__all__ = ["STARTUP_NOISE", "import_keras_quietly"]

#: the informational lines TensorFlow prints while it loads (matched per line)
STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|^[IW]\d{4} [\d:.]+\s+\d+ (port|cpu_feature_guard|cuda_\w+|gpu_\w+)\.cc:\d+\]"
    r"|^To enable the following instructions:"
    r"|^(E\d{4} [\d:.]+\s+\d+ )?cuda_(dnn|blas|fft)\.cc:\d+\] Unable to register"
)


def _filtered(text: str) -> str:
    """``text`` without TensorFlow's start-up notices."""
    return "".join(line for line in text.splitlines(keepends=True) if not STARTUP_NOISE.search(line))


def import_keras_quietly() -> Any:
    """``import keras`` (and its backend) with TensorFlow's start-up lines left out.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless the user set it. Everything else the
    import writes to standard error is passed on; an import error is raised as
    usual. Returns the ``keras`` module. Does nothing new if Keras is loaded.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedding host): import plainly
        import keras

        return keras
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = _filtered(capture.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
    return keras
