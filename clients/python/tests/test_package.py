"""The package itself: typed (mypy --strict), ruff-formatted and linted, installable."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import wendelin

HERE = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).is_file():
        pytest.skip(f"{name} not installed")
    return path


def test_ruff_format_and_lint() -> None:
    ruff = tool("ruff")
    for args in (["format", "--check", "."], ["check", "."]):
        out = subprocess.run([ruff, *args], cwd=HERE, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict() -> None:
    mypy = tool("mypy")
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run(
            [mypy, "--cache-dir", cache, "src"], cwd=HERE, capture_output=True, text=True
        )
    assert out.returncode == 0, out.stdout + out.stderr


def test_public_names_have_docstrings() -> None:
    for name in wendelin.__all__:
        obj = getattr(wendelin, name)
        assert obj.__doc__, name
    assert (HERE / "src" / "wendelin" / "py.typed").is_file()
