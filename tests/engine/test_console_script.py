"""The `spade` command after the README's set-up: the requirements files install the project, whose console script
`spade` lands next to the venv's python (`.venv/bin/spade`, as the README writes the command lines) and runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_the_requirements_install_the_project_and_its_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["spade"] == "spade_engine.cli:main"
    for name, line in (("requirements.txt", "-e ."), ("requirements-dev.txt", "-e .[dev]")):
        assert line in (ROOT / name).read_text().splitlines(), name


def test_the_installed_spade_script_runs():
    script = Path(sys.executable).parent / "spade"
    if not script.exists():
        pytest.skip("the project is not installed in this interpreter's environment (pip install -e .)")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "{explain,protocol}" in done.stdout


def test_the_installed_spade_script_ends_a_users_error_with_one_line_and_status_2(tmp_path):
    script = Path(sys.executable).parent / "spade"
    if not script.exists():
        pytest.skip("the project is not installed in this interpreter's environment (pip install -e .)")
    argv = [
        str(script),
        "explain",
        str(tmp_path),
        "--model",
        "testbed_resnet",
        "--sparsity",
        "90",
        "--out",
        str(tmp_path / "o"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "--sparsity must be in [0, 1), e.g. 0.9 for 90%; got 90.0."
    ]
