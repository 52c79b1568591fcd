"""The packages import only downwards (pyproject's [tool.importlinter] contract, ARCHITECTURE.md).

import-linter reads a package from where it is installed, and our four packages are installed into one
(`rprm_lite.convert` is the folder convert/, and so on, by pyproject's package-dir). The test lays the
sources out that way in a temporary folder and lints that copy.

The runtime is stacked in floors: each imports only the floors below it, and the modules of one floor are
independent of each other, so the number of floors is the longest chain of imports. It stays at most 10.
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
TOOL_PACKAGES = ["demo_model", "bench", "training", "convert"]
MAX_RUNTIME_FLOORS = 10

needs_import_linter = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is in the dev extra")


def contract_layers() -> list[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["containers"] == ["rprm_lite"]]  # the packages' and runtime's order
    return contract["layers"]


def test_the_runtime_is_at_most_ten_floors_of_independent_modules():
    layers = contract_layers()
    assert layers[:len(TOOL_PACKAGES)] == TOOL_PACKAGES
    floors = layers[len(TOOL_PACKAGES):]
    assert len(floors) <= MAX_RUNTIME_FLOORS, f"the runtime is {len(floors)} floors: {floors}"
    # a floor of `a : b` lets its modules import each other, which would hide a longer chain
    assert not [floor for floor in floors if ":" in floor]
    listed = [name.strip() for floor in floors for name in floor.split("|")]
    assert len(listed) == len(set(listed))
    modules = {path.stem for path in (ROOT / "rprm_lite").glob("*.py") if path.stem != "__init__"}
    packages = {path.parent.name for path in (ROOT / "rprm_lite").glob("*/__init__.py")} - set(TOOL_PACKAGES)
    assert set(listed) == modules | packages


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


@needs_import_linter
def test_every_package_imports_only_the_ones_below_it(tmp_path):
    result = lint(installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@needs_import_linter
def test_an_import_back_up_or_across_a_floor_breaks_the_contract(tmp_path):
    tree = installed_layout(tmp_path)
    for module, line in (("training/labels.py", "from rprm_lite.bench import report"),
                         ("engine.py", "from rprm_lite import prompt"),  # a floor up
                         ("remote/dialects.py", "from rprm_lite import scoring")):  # its sibling on one floor
        with (tree / "rprm_lite" / module).open("a", encoding="utf-8") as file:
            file.write(f"\n{line}  # noqa: E402\n")
    result = lint(tree)
    assert result.returncode == 1
    assert "rprm_lite.training.labels -> rprm_lite.bench.report" in result.stdout
    assert "rprm_lite.engine -> rprm_lite.prompt" in result.stdout
    assert "rprm_lite.remote.dialects -> rprm_lite.scoring" in result.stdout
