"""Every example marked runnable in the docs and the README runs against the bundled model and prints what
it shows (numbers within the block's tolerance); `python docs/_tools/doc_examples.py --update` rewrites them."""

from __future__ import annotations

import doc_examples as examples
import pytest

ALL = [example for path in examples.markdown_files() for example in examples.find_examples(path)]


def test_the_docs_have_runnable_examples_of_each_kind() -> None:
    where = {(example.path.name, example.lang) for example in ALL}
    assert ("README.md", "console") in where and ("README.md", "pycon") in where
    assert {"demo-score.md", "python-api.md"} <= {example.path.name for example in ALL}


@pytest.mark.parametrize("example", ALL, ids=[example.where for example in ALL])
def test_the_example_prints_what_the_docs_show(example: examples.Example) -> None:
    outcome = examples.run(example)
    assert not outcome.problems, "\n".join(outcome.problems)


def test_every_readme_block_is_also_in_the_docs() -> None:
    """The README is a summary: each of its code blocks is in a docs page or one of the pages' snippets."""
    docs = "\n".join(path.read_text(encoding="utf-8") for path in examples.markdown_files()[1:])
    readme = examples.ROOT.joinpath("README.md").read_text(encoding="utf-8")
    blocks = readme.split("```")[1::2]
    assert len(blocks) >= 5
    assert [block.split("\n", 1)[0] for block in blocks if block not in docs] == []


@pytest.mark.parametrize(("shown", "real", "tolerance", "expected"), [
    ("score 0.409", "score 0.409", 0, True),
    ("score 0.409", "score 0.410", 0, False),
    ("score 0.409", "score 0.421", 0.02, True),
    ("score 0.409", "score 0.431", 0.02, False),
    ("step 5 of 5", "step 4 of 5", 0.02, False),  # integers are exact: a step number is no measurement
    ("a\n...\nz", "a\nb\nc\nz", 0, True),
    ("note: ...", "note: model x.gguf", 0, True),
    ("a\nz", "a\nb\nz", 0, False),
])
def test_shown_output_matches(shown: str, real: str, tolerance: float, expected: bool) -> None:
    assert examples.matches(shown, real, tolerance) is expected
