"""The docs tests: the site (MkDocs, `make docs`), its generated reference pages and its runnable examples.

The docs tooling lives in docs/_tools (not an installed package), so it is put on sys.path here. Each test
skips with the reason when the `docs` extra (or the `serve` extra, for the HTTP reference) is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "_tools"))


def needs_docs_extra() -> None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "fastapi", "uvicorn"):
        pytest.importorskip(module, reason=f"needs {module}: pip install -e '.[docs,serve]'")


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """The site as `make docs` builds it (with --strict: any warning fails), into a temporary folder."""
    needs_docs_extra()
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    return site
