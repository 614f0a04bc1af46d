"""The API reference (docs/api.md) is generated from the docstrings and kept up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_reference_is_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "make_api.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr + "\n(run: python docs/make_api.py)"
    text = (ROOT / "docs" / "api.md").read_text()
    for name in ("to_hls4ml", "verify", "estimate", "ResourceBudget", "from_qkeras", "ModelTooLarge", "QDense"):
        assert f".{name}" in text, name
