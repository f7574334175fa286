"""The linter configured in pyproject.toml (ruff: pyflakes, pycodestyle, import order, 120 columns) runs clean."""

import subprocess
import sys

from conftest import REPO


def _ruff(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_the_whole_tree_is_lint_clean():
    result = _ruff(".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_reports_what_it_is_configured_for(tmp_path):
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    (tmp_path / "bad.py").write_text("import os\nimport sys, json\nx = '" + "a" * 130 + "'\n")
    result = _ruff(".", cwd=tmp_path)
    assert result.returncode == 1
    for code in ("F401", "E401", "E501"):
        assert code in result.stdout, code
