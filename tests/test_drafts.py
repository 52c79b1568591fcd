"""Prompt-lookup drafts (`--draft`): the lookup itself (literal token ids), and the critique loop that verifies
drafts on the tiny random-weight models through llama.cpp: the same critiques, the same sampler draws, rejected
positions out of the KV cache, the token budget kept."""

import llama_cpp
import pytest

from rprm_lite.config import ADDED_SETTINGS, RESUME_KEYS, ScoreConfig, changed_settings
from rprm_lite.drafts import DraftStats, Lookup, draft_length
from rprm_lite.errors import InputError
from rprm_lite.scoring import Scorer
from tests.test_calculator_critiques import PHRASE, QUESTION, STEPS, Scripts, recorded

END = 99


PROMPT = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 9, 5, 6, 7, 8, 10, 11, 12, END, 13]


def test_a_draft_follows_the_prompt_while_its_last_three_tokens_always_have_the_same_follower():
    lookup = Lookup(PROMPT, 8, ends=[END])
    assert lookup.draft([0, 3, 4, 5], limit=10) == [6, 7, 8]  # then "6 7 8" is followed by 1 and by 10: it stops
    assert lookup.draft([0, 1, 2, 3], limit=10) == [4]  # "2 3 4" is followed by 5 and by 9
    assert lookup.draft([3, 4, 5], limit=2) == [6, 7]  # never past the budget
    assert lookup.draft([8, 10, 11], limit=10) == [12]  # an end-of-text token is never drafted
    assert lookup.draft([4, 5], limit=10) == lookup.draft([9, 9, 9], limit=10) == []  # too short; nowhere
    assert Lookup([1, 2, 3], 8).draft([1, 2, 3], limit=10) == []  # nothing follows the prompt's own end


def test_the_critique_s_own_tokens_count_as_the_prompt_s_do():
    lookup = Lookup(PROMPT, 8, ends=[END])
    assert lookup.draft([30, 31, 32, 33, 30, 31, 32], limit=10) == [33, 30, 31, 32, 33, 30, 31, 32]  # a loop
    assert lookup.draft([3, 4, 5, 0, 3, 4, 5], limit=10) == []  # the prompt says 6 after "3 4 5", the critique 0
    assert lookup.draft([3, 4, 5, 6, 7, 0, 3, 4, 5], limit=10) == [6, 7]  # then "5 6 7": 8 in the prompt, 0 here


def test_auto_drafts_only_while_few_critiques_are_written_and_off_builds_no_index():
    assert Lookup(PROMPT, 3, max_streams=2).draft([3, 4, 5], limit=10, streams=3) == []
    assert Lookup(PROMPT, 3, max_streams=2).draft([3, 4, 5], limit=10, streams=2) == [6, 7, 8]
    lookup = Lookup(PROMPT, draft_length("off"))
    assert lookup.draft([3, 4, 5], limit=10) == [] and lookup.following == {}
    assert draft_length("auto") == 3 and draft_length("5") == 5


def test_the_setting_is_checked_omitted_at_off_and_tells_outputs_apart():
    assert ScoreConfig(draft=4).draft == "4"
    for bad in ("sometimes", "0", "-1", "33", 2.5, True):
        with pytest.raises(InputError, match="draft must be auto, off or a number of tokens from 1 to 32"):
            ScoreConfig(draft=bad)
    assert "draft" not in ScoreConfig(draft="off").to_dict()  # outputs made without drafts stay as they were
    assert ScoreConfig(draft="auto").to_dict()["draft"] == "auto"
    assert "draft" in RESUME_KEYS and ADDED_SETTINGS["draft"] == "off"
    assert changed_settings(ScoreConfig().to_dict(), ScoreConfig(draft="auto").to_dict()) == [
        "draft: 'off' before, 'auto' now"]
    assert DraftStats(drafted=8, accepted=6, tokens=20, advances=10).note() == (
        "drafts: 6 of 8 drafted tokens accepted (75%); 2.00 critique tokens per stream and decode call")


def critiques(model, *, draft, **settings):
    """Critiques of the first two steps (their texts, token counts, P(Yes)) and the scorer's draft stats."""
    config = ScoreConfig(**{"k": 2, "temperature": 0, "max_tokens": 32, "all_steps": True, **settings}, draft=draft)
    with Scorer(model, config, prefix_cache="off") as scorer:
        result = scorer.score(QUESTION, STEPS)
        return [(s.critiques, s.generated_tokens, s.p_yes) for s in result.steps], scorer.draft_stats


@pytest.mark.parametrize("settings", [{}, {"adaptive": True, "k": 4}])
def test_greedy_drafts_write_the_critiques_that_no_drafts_write(small_bpe_gguf, settings):
    off, _ = critiques(small_bpe_gguf, draft="off", **settings)
    on, stats = critiques(small_bpe_gguf, draft="8", **settings)
    assert stats.accepted > 0 and stats.drafted > stats.accepted  # drafts were kept and drafts were rejected
    assert [(texts, tokens) for texts, tokens, _ in on] == [(texts, tokens) for texts, tokens, _ in off]
    for (_, _, p_on), (_, _, p_off) in zip(on, off, strict=True):
        # a row of a several-token decode may differ from a one-token decode's in the low bits (measured: 6e-5)
        assert p_on == pytest.approx(p_off, abs=1e-3)


def scripted(model, scripts, *, draft, max_tokens=200, **settings):
    """The first step scored with scripted critiques: the result, the decode calls' entries, each sampler's
    draws, and the positions each critique's sequence holds in the KV cache afterwards."""
    config = ScoreConfig(k=len(scripts), temperature=0, max_tokens=max_tokens, draft=draft, **settings)
    draws: list[list[int]] = []

    class Counting(Scripts):
        def __init__(self, **settings):
            super().__init__(**settings)
            draws.append([])
            self.draws = draws[-1]

        def sample(self, engine, row):
            token = super().sample(engine, row)
            self.draws.append(token)
            return token

    with Scorer(model, config, prefix_cache="off") as scorer:
        engine = scorer.engine
        calls = recorded(scorer, scripts, Counting)
        result = scorer.score(QUESTION, STEPS[:1])
        held = [(llama_cpp.llama_memory_seq_pos_min(engine.memory, seq), llama_cpp.llama_memory_seq_pos_max(
            engine.memory, seq), llama_cpp.llama_state_seq_get_size(engine.ctx, seq))  # the size counts its cells
            for seq in range(1, len(scripts) + 1)]
        stats = scorer.draft_stats
    return result, calls, draws, held, stats


QUOTING = ["The Now Step says: Each friend gets 20 ÷ 5 = 3 apples. It should be 4 apples.", PHRASE]
PLAIN = ["Tom has 20 apples and shares them", " with care.", PHRASE]


@pytest.mark.parametrize("calculator", ["off", "on"])
def test_quoted_text_is_decoded_several_tokens_a_call_with_the_same_draws(small_bpe_gguf, calculator):
    off = scripted(small_bpe_gguf, [QUOTING, PLAIN], draft="off", calculator=calculator)
    on = scripted(small_bpe_gguf, [QUOTING, PLAIN], draft="8", calculator=calculator)
    (result_off, calls_off, draws_off, held_off, _), (result_on, calls_on, draws_on, held_on, stats) = off, on
    assert result_on.steps[0].critiques == result_off.steps[0].critiques
    assert result_on.steps[0].calculated == result_off.steps[0].calculated  # "20 ÷ 5 =" drafted, " 4" written
    if calculator == "on":
        assert " 20 ÷ 5 = 4 3 apples." in result_on.steps[0].critiques[0]
    assert draws_on == draws_off  # every sampler drew as often, and the same tokens, as without drafts
    assert held_on == held_off  # rejected drafted positions left the KV cache: the same positions, the same cells
    assert len(calls_on) < len(calls_off) - 5 and stats.accepted > 5
    # drafted positions were decoded in one call with the pending token, each with its logits
    groups = [[e for e in entries if e.seq == seq] for entries in calls_on for seq in {e.seq for e in entries} - {0}]
    assert any(len(group) > 4 and all(e.logits for e in group) for group in groups)
    # the KV values of tokens decoded several at a time differ in the low bits (measured here: up to 1.7e-3)
    assert result_on.steps[0].p_yes == pytest.approx(result_off.steps[0].p_yes, abs=1e-2)


def test_a_draft_never_crosses_the_token_budget_or_the_context(small_bpe_gguf):
    for max_tokens in (5, 12, 13):
        off = scripted(small_bpe_gguf, [QUOTING, QUOTING], draft="off", max_tokens=max_tokens)
        on = scripted(small_bpe_gguf, [QUOTING, QUOTING], draft="16", max_tokens=max_tokens)
        assert on[0].steps[0].critiques == off[0].steps[0].critiques
        assert on[0].steps[0].generated_tokens == off[0].steps[0].generated_tokens == 2 * max_tokens
        assert on[3] == off[3]
        limit = max(e.pos for entries in off[1] for e in entries if e.seq != 0)
        assert max(e.pos for entries in on[1] for e in entries if e.seq != 0) <= limit


def test_a_remote_backend_refuses_drafts():
    from rprm_lite.remote.settings import refuse_unsupported

    with pytest.raises(InputError, match="--draft is not supported with --backend URL yet; score with the local "
                                         r"engine \(--backend local\) or leave out --draft"):
        refuse_unsupported(ScoreConfig(draft="auto").to_dict())
    refuse_unsupported(ScoreConfig(draft="off").to_dict())


def test_the_demo_judge_writes_the_same_greedy_critiques_with_drafts(demo_base, monkeypatch):
    from pathlib import Path

    from rprm_lite.solution import read_solutions

    monkeypatch.delenv("RPRM_MODEL", raising=False)
    [solution] = read_solutions(str(Path(__file__).parents[1] / "examples" / "solution.json"))
    results = {}
    for draft in ("off", "auto"):  # the demo's defaults: one greedy critique, the calculator on
        with Scorer(None, draft=draft, max_tokens=160, all_steps=True, prefix_cache="off") as scorer:
            results[draft] = scorer.score(solution.question, solution.steps[:2]), scorer.draft_stats
    (off, _), (on, stats) = results["off"], results["auto"]
    assert stats.accepted > 10 and stats.tokens / stats.advances > 1.1
    assert [step.critiques for step in on.steps] == [step.critiques for step in off.steps]
    assert [step.calculated for step in on.steps] == [step.calculated for step in off.steps]
    for step_on, step_off in zip(on.steps, off.steps, strict=True):
        # a decode of several tokens of a sequence rounds otherwise than one token at a time (llama.cpp picks its
        # CPU kernels by the batch's shape); measured 4.7e-3, 1.24e-2, and 4.2e-2 with the runtime-only build
        assert step_on.p_yes == pytest.approx(step_off.p_yes, abs=6e-2)
