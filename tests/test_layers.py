"""The packages import only downwards (pyproject's [tool.importlinter] contract, ARCHITECTURE.md).

import-linter reads a package from where it is installed, and our four packages are installed into one
(`rprm_lite.convert` is the folder convert/, and so on, by pyproject's package-dir). The test lays the
sources out that way in a temporary folder and lints that copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is in the dev extra")


def installed_layout(out: Path) -> Path:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(package_dir.items()):  # "rprm_lite" before "rprm_lite.bench"
        shutil.copytree(ROOT / folder, out.joinpath(*package.split(".")), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.gguf"))
    return out


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def test_every_package_imports_only_the_ones_below_it(tmp_path):
    result = lint(installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_import_back_up_breaks_the_contract(tmp_path):
    tree = installed_layout(tmp_path)
    with (tree / "rprm_lite" / "training" / "labels.py").open("a", encoding="utf-8") as file:
        file.write("\nfrom rprm_lite.bench import report  # noqa: E402\n")
    result = lint(tree)
    assert result.returncode == 1
    assert "rprm_lite.training.labels -> rprm_lite.bench.report" in result.stdout
