"""The site builds with warnings as errors, every page of the nav is there, and it fetches nothing remote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import offline
import pytest
import yaml
from conftest import ROOT, needs_docs_extra


def nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_of_the_nav_is_built(built_site: Path) -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    pages = nav_pages(config["nav"])
    assert "reference/cli.md" in pages and "reference/http.md" in pages
    missing = [page for page in pages if not (built_site / page.replace(".md", ".html")).is_file()]
    assert not missing
    assert (built_site / "reference" / "openapi.json").is_file()


def test_the_python_reference_is_generated_from_the_docstrings(built_site: Path) -> None:
    from rprm_lite.scoring import Scorer

    html = (built_site / "reference" / "python.html").read_text(encoding="utf-8")
    assert Scorer.__doc__.split("\n")[0] in html
    for name in ("scoring.Scorer.score", "scoring.Scorer.score_solution", "scoring.Scorer.close", "config.ScoreConfig",
                 "results.SolutionResult", "results.StepResult", "solution.read_solutions", "errors.InputError",
                 "remote.scorer.RemoteScorer.score_many", "step_cache.StepCache"):
        assert f'id="rprm_lite.{name}"' in html


def test_the_built_site_fetches_nothing_from_the_network(built_site: Path) -> None:
    assert offline.remote_fetches(built_site) == []
    text = "".join(path.read_text(encoding="utf-8", errors="replace") for path in built_site.rglob("*.html"))
    for host in ("fonts.googleapis", "fonts.gstatic", "unpkg.com", "cdn.jsdelivr", "cdnjs."):
        assert host not in text


def test_the_offline_check_finds_remote_assets(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text('<link rel="stylesheet" href="https://fonts.googleapis.com/css?f=Roboto">'
                                        '<script src="//unpkg.com/shim"></script><a href="https://example.org">x</a>'
                                        '<img src="img/local.png">')
    (tmp_path / "style.css").write_text("@import 'https://cdn.example/a.css'; b { background: url(/img/b.png) }")
    assert offline.remote_fetches(tmp_path) == ["page.html: https://fonts.googleapis.com/css?f=Roboto",
                                                "page.html: //unpkg.com/shim", "style.css: https://cdn.example/a.css"]


@pytest.mark.parametrize("broken", ["[a link](missing.md)", "[an anchor](#no-such-heading)"])
def test_the_site_settings_turn_a_broken_link_into_a_failure(tmp_path: Path, broken: str) -> None:
    """The project's validation settings, on a one-page site: --strict must fail on the broken link."""
    needs_docs_extra()
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(f"# Home\n\n{broken}\n")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump({"site_name": "t", "validation": config["validation"]}))
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert "missing.md" in done.stderr or "no-such-heading" in done.stderr
