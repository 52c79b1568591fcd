"""Best-of-N accuracy: answer matching, the accuracy report and `bench bon` (reranking is tests/test_rerank.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rprm_lite.bench import bestofn, cli
from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError
from rprm_lite.rerank import read_problems


@pytest.mark.parametrize(("a", "b"), [("\\boxed{1,000}", "1000"), ("$5$.", "5"), ("0.50", "0.5"),
                                      ("x = 2", "x=2"), ("\\frac{1}{2}", "\\frac{1}{2}")])
def test_normalize_answer_matches_equivalent_spellings(a, b):
    assert bestofn.normalize_answer(a) == bestofn.normalize_answer(b)


def test_normalize_answer_keeps_different_answers_apart():
    assert bestofn.normalize_answer("12") != bestofn.normalize_answer("1.2")


def test_bon_report(candidates_file):
    report = bestofn.bon_report(read_problems(candidates_file))
    assert (report["problems"], report["candidates_per_problem"]) == (3, [2, 3])
    assert (report["pass@1"], report["pass@n"]) == (50.0, 100.0)
    assert report["majority_vote"] == pytest.approx(200 / 3)  # p1 "4" right, p2 "12" wrong, p3 tie: first
    assert report["best_of_n"] == pytest.approx({"min": 100 / 3, "product": 100 / 3, "mean": 100 / 3,
                                                 "last": 200 / 3})  # only "last" picks p2's right answer


def test_correct_flags_override_answers_and_majority_needs_answers(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "q", "question": "?", "candidates": [
        {"steps": ["a"], "correct": True, "scores": [0.4]}, {"steps": ["b"], "correct": False, "scores": [0.6]}]}))
    report = bestofn.bon_report(read_problems(path))
    assert (report["pass@1"], report["majority_vote"], report["best_of_n"]["min"]) == (50.0, None, 0.0)


def test_bon_report_needs_a_way_to_tell_right_from_wrong(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "q", "question": "?", "candidates": [{"steps": ["a"], "scores": [0.5]}]}))
    with pytest.raises(InputError, match="q/0: cannot tell if it is right"):
        bestofn.bon_report(read_problems(path))


# -- the commands ----------------------------------------------------------------------------------------
@pytest.fixture
def no_model(monkeypatch):
    def refuse(model, settings):
        raise AssertionError("no model should be loaded when every candidate has scores")

    monkeypatch.setattr(cli, "make_scorer", refuse)


def test_bench_bon_report(tmp_path, candidates_file, no_model):
    result = CliRunner().invoke(cli.app, ["bon", str(candidates_file), "--out", str(tmp_path / "bon")])
    assert result.exit_code == 0, result.output
    assert result.stdout == """Best-of-N accuracy, 3 problems, N = 2, 3

| method | accuracy |
|---|---|
| pass@1 | 50.0 |
| majority vote | 66.7 |
| pass@N | 100.0 |
| PRM best-of-N (min) | 33.3 |
| PRM best-of-N (product) | 33.3 |
| PRM best-of-N (mean) | 33.3 |
| PRM best-of-N (last) | 66.7 |
"""
    assert json.loads((tmp_path / "bon" / "metrics.json").read_text())["pass@n"] == 100.0


def test_bench_bon_scores_missing_candidates_and_resumes(tmp_path, monkeypatch, fake_scorer):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "q", "question": "1+1?", "reference_answer": "2", "candidates": [
        {"steps": ["1+1=3."], "answer": "3"}, {"steps": ["1+1=2."], "answer": "2"},
        {"steps": ["1+1=2!"], "answer": "2", "scores": [0.5]}]}))
    made = []

    def make(model, settings):
        made.append(fake_scorer({"q/0": [(0.25, 0.5)], "q/1": [(1.0, 0.5)]}, ScoreConfig(k=2).replace(**settings)))
        return made[-1]

    monkeypatch.setattr(cli, "make_scorer", make)
    args = ["bon", str(path), "--out", str(tmp_path / "bon")]
    first = CliRunner().invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    assert made[0].scored == ["q/0", "q/1"]
    report = json.loads((tmp_path / "bon" / "metrics.json").read_text())
    assert report["best_of_n"] == {"min": 100.0, "product": 100.0, "mean": 100.0, "last": 100.0}
    second = CliRunner().invoke(cli.app, args)
    assert (second.exit_code, made[1].scored) == (0, [])
    assert "0 scored, 2 already in" in second.stderr
