"""Best-of-N: pick one of N candidate solutions per problem by an aggregated PRM score.

Candidates file (JSONL, one problem per line):
    {"id": "p1", "question": "...", "reference_answer": "5",            # reference optional
     "candidates": [{"steps": ["...", "..."], "answer": "5"},            # answer optional
                    {"steps": [...], "correct": false, "scores": [0.9, 0.2]}]}
A candidate may carry `scores` (one per step, from an earlier run): it is then not scored again.
`correct` (true/false) overrides comparing `answer` with `reference_answer`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rprm_lite.config import AGGREGATIONS
from rprm_lite.errors import InputError
from rprm_lite.jsonl import read_jsonl
from rprm_lite.results import aggregate as aggregate_scores
from rprm_lite.solution import Solution, solution_from_dict

from .harness import BenchItem
from .records import score_list, steps_from_record


@dataclass(frozen=True)
class Candidate:
    solution: Solution
    answer: str | None = None
    correct: bool | None = None
    scores: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    candidates: tuple[Candidate, ...]
    reference_answer: str | None = None

    def bench_items(self) -> list[BenchItem]:
        """The candidates still to score, with ids `<problem id>/<candidate index>`."""
        return [BenchItem(c.solution, {"problem": self.id, "candidate": i})
                for i, c in enumerate(self.candidates) if c.scores is None]


def read_problems(path: str | Path) -> list[Problem]:
    path = Path(path)
    problems, seen = [], set()
    for number, entry in read_jsonl(path, what="a JSONL file of problems with 'candidates'"):
        problem = _problem(entry, f"{path.name} line {number}", default_id=f"line-{number}")
        if problem.id in seen:
            raise InputError(f"{path} line {number}: problem id {problem.id!r} is repeated; "
                             "ids must be unique")
        seen.add(problem.id)
        problems.append(problem)
    if not problems:
        raise InputError(f"{path}: no problems; expected one JSON object per line")
    return problems


def _problem(entry: Any, where: str, default_id: str) -> Problem:
    if not isinstance(entry, dict) or "candidates" not in entry:
        raise InputError(f"{where}: expected an object with 'id', 'question' and a 'candidates' list")
    candidates = entry["candidates"]
    if not isinstance(candidates, list) or not candidates:
        raise InputError(f"{where}: 'candidates' must be a non-empty list of solutions")
    question = entry.get("question", entry.get("problem"))
    problem_id = str(entry.get("id", entry.get("idx", default_id)))
    parsed = tuple(_candidate(c, question, f"{problem_id}/{i}", f"{where} candidate {i}")
                   for i, c in enumerate(candidates))
    reference = entry.get("reference_answer")
    return Problem(id=problem_id, question=parsed[0].solution.question, candidates=parsed,
                   reference_answer=None if reference is None else str(reference))


def _candidate(entry: Any, question: Any, candidate_id: str, where: str) -> Candidate:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object with 'steps', got {type(entry).__name__}")
    fields = {key: entry[key] for key in ("steps",) if key in entry}
    solution = solution_from_dict({"question": question, "id": candidate_id, **fields}, where=where)
    scores = entry.get("scores")
    if scores is not None:
        scores = score_list(scores, f"{where} 'scores'")
        if len(scores) != len(solution.steps) or None in scores:
            raise InputError(f"{where}: {len(scores)} scores for {len(solution.steps)} steps; "
                             "expected one score per step")
    correct = entry.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise InputError(f"{where}: 'correct' must be true or false, got {correct!r}")
    answer = entry.get("answer")
    return Candidate(solution, answer=None if answer is None else str(answer), correct=correct, scores=scores)


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


# -- choosing --------------------------------------------------------------------------------------
def aggregate(scores: Sequence[float | None], how: str) -> float:
    """Solution score from step scores (min, product, mean or last), as the scorer aggregates."""
    if how not in AGGREGATIONS:
        raise InputError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {how!r}")
    if not scores or None in scores:
        raise InputError("every step needs a score to aggregate; score candidates with all steps")
    return aggregate_scores(scores, how)


def rank(problem: Problem, how: str) -> dict[str, Any]:
    """The best candidate (highest aggregated score; the first one on ties) and every score."""
    missing = [c.solution.id for c in problem.candidates if c.scores is None]
    if missing:
        raise InputError(f"{', '.join(missing[:3])}: not scored; give --model or 'scores' in the file")
    solution_scores = [aggregate(c.scores, how) for c in problem.candidates]
    best = max(range(len(solution_scores)), key=lambda i: (solution_scores[i], -i))
    return {"id": problem.id, "aggregation": how, "best": best,
            "best_answer": problem.candidates[best].answer, "solution_scores": solution_scores,
            "step_scores": [list(c.scores) for c in problem.candidates]}


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


def score_problem(problem: Problem, scorer: Any) -> Problem:
    """Score the candidates that carry no scores (the scorer must score all steps)."""
    todo = [c.solution for c in problem.candidates if c.scores is None]
    many = getattr(scorer, "score_many", None)  # the remote scorer keeps several candidates in flight
    results = iter(many(todo) if many is not None and todo else [scorer.score_solution(s) for s in todo])
    candidates = tuple(c if c.scores is not None else replace(c, scores=tuple(next(results).scores))
                       for c in problem.candidates)
    return replace(problem, candidates=candidates)
