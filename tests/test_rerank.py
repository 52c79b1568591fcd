"""`rprm-lite rerank`: the candidates file, aggregation, choosing, and the command (pre-scored candidates,
a scripted scorer, resuming with --output, prefix-cache and bad input)."""

from __future__ import annotations

import json

import pytest
from fake_scorer import FakeScorer
from typer.testing import CliRunner

from rprm_lite import rerank, rerank_command
from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError


def test_aggregate():
    scores = [0.5, 0.25, 0.75]
    assert [rerank.aggregate(scores, how) for how in ("min", "product", "mean", "last")] == [
        0.25, 0.09375, 0.5, 0.75]
    with pytest.raises(InputError, match="every step needs a score"):
        rerank.aggregate([0.5, None], "min")


def test_rank_picks_the_highest_score_and_the_first_on_ties(candidates_file):
    p1, p2, _ = rerank.read_problems(candidates_file)
    assert rerank.rank(p1, "min")["best"] == 0
    assert rerank.rank(p2, "last") == {"id": "p2", "aggregation": "last", "best": 0, "best_answer": "10",
                                            "solution_scores": [0.99, 0.8, 0.95],
                                            "step_scores": [[0.4, 0.99], [0.9, 0.8], [0.7, 0.95]]}
    tie = rerank.Problem(id="t", question="q", candidates=tuple(
        rerank.Candidate(c.solution, scores=(0.5,)) for c in p1.candidates[:2]))
    assert rerank.rank(tie, "min")["best"] == 0


@pytest.mark.parametrize(("line", "message"), [
    ({"id": "q", "question": "?"}, "expected an object with 'id', 'question' and a 'candidates' list"),
    ({"id": "q", "question": "?", "candidates": []}, "'candidates' must be a non-empty list"),
    ({"id": "q", "candidates": [{"steps": ["a"]}]}, "missing 'question'"),
    ({"id": "q", "question": "?", "candidates": [{"answer": "1"}]}, "missing 'steps'"),
    ({"id": "q", "question": "?", "candidates": [{"steps": ["a", "b"], "scores": [0.5]}]},
     "1 scores for 2 steps"),
    ({"id": "q", "question": "?", "candidates": [{"steps": ["a"], "correct": "yes"}]},
     "'correct' must be true or false"),
])
def test_read_problems_bad_input(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(InputError, match=message):
        rerank.read_problems(path)


# -- the command ----------------------------------------------------------------------------------------
@pytest.fixture
def fake_scorer():
    return FakeScorer


@pytest.fixture
def no_model(monkeypatch):
    def refuse(model, settings):
        raise AssertionError("no model should be loaded when every candidate has scores")

    monkeypatch.setattr(rerank_command, "make_scorer", refuse)


def test_rerank_pre_scored_candidates(candidates_file, no_model):
    result = CliRunner().invoke(rerank_command.app, [str(candidates_file), "--aggregation", "last"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ("p1: candidate 0, answer 4 (last score 0.800)\n"
                             "p2: candidate 0, answer 10 (last score 0.990)\n"
                             "p3: candidate 1, answer x=3 (last score 0.700)\n")


def test_rerank_appends_to_output_and_a_rerun_skips_what_is_there(tmp_path, candidates_file, no_model):
    output = tmp_path / "ranked.jsonl"
    first = CliRunner().invoke(rerank_command.app, [str(candidates_file), "--output", str(output), "--json"])
    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["id"], r["best"], r["aggregation"]) for r in lines] == [("p1", 0, "min"), ("p2", 1, "min"),
                                                                       ("p3", 1, "min")]
    assert [json.loads(line) for line in first.stdout.splitlines()] == lines
    again = CliRunner().invoke(rerank_command.app, [str(candidates_file), "--output", str(output)])
    assert (again.exit_code, again.stdout) == (0, "")
    assert "3 problem(s) already in" in again.stderr


def test_rerank_scores_candidates_without_scores(tmp_path, monkeypatch, fake_scorer):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "q", "question": "1+1?", "candidates": [
        {"steps": ["1+1=3.", "So 3."], "answer": "3"}, {"steps": ["1+1=2.", "So 2."], "answer": "2"}]}))
    made = []

    def make(model, settings):
        made.append(fake_scorer({"q/0": [(0.25, 0.25), (1.0, 1.0)], "q/1": [(1.0, 0.75), (0.75, 0.75)]},
                                ScoreConfig(k=2).replace(**settings)))
        return made[-1]

    monkeypatch.setattr(rerank_command, "make_scorer", make)
    result = CliRunner().invoke(rerank_command.app, [str(path), "--k", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "q: candidate 1, answer 2 (min score 0.750)\n"
    assert (made[0].config.all_steps, made[0].scored, made[0].closed) == (True, ["q/0", "q/1"], True)


def test_rerank_passes_prefix_cache_to_the_local_scorer_and_refuses_it_with_a_server(tmp_path, monkeypatch,
                                                                                      fake_scorer):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "q", "question": "1+1?", "candidates": [{"steps": ["1+1=2."], "answer": "2"}]}))
    given = []

    def make(model, settings):
        given.append(settings)
        fields = {name: value for name, value in settings.items() if name != "prefix_cache"}
        return fake_scorer({"q/0": [(1.0, 1.0)]}, ScoreConfig(k=2).replace(**fields))

    monkeypatch.setattr(rerank_command, "make_scorer", make)
    for mode in ("off", "memory", "auto"):
        result = CliRunner().invoke(rerank_command.app, [str(path), "--k", "2", "--prefix-cache", mode])
        assert result.exit_code == 0, result.output
    assert [settings.get("prefix_cache") for settings in given] == ["off", "memory", None]  # None: the default
    bad = CliRunner().invoke(rerank_command.app, [str(path), "--prefix-cache", "disk"])
    assert (bad.exit_code, bad.stderr) == (2, "error: --prefix-cache must be one of auto, memory, off, got 'disk'\n")
    remote = CliRunner().invoke(rerank_command.app, [str(path), "--backend", "http://127.0.0.1:9",
                                                     "--prefix-cache", "off"])
    assert remote.exit_code == 2 and "--prefix-cache is not supported with --backend URL yet" in remote.stderr
    assert len(given) == 3


def test_rerank_bad_input_is_one_line_on_stderr(tmp_path, no_model):
    result = CliRunner().invoke(rerank_command.app, [str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'missing.jsonl'}: no such file; expected a JSONL file of " \
                            "problems with 'candidates'\n"
    bad = CliRunner().invoke(rerank_command.app, [str(tmp_path / "missing.jsonl"), "--aggregation", "median"])
    assert bad.exit_code == 2 and "aggregation must be one of min, product, mean, last" in bad.stderr
