"""Per-call cancellation of `Scorer.score_solution` (`should_stop`), and `use_config`, on the tiny model."""

import threading
from dataclasses import replace

import llama_cpp
import pytest

from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError, ScoringCancelled
from rprm_lite.scoring import Scorer
from rprm_lite.solution import Solution
from rprm_lite.step_cache import StepCache

SOLUTION = Solution.create("What is 2 + 3?", ["2 + 3 = 5.", "The answer is 5."], id="s")
FAST = dict(k=2, max_tokens=4, seed=3, all_steps=True, threads=1)


@pytest.fixture(scope="module")
def scorer(tiny_gguf):
    # no step cache: a repeated call would be answered from it without a decode to cancel
    with Scorer(tiny_gguf, ScoreConfig(**FAST), cache=StepCache(max_entries=0)) as s:
        yield s


def scored(result):
    """A result without `prefix_tokens`: how many prompt tokens the prefix cache put back depends on what this
    process scored before, not on the call."""
    return replace(result, steps=tuple(replace(step, prefix_tokens=None) for step in result.steps))


def cached_positions(scorer) -> list[int]:
    """The last position each sequence holds in the KV cache (-1: empty)."""
    return [llama_cpp.llama_memory_seq_pos_max(scorer.engine.memory, seq) for seq in range(scorer.config.k + 1)]


def test_should_stop_cancels_at_the_next_decode_and_leaves_the_scorer_usable(scorer):
    before = scorer.score_solution(SOLUTION)
    asked = []

    def should_stop():
        asked.append(len(asked))
        return len(asked) > 3  # after three decodes: in the middle of step 1's critiques

    with pytest.raises(ScoringCancelled, match="cancelled by its caller"):
        scorer.score_solution(SOLUTION, should_stop=should_stop)
    assert len(asked) == 4  # it stopped at the first check that said so
    assert cached_positions(scorer) == [-1, -1, -1]  # nothing of the cancelled call is left in the cache
    assert scored(scorer.score_solution(SOLUTION)) == scored(before)  # and the next call is not affected by it


def test_an_event_set_from_on_step_stops_before_the_next_step(scorer):
    stop = threading.Event()
    seen = []

    def on_step(solution, step):
        seen.append(step.index)
        stop.set()

    with pytest.raises(ScoringCancelled):
        scorer.score_solution(SOLUTION, on_step=on_step, should_stop=stop.is_set)
    assert seen == [1]
    assert scorer.engine.should_stop is None  # the hook does not outlive its call


def test_use_config_changes_the_settings_of_later_calls(scorer, tiny_gguf):
    defaults = scorer.config
    try:
        scorer.use_config(defaults.replace(k=1, seed=9, all_steps=False, threshold=1.0))
        result = scorer.score_solution(SOLUTION)
    finally:
        scorer.use_config(defaults)
    assert [len(s.p_yes) for s in result.steps] == [1, 0] and result.steps[1].verdict == "not scored"
    with Scorer(tiny_gguf, ScoreConfig(**{**FAST, "k": 1, "seed": 9, "all_steps": False, "threshold": 1.0})) as fresh:
        assert scored(fresh.score_solution(SOLUTION)) == scored(result)
    with pytest.raises(InputError, match="threads cannot change after the model is loaded"):
        scorer.use_config(defaults.replace(threads=2))
    assert scorer.config == defaults
