"""The sources pass ruff with the rules in ``pyproject.toml`` (``make lint`` runs the same)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_sources_pass_ruff():
    """Unused and undefined names, syntax errors and unsorted imports, in the package, tests,
    benchmarks, examples and docs scripts (``make lint FIX=1`` sorts imports)."""
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"ruff found problems (make lint FIX=1 sorts imports):\n{run.stdout}{run.stderr}"


def test_ruff_reads_the_projects_rules(tmp_path):
    """The check above is not vacuous: the same command, with the project's configuration, fails on an
    unused import and on unsorted imports."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n\nprint(os.sep)\n")
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                          "--config", str(ROOT / "pyproject.toml"), str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "F401" in run.stdout and "I001" in run.stdout, run.stdout
