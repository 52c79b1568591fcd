"""Reranking: pick one of N candidate solutions per problem by an aggregated PRM score (`rprm-lite rerank`).

Candidates file (JSONL, one problem per line):
    {"id": "p1", "question": "...", "reference_answer": "5",            # reference optional
     "candidates": [{"steps": ["...", "..."], "answer": "5"},            # answer optional
                    {"steps": [...], "correct": false, "scores": [0.9, 0.2]}]}
A candidate may carry `scores` (one per step, from an earlier run): it is then not scored again.
`correct` (true/false) overrides comparing `answer` with `reference_answer` (the best-of-N benchmark's accuracy,
`bench/bestofn.py`, reads it; reranking does not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from rprm_lite.config import AGGREGATIONS
from rprm_lite.errors import InputError
from rprm_lite.jsonl import read_jsonl
from rprm_lite.labelled.records import score_list
from rprm_lite.results import SolutionResult
from rprm_lite.results import aggregate as aggregate_scores
from rprm_lite.scorer import Scorer
from rprm_lite.solution import Solution, solution_from_dict


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


    @property
    def unscored(self) -> list[Solution]:
        """The candidates still to score (ids `<problem id>/<candidate index>`)."""
        return [c.solution for c in self.candidates if c.scores is None]


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
    scores = None
    if entry.get("scores") is not None:
        listed = score_list(entry["scores"], f"{where} 'scores'")
        scores = tuple(score for score in listed if score is not None)
        if len(listed) != len(solution.steps) or len(scores) != len(listed):
            raise InputError(f"{where}: {len(listed)} scores for {len(solution.steps)} steps; "
                             "expected one score per step")
    correct = entry.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise InputError(f"{where}: 'correct' must be true or false, got {correct!r}")
    answer = entry.get("answer")
    return Candidate(solution, answer=None if answer is None else str(answer), correct=correct, scores=scores)


# -- choosing --------------------------------------------------------------------------------------
def aggregate(scores: Sequence[float | None], how: str) -> float:
    """Solution score from step scores (min, product, mean or last), as the scorer aggregates."""
    if how not in AGGREGATIONS:
        raise InputError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {how!r}")
    present = [score for score in scores if score is not None]
    if not scores or len(present) != len(scores):
        raise InputError("every step needs a score to aggregate; score candidates with all steps")
    return cast(float, aggregate_scores(present, how))  # a float: `present` is not empty


def rank(problem: Problem, how: str) -> dict[str, Any]:
    """The best candidate (highest aggregated score; the first one on ties) and every score."""
    missing = [c.solution.id for c in problem.candidates if c.scores is None]
    if missing:
        raise InputError(f"{', '.join(missing[:3])}: not scored; give --model or 'scores' in the file")
    step_scores = [c.scores for c in problem.candidates if c.scores is not None]  # every candidate's, in order
    solution_scores = [aggregate(scores, how) for scores in step_scores]
    best = max(range(len(solution_scores)), key=lambda i: (solution_scores[i], -i))
    return {"id": problem.id, "aggregation": how, "best": best,
            "best_answer": problem.candidates[best].answer, "solution_scores": solution_scores,
            "step_scores": [list(scores) for scores in step_scores]}


def score_problem(problem: Problem, scorer: Scorer | None) -> Problem:
    """Score the candidates that carry no scores (the scorer must score all steps; none is needed when every
    candidate carries its scores)."""
    todo = [c.solution for c in problem.candidates if c.scores is None]
    if todo and scorer is None:
        raise InputError(f"{problem.id}: candidates without scores need a model")
    results = iter(scorer.score_many(todo) if todo and scorer is not None else [])
    candidates = tuple(c if c.scores is not None else replace(c, scores=scored(next(results)))
                       for c in problem.candidates)
    return replace(problem, candidates=candidates)


def scored(result: SolutionResult) -> tuple[float, ...]:
    """A scored candidate's step scores (all of them: the scorer scores all steps; `aggregate` refuses a gap)."""
    return tuple(cast(list[float], result.scores))


def ranked_line(ranked: Mapping[str, Any]) -> str:
    """One line per reranked problem: the chosen candidate, its answer and score."""
    best = ranked["best"]
    answer = f", answer {ranked['best_answer']}" if ranked["best_answer"] is not None else ""
    return (f"{ranked['id']}: candidate {best}{answer} "
            f"({ranked['aggregation']} score {ranked['solution_scores'][best]:.3f})")
