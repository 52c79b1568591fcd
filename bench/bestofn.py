"""Best-of-N accuracy: the candidates of `rprm_lite.rerank`'s file chosen by each aggregation, against pass@1,
majority vote and pass@N. A candidate's `correct` (true/false) overrides comparing its `answer` with the
problem's `reference_answer`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from rprm_lite.config import AGGREGATIONS
from rprm_lite.errors import InputError
from rprm_lite.labelled.records import BenchItem, steps_from_record
from rprm_lite.rerank import Candidate, Problem, rank


def bench_items(problem: Problem) -> list[BenchItem]:
    """The candidates still to score, with ids `<problem id>/<candidate index>` and their place as fields."""
    return [BenchItem(c.solution, {"problem": problem.id, "candidate": i})
            for i, c in enumerate(problem.candidates) if c.scores is None]


def with_scores(problems: Sequence[Problem], records: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """Fill in candidate scores from predictions records (`id` = `<problem>/<candidate>`)."""
    by_id = {str(r.get("id")): r for r in records}
    filled = []
    for problem in problems:
        candidates = []
        for candidate in problem.candidates:
            record = by_id.get(candidate.solution.id)
            if candidate.scores is None and record is not None:
                scores = steps_from_record(record, candidate.solution.id)[0]
                candidate = replace(candidate, scores=scores)
            candidates.append(candidate)
        filled.append(replace(problem, candidates=tuple(candidates)))
    return filled


# -- accuracy ----------------------------------------------------------------------------------------
def normalize_answer(answer: str) -> str:
    """Compare answers loosely: \\boxed{}, $, spaces, a trailing period and number formats do not count."""
    text = answer.strip()
    boxed = re.search(r"\\boxed\{(.*)\}", text)
    if boxed:
        text = boxed.group(1)
    text = re.sub(r"\s+|\$|\\!|\\,", "", text).rstrip(".").lower()
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        return text
    return repr(int(number)) if number.is_integer() else repr(number)


def is_correct(problem: Problem, candidate: Candidate) -> bool:
    if candidate.correct is not None:
        return candidate.correct
    if candidate.answer is None or problem.reference_answer is None:
        raise InputError(f"{candidate.solution.id}: cannot tell if it is right: give 'correct', or an "
                         "'answer' and the problem's 'reference_answer'")
    return normalize_answer(candidate.answer) == normalize_answer(problem.reference_answer)


def majority_answer(problem: Problem) -> str | None:
    """The most common normalized answer (the earliest on ties); None when candidates give none."""
    answers = [normalize_answer(c.answer) for c in problem.candidates if c.answer is not None]
    if not answers:
        return None
    counts = Counter(answers)
    return max(answers, key=lambda a: (counts[a], -answers.index(a)))


def bon_report(problems: Sequence[Problem], aggregations: Sequence[str] = AGGREGATIONS) -> dict[str, Any]:
    """Best-of-N accuracy per aggregation against pass@1, majority vote and pass@N (percent)."""
    correct = [[is_correct(p, c) for c in p.candidates] for p in problems]
    n = len(problems)
    report: dict[str, Any] = {
        "problems": n,
        "candidates_per_problem": sorted({len(p.candidates) for p in problems}),
        "pass@1": 100 * sum(sum(row) / len(row) for row in correct) / n,
        "pass@n": 100 * sum(any(row) for row in correct) / n,
        "majority_vote": _majority_accuracy(problems),
    }
    report["best_of_n"] = {
        how: 100 * sum(row[rank(p, how)["best"]] for p, row in zip(problems, correct, strict=True)) / n
        for how in aggregations}
    return report


def _majority_accuracy(problems: Sequence[Problem]) -> float | None:
    hits = 0
    for problem in problems:
        majority = majority_answer(problem)
        if majority is None or problem.reference_answer is None:
            return None  # majority vote needs final answers and a reference answer
        hits += majority == normalize_answer(problem.reference_answer)
    return 100 * hits / len(problems)


