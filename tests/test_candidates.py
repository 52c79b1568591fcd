"""`Scorer.score_candidates`: N candidate next steps scored together as N x K critiques in one batch, each with the
result it gets scored alone (`score_solution` of the solution with that step), on the tiny models through llama.cpp.
"""

from __future__ import annotations

import pytest

from rprm_lite.config import ScoreConfig
from rprm_lite.engine import Sampler, common_prefix, stream_seed
from rprm_lite.errors import ContextOverflowError, InputError
from rprm_lite.prompt import render
from rprm_lite.results import StepResult
from rprm_lite.scoring import Scorer
from rprm_lite.solution import Solution
from rprm_lite.step_cache import StepCache
from shared_paths import TINY_RPRM
from tests.test_calculator_critiques import Scripts, recorded

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SO_FAR = ["Tom starts with 3 apples."]
CANDIDATES = ["He buys 4 more, so 3 + 4 = 7.", "He has 3 + 4 = 8 apples.", "So 7 apples. The answer is 7."]
# The batch's KV cells sit at other indices than a lone scoring's, and a step's attention sums them grouped otherwise:
# the logits differ in the last bits, and a critique's P(Yes) at its end by up to 1.0e-2 on the tiny R-PRM (measured).
P_YES_TOLERANCE = 3e-2


def alone(scorer: Scorer, steps: list[str]) -> StepResult:
    """The last step as `score_solution` scores it (every step: the judge of a guided search)."""
    return scorer.score_solution(Solution.create(QUESTION, steps)).steps[-1]


def assert_same(batched: StepResult, single: StepResult) -> None:
    assert batched.critiques == single.critiques  # every token the same
    assert batched.p_yes == pytest.approx(single.p_yes, abs=P_YES_TOLERANCE)
    assert batched.score == pytest.approx(single.score, abs=P_YES_TOLERANCE)
    assert (batched.index, batched.fallbacks, batched.generated_tokens, batched.prompt_tokens,
            batched.calculated) == (single.index, single.fallbacks, single.generated_tokens, single.prompt_tokens,
                                    single.calculated)


@pytest.mark.parametrize("settings", [dict(k=1), dict(k=2, calculator="on"), dict(k=2, draft="3")],
                         ids=["greedy", "calculator", "drafts"])
def test_each_candidate_gets_the_critiques_it_gets_alone(settings):
    config = ScoreConfig(**{"max_tokens": 32, "all_steps": True, "temperature": 0.0, "threads": 1, **settings})
    with Scorer(TINY_RPRM, config, prefix_cache="memory", cache=StepCache(max_entries=0)) as scorer:
        batched = scorer.score_candidates(QUESTION, SO_FAR, CANDIDATES)
        singles = [alone(scorer, [*SO_FAR, text]) for text in CANDIDATES]
        first = scorer.score_candidates(QUESTION, [], CANDIDATES)  # the first step: no steps so far
        first_singles = [alone(scorer, [text]) for text in CANDIDATES]
        prompts = [scorer.engine.tokenize_prompt(render(Solution.create(QUESTION, [*SO_FAR, text]), 1))
                   for text in CANDIDATES]
    for batch, single in zip([*batched, *first], [*singles, *first_singles], strict=True):
        assert isinstance(batch, StepResult)
        assert_same(batch, single)
    assert all(step.generated_tokens > 0 for step in singles)
    assert len({step.critiques for step in singles}) == 3  # three prompts, three sets of critiques
    # the prompt they share (the question and step 1) was decoded once, the rest of each prompt once
    shared = min(common_prefix(prompts[0], tokens) for tokens in prompts)
    assert all(step.reused_tokens + (step.prefix_tokens or 0) == shared for step in batched)


class Seeded(Sampler):
    """The real sampler, recording the seed of each one made."""

    seeds: list[int] = []

    def __init__(self, **options) -> None:
        Seeded.seeds.append(options["seed"])
        super().__init__(**options)


def test_sampled_streams_have_the_seeds_of_a_lone_scoring_and_mostly_its_critiques():
    config = ScoreConfig(k=3, temperature=0.95, seed=5, max_tokens=32, all_steps=True, threads=1)
    with Scorer(TINY_RPRM, config, prefix_cache="memory", cache=StepCache(max_entries=0)) as scorer:
        scorer.make_sampler = Seeded
        Seeded.seeds = []
        batched = scorer.score_candidates(QUESTION, SO_FAR, CANDIDATES)
        assert Seeded.seeds == [stream_seed(5, 1, stream) for stream in range(3)] * 3  # as sample_critiques seeds
        singles = [alone(scorer, [*SO_FAR, text]) for text in CANDIDATES]
    pairs = [(a, b) for batch, single in zip(batched, singles, strict=True)
             for a, b in zip(batch.critiques, single.critiques, strict=True)]  # type: ignore[union-attr]
    # a draw near the edge of two tokens may go the other way on logits that differ in the last bits (1 of 9 here)
    assert sum(a == b for a, b in pairs) >= 2 * len(pairs) // 3


def test_the_calculator_writes_into_each_candidates_streams_as_alone(tiny_gguf):
    scripts = [["Calculation: 3 + 4 =", "; so the step is right.", "\nVerification: Is the step correct (Yes/No)?"],
               ["The step adds 3 + 4 =", " 8, which is wrong."]]
    config = ScoreConfig(k=2, temperature=0, max_tokens=60, calculator="on", all_steps=True, threads=1)
    with Scorer(tiny_gguf, config, prefix_cache="off") as scorer:
        calls = recorded(scorer, scripts)
        batched = scorer.score_candidates(QUESTION, [], CANDIDATES)
        together = len(calls)
        singles = [alone(scorer, [text]) for text in CANDIDATES]  # the scripts go round again, in the same order
    for batch, single in zip(batched, singles, strict=True):
        assert isinstance(batch, StepResult)
        assert_same(batch, single)
        assert batch.critiques[0].startswith("Calculation: 3 + 4 = 7;") and batch.calculated[0] == ((20, 22),)
        assert "8, which is wrong." in batch.critiques[1]
    # 3 candidates x 2 streams in lock-step: far fewer decode calls than one candidate after another
    assert together < (len(calls) - together) / 2
    assert max(len({entry.seq for entry in call}) for call in calls[:together]) == 6


def test_a_candidate_too_long_for_the_context_gets_its_error_and_the_others_are_scored():
    config = ScoreConfig(k=2, temperature=0, max_tokens=24, all_steps=True, threads=1)
    with Scorer(TINY_RPRM, config, prefix_cache="memory") as scorer:
        results = scorer.score_candidates(QUESTION, SO_FAR, [CANDIDATES[0], "two " * 4100, "", CANDIDATES[1]])
        singles = [alone(scorer, [*SO_FAR, text]) for text in (CANDIDATES[0], CANDIDATES[1])]
    assert isinstance(results[1], ContextOverflowError) and "no room for 2 critiques" in str(results[1])
    assert isinstance(results[2], InputError) and "step 2 is empty" in str(results[2])
    for batch, single in zip((results[0], results[3]), singles, strict=True):
        assert isinstance(batch, StepResult)
        assert_same(batch, single)


def test_more_candidates_than_the_sequences_hold_are_scored_in_several_batches():
    config = ScoreConfig(k=100, temperature=0, max_tokens=4, all_steps=True, threads=1)
    with Scorer(TINY_RPRM, config, prefix_cache="memory", cache=StepCache(max_entries=0)) as scorer:
        calls = recorded(scorer, [["x"]], sampler=Scripts)
        results = scorer.score_candidates(QUESTION, SO_FAR, CANDIDATES)  # 300 streams: 2 + 1 candidates
        assert scorer.engine.n_seq == 1 + 200
    assert [len(step.p_yes) for step in results if isinstance(step, StepResult)] == [100, 100, 100]
    assert max(len({entry.seq for entry in call}) for call in calls) == 200


def test_a_batch_is_kept_in_the_step_cache_as_a_batch():
    config = ScoreConfig(k=2, temperature=0.95, max_tokens=16, all_steps=True, threads=1)
    with Scorer(TINY_RPRM, config, prefix_cache="memory") as scorer:
        first = scorer.score_candidates(QUESTION, SO_FAR, CANDIDATES)
        calls = recorded(scorer, [["unused"]])
        scorer.make_sampler = Sampler  # recorded() scripts the critiques; the real sampler again (keys are made)
        again = scorer.score_candidates(QUESTION, SO_FAR, CANDIDATES)
        assert (again, calls) == (first, [])  # the same batch: from the cache, nothing decoded
        other = scorer.score_candidates(QUESTION, SO_FAR, CANDIDATES[:2])  # another batch is scored again
        assert calls and len(other) == 2


def test_adaptive_k_scores_the_candidates_one_after_another():
    config = ScoreConfig(k=4, temperature=0.95, max_tokens=16, all_steps=True, adaptive=True, threads=1)
    with Scorer(TINY_RPRM, config, prefix_cache="memory", cache=StepCache(max_entries=0)) as scorer:
        batched = scorer.score_candidates(QUESTION, SO_FAR, CANDIDATES[:2])
        singles = [alone(scorer, [*SO_FAR, text]) for text in CANDIDATES[:2]]
    assert batched == singles
