"""`data pairs`: K critiques per labelled step, paired by agreement with the label; resumable."""

from __future__ import annotations

import pytest
from training_helpers import CRITIQUE, SOLUTIONS, read_jsonl, write_jsonl

from rprm_lite.errors import InputError
from rprm_lite.training.critiques import find_verdict
from rprm_lite.training.data_files import read_pairs
from rprm_lite.training.pairs import PairsConfig, Sample, build_pairs, make_pairs, outcome

YES, NO, NONE = CRITIQUE.format("Yes"), CRITIQUE.format("No"), "I cannot tell."


def samples(*texts: str) -> list[Sample]:
    return [Sample(text, find_verdict(text)) for text in texts]


def test_pairs_match_agreeing_with_disagreeing_critiques_in_order():
    step = samples(NO, YES, NONE, YES, NO, YES)
    assert make_pairs(step, step_correct=True, limit=5) == [(1, 0), (3, 4)]
    assert make_pairs(step, step_correct=False, limit=5) == [(0, 1), (4, 3)]
    assert make_pairs(step, step_correct=True, limit=1) == [(1, 0)]
    assert outcome(step, [(1, 0)], True) == "paired"
    assert outcome(samples(YES, YES, NONE), [], True) == "all_agree"
    assert outcome(samples(YES, YES, NONE), [], False) == "all_disagree"
    assert outcome(samples(NONE, NONE), [], True) == "no_verdict"


class ScriptedSampler:
    """Returns given critiques per (solution id, 0-based step); records what it was asked."""

    name = "scripted"

    def __init__(self, script: dict) -> None:
        self.script = script
        self.asked: list[tuple[str, int]] = []

    def sample(self, solution, indices):
        for index in indices:
            self.asked.append((solution.id, index))
            yield index, samples(*self.script[(solution.id, index)])


SCRIPT = {("add", 0): [YES, NO, YES], ("add", 1): [YES, YES, YES], ("mul", 0): [YES, NO, NO],
          ("sub", 0): [NO, NO, NONE], ("sub", 1): [NONE, NONE, NONE], ("sub", 2): [NO, YES, NONE],
          ("div", 0): [YES, NO, NO]}


def test_build_pairs_writes_every_step_and_resumes(tmp_path):
    solutions = write_jsonl(tmp_path / "solutions.jsonl", SOLUTIONS)
    out = tmp_path / "pairs.jsonl"
    config = PairsConfig(model="unused", solutions=str(solutions), out=str(out), k=3, pairs_per_step=2)

    sampler = ScriptedSampler(SCRIPT)
    report = build_pairs(config, sampler=sampler)

    assert sorted(sampler.asked) == sorted(SCRIPT)  # div step 2 is unlabelled: never sampled
    lines = {(r["id"], r["step"]): r for r in read_jsonl(out)}
    assert {key: (r["outcome"], r["pairs"]) for key, r in lines.items()} == {
        ("add", 1): ("paired", [[0, 1]]), ("add", 2): ("all_agree", []), ("mul", 1): ("paired", [[1, 0]]),
        ("sub", 1): ("all_disagree", []), ("sub", 2): ("no_verdict", []), ("sub", 3): ("paired", [[0, 1]]),
        ("div", 1): ("paired", [[0, 1]])}
    assert lines[("sub", 3)]["samples"][2] == {"critique": NONE, "verdict": None, "p_yes": None}
    assert report.pairs == 4 and dict(report.steps) == {"paired": 4, "all_agree": 1, "all_disagree": 1,
                                                        "no_verdict": 1}
    pairs = read_pairs(out)
    assert [(p.solution.id, p.index, p.chosen, p.rejected) for p in pairs if p.solution.id == "mul"] == [
        ("mul", 0, NO, YES)]

    again = ScriptedSampler(SCRIPT)
    rerun = build_pairs(config, sampler=again)
    assert again.asked == [] and rerun.new_steps == 0 and rerun.pairs == 4


def test_hf_sampler_is_seeded_and_draws_k_critiques(small_model_dir, tmp_path):
    solutions = write_jsonl(tmp_path / "solutions.jsonl", SOLUTIONS[:2])

    def run(name: str, seed: int) -> list[list[str]]:
        config = PairsConfig(model=str(small_model_dir), solutions=str(solutions), out=str(tmp_path / name),
                             k=3, max_tokens=6, seed=seed)
        build_pairs(config)
        return [[s["critique"] for s in r["samples"]] for r in read_jsonl(tmp_path / name)]

    first, same, other = run("a.jsonl", 0), run("b.jsonl", 0), run("c.jsonl", 1)
    assert len(first) == 3 and all(len(step) == 3 for step in first)  # 3 labelled steps x k=3
    assert first == same
    assert first != other
    assert all(len(set(step)) > 1 for step in first)  # sampled, not greedy


def test_bad_settings():
    with pytest.raises(InputError, match="k must be at least 2, got 1; temperature must be > 0"):
        PairsConfig(model="m", solutions="s", out="o", k=1, temperature=0)
