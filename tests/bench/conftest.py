"""Fixtures for the benchmark tests: a scripted fake scorer and small hand-made benchmark folders.

The fake stands in for the model where the model is not the point (resume, metrics, CLI plumbing);
the real model runs in test_bench_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_scorer import FakeScorer

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


# ProcessBench: two subsets; at threshold 0.5 the average F1 is 50, at 0.3 it is 100, at 0.9 it is 0
PROCESSBENCH_ITEMS = {
    "gsm8k": [
        {"id": "gsm8k-0", "problem": "1+1+1?", "steps": ["1+1=2.", "2+1=4.", "So 4."], "label": 1},
        {"id": "gsm8k-1", "problem": "2*3?", "steps": ["2*3=6.", "So 6."], "label": -1},
    ],
    "math": [
        {"id": "math-0", "problem": "x+1=3?", "steps": ["x=4.", "So 4."], "label": 0},
        {"id": "math-1", "problem": "3-1?", "steps": ["3-1=2.", "Check: 2+1=3.", "So 2."], "label": -1},
    ],
}
PROCESSBENCH_P_YES = {  # binary fractions, so means are exact: step scores in the comments
    "gsm8k-0": [(1.0, 0.75), (0.25, 0.25), (0.5, 0.75)],  # .875 .25 .625  (label 1)
    "gsm8k-1": [(1.0, 1.0), (0.5, 0.25)],  # 1.0 .375  (label -1)
    "math-0": [(0.125, 0.125), (1.0, 0.75)],  # .125 .875  (label 0)
    "math-1": [(0.75, 0.75), (1.0, 0.5), (0.5, 0.75)],  # .75 .75 .625  (label -1)
}


@pytest.fixture
def processbench_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "processbench"
    folder.mkdir()
    for subset, items in PROCESSBENCH_ITEMS.items():
        (folder / f"{subset}.json").write_text(json.dumps(items), encoding="utf-8")
    return folder


def prmbench_line(classification: str, idx: str, steps: list[str], error_steps: list[int]) -> str:
    return json.dumps({"idx": idx, "classification": classification, "modified_question": f"question {idx}",
                       "modified_process": steps, "error_steps": error_steps,
                       "original_question": f"question {idx}", "original_process": steps})


@pytest.fixture
def prmbench_dir(tmp_path: Path) -> Path:
    """A circular item, a multi-solutions item, a repeated multi-solutions idx and the subset file."""
    folder = tmp_path / "prmbench"
    folder.mkdir()
    (folder / "test_circular.jsonl").write_text(
        prmbench_line("circular", "p0", ["a", "b", "c"], [2]) + "\n", encoding="utf-8")
    (folder / "test_multi_solutions.jsonl").write_text(
        prmbench_line("multi_solutions", "p0", ["a", "b"], []) + "\n"
        + prmbench_line("multi_solutions", "p0", ["w", "x", "y", "z"], []) + "\n", encoding="utf-8")
    (folder / "subset400_target_data.jsonl").write_text(
        prmbench_line("circular", "p0", ["a", "b", "c"], [2]) + "\n", encoding="utf-8")
    return folder


PRMBENCH_P_YES = {  # circular: .875 .375 .625 (right on every step); multi_solutions: .75 .375 (step 2 missed)
    "circular_p0": [(1.0, 0.75), (0.25, 0.5), (0.75, 0.5)],
    "multi_solutions_p0": [(1.0, 0.5), (0.5, 0.25)],
}


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the shared benchmark data lives only on the project's machines")
    return SHARED


@pytest.fixture
def fake_scorer():
    """The FakeScorer class (test files do not import conftest, which shares its name with others)."""
    return FakeScorer


@pytest.fixture
def processbench_p_yes() -> dict:
    return PROCESSBENCH_P_YES


@pytest.fixture
def prmbench_p_yes() -> dict:
    return PRMBENCH_P_YES
