"""Packaging: every subpackage and the HLS templates ship in the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

import hgq_fpga
from hgq_fpga import templates

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_subpackage():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "hgq_fpga").rglob("__init__.py")
    }
    assert found | {"hgq_fpga.hls_templates"} == listed


def test_templates_are_readable_and_placeholders_strict():
    assert "README.md" in templates.list_templates()
    assert "{{name}}" in templates.read_template("README.md")
    with pytest.raises(FileNotFoundError, match="available: README.md"):
        templates.read_template("missing.h")
    with pytest.raises(KeyError, match="missing"):
        templates.render_text("{{a}} {{b}}", a="1")
    with pytest.raises(KeyError, match="unused"):
        templates.render_text("{{a}}", a="1", c="2")


def test_lazy_attributes():
    assert hgq_fpga.__version__ == "0.1.0"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hgq_fpga.nope  # noqa: B018


@pytest.mark.slow
def test_wheel_contains_templates_and_all_modules(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = tmp_path.glob("hgq_fpga-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hgq_fpga/hls_templates/README.md" in names
    assert "hgq_fpga/fixed/core.py" in names
    assert "hgq_fpga/quantizers/packing.py" in names
    assert not any(n.startswith("tests/") for n in names)
