"""The calculator in the critique loop, on a tiny random-weight model through llama.cpp.

Random weights write gibberish, so critiques are scripted (a sampler that writes given tokens): the calculator's
trigger, its tokens decoded beside the other streams', the KV positions and the logits read after them stay real.
"""

import json

import pytest

from rprm_lite.config import ScoreConfig
from rprm_lite.engine import Engine
from rprm_lite.errors import InputError
from rprm_lite.output import format_table, to_json_line
from rprm_lite.prompt import render
from rprm_lite.scoring import Scorer
from rprm_lite.solution import Solution
from tests.test_scoring import fresh_p_yes

QUESTION = "Tom has 20 apples and shares them among 5 friends. How many does each get?"
STEPS = ["Each friend gets 20 ÷ 5 = 3 apples.", "The answer is 3."]
PHRASE = "\nVerification: Is the step correct (Yes/No)?"


class Scripts:
    """Samplers that write one script each, in the order the streams are made, then end their critique. A script
    is a list of text pieces, each tokenized alone (as a model writes "=" before what follows it)."""

    scripts: list[list[int]] = []
    made = 0
    accepted: list[int] = []

    def __init__(self, **_):
        self.queue = list(Scripts.scripts[Scripts.made % len(Scripts.scripts)])
        Scripts.made += 1

    def sample(self, engine, row):
        return self.queue.pop(0) if self.queue else engine.tokenize("<|im_end|>", special=True)[0]

    def accept(self, token):
        Scripts.accepted.append(token)

    def close(self):
        pass


def recorded(scorer, scripts, sampler=Scripts) -> list:
    """Make the scorer's critiques write `scripts` (through `sampler`, `Scripts` or a subclass) and record its
    decode calls: the list returned gets each call's entries."""
    engine = scorer.engine
    Scripts.scripts = [[t for piece in pieces for t in engine.tokenize(piece, special=False)] for pieces in scripts]
    Scripts.made, Scripts.accepted = 0, []
    scorer.make_sampler = sampler
    calls = []
    decode = engine.decode

    def recording(entries):
        calls.append(list(entries))
        return decode(entries)

    engine.decode = recording
    return calls


def scored(model, scripts, **settings):
    """The first step scored with scripted critiques, the decode calls' entries, and the step's prompt tokens."""
    config = ScoreConfig(**{"k": len(scripts), "temperature": 0, "max_tokens": 200, **settings})
    with Scorer(model, config, prefix_cache="off") as scorer:
        engine = scorer.engine
        calls = recorded(scorer, scripts)
        result = scorer.score(QUESTION, STEPS[:1])
        prompt = engine.tokenize_prompt(render(Solution.create(QUESTION, STEPS[:1]), 0))
        tokens = {text: engine.tokenize(text, special=False) for text in (" 4", " the same", " not the same")}
    return result, calls, prompt, tokens


def test_the_result_is_written_decoded_with_the_other_streams_and_read_as_if_generated(tiny_gguf):
    forced = "Calculation: 20 ÷ 5 ="
    rest = "; the Now Step writes 3." + PHRASE
    plain = "The step divides the apples." + PHRASE
    result, calls, prompt, tokens = scored(tiny_gguf, [[forced, rest], [plain]], calculator="on")
    step = result.steps[0]
    critique = step.critiques[0]
    assert critique.startswith(forced + " 4" + rest)  # the scripted text went on after the calculator's
    start = len(forced)
    assert step.calculated == (((start, start + 2),), ())
    assert step.critiques[1].startswith(plain)
    # the calculator's tokens went into one decode call with the token before them and the other stream's
    written = tokens[" 4"]
    together = [call for call in calls if [e.token for e in call if e.seq == 1][-len(written):] == written]
    assert len(together) == 1 and {e.seq for e in together[0]} == {1, 2}
    mine = [e for e in together[0] if e.seq == 1]
    assert len(mine) == 1 + len(written)
    assert [e.pos for e in mine] == list(range(mine[0].pos, mine[0].pos + len(mine)))
    assert [e.logits for e in mine] == [False] * len(written) + [True]  # logits only after the last
    assert Scripts.accepted == written  # the sampler took them as its own
    # P(Yes) is read after the text the critique holds, exactly as if the model had written the result
    engine = Engine(tiny_gguf, vocab_only=True)
    head, tail = (engine.tokenize(text, special=False) for text in (forced, rest))
    engine.close()
    assert step.p_yes[0] == pytest.approx(fresh_p_yes(tiny_gguf, prompt + head + written + tail), abs=2e-3)
    assert step.generated_tokens == len(head) + len(written) + len(tail) + len(Scripts.scripts[1])


def test_off_writes_nothing_and_outputs_stay_as_they_were(tiny_gguf):
    script = "Calculation: 20 ÷ 5 = 3; 3 vs 3, the same." + PHRASE
    result, calls, _, _ = scored(tiny_gguf, [[script], [script]])
    step = result.steps[0]
    assert all(c.startswith(script) for c in step.critiques)
    assert step.calculated is None and Scripts.accepted == []
    line = json.loads(to_json_line(result, critiques=True))
    assert "calculator" not in line["config"] and "calculated" not in line["steps"][0]
    critique_calls = [call for call in calls if all(e.seq != 0 for e in call)]  # not the prompt's
    assert critique_calls and all(len({e.seq for e in call}) == len(call) for call in critique_calls)


def test_comparisons_are_written_exactly(tiny_gguf):
    # a result equal to an operand (20 - 0 = 20; the Now Step writes 20) compared with the number it writes
    pieces = ["20 - 0 =", "; the Now Step writes 20:", " so it holds.", " Check: 7 vs 7,", " ok.", PHRASE]
    result, _, _, _ = scored(tiny_gguf, [pieces], calculator="on")
    critique = result.steps[0].critiques[0]
    assert critique.startswith("20 - 0 = 20; the Now Step writes 20: 20 vs 20, the same so it holds. Check: 7 vs 7,"
                               " the same ok.")
    assert len(result.steps[0].calculated[0]) == 3
    table = format_table(result, tuple(STEPS[:1]), show_critiques=True)
    assert "20 - 0 =⟦ 20⟧" in table and "⟦ 20 vs 20, the same⟧" in table and "written by the calculator" in table


def test_an_equals_sign_as_the_last_allowed_token_gets_nothing(tiny_gguf):
    engine = Engine(tiny_gguf, vocab_only=True)
    script = engine.tokenize("So 20 ÷ 5 =", special=False)
    engine.close()
    result, _, _, _ = scored(tiny_gguf, [["So 20 ÷ 5 ="]], calculator="on", max_tokens=len(script))
    step = result.steps[0]
    assert step.fallbacks == 1 and step.calculated == ((),)
    assert step.generated_tokens == len(script)  # the budget held: nothing was written past it


def test_results_record_the_calculator_and_resume_keys_tell_it_apart(tiny_gguf):
    from rprm_lite.config import changed_settings

    on, _, _, _ = scored(tiny_gguf, [["x", PHRASE]], calculator="on")
    off, _, _, _ = scored(tiny_gguf, [["x", PHRASE]])
    assert on.config["calculator"] == "on" and "calculator" not in off.config
    assert changed_settings(off.config, on.config) == ["calculator: 'off' before, 'on' now"]
    assert changed_settings(on.config, on.config) == []


def test_a_bad_calculator_value_is_refused():
    with pytest.raises(InputError, match="calculator"):
        ScoreConfig(calculator="maybe")


def test_a_number_no_source_holds_is_taken_back_and_chosen_again_among_the_sources(tiny_gguf):
    # the question holds 20 and 5; the critique says 4 comes from it: 4 leaves the text and the KV cache, and the
    # model chooses again between "20 from the question" and "5 from the question", greedily
    head, claim, rest = "The first number it needs is the apples,", [" 4", " from the question", ";"], " It is right."
    result, calls, prompt, _ = scored(tiny_gguf, [[head, *claim, rest, PHRASE]], calculator="on")
    step = result.steps[0]
    critique = step.critiques[0]
    chosen = next(n for n in ("20", "5") if critique.startswith(f"{head} {n} from the question"))
    (span,) = step.calculated[0]
    assert critique[span[0]:span[1]] == f"{chosen} from the question"
    # what the model reads is the critique as it stands: the taken-back cells are gone from its sequence
    engine = Engine(tiny_gguf, vocab_only=True)
    tokens = [t for piece in (head, " ") for t in engine.tokenize(piece, special=False)]
    tokens += engine.tokenize(f"{chosen} from the question", special=False)
    tokens += [t for piece in (rest, PHRASE) for t in engine.tokenize(piece, special=False)]
    engine.close()
    assert critique.startswith(f"{head} {chosen} from the question{rest}{PHRASE}")
    assert step.p_yes[0] == pytest.approx(fresh_p_yes(tiny_gguf, prompt + tokens), abs=2e-3)
    assert step.generated_tokens == len(tokens)


def test_a_number_a_source_holds_is_left_as_written(tiny_gguf):
    pieces = ["The second number it needs is the friends,", " 5", " from the question", ";", " right.", PHRASE]
    result, _, _, _ = scored(tiny_gguf, [pieces], calculator="on")
    assert result.steps[0].critiques[0].startswith("".join(pieces))
    assert result.steps[0].calculated == ((),)


def test_a_number_the_now_step_does_not_use_is_taken_back_and_chosen_among_its_operands(tiny_gguf):
    # the Now Step is "20 ÷ 5 = 3": it uses 20 and 5; a critique that says it uses 3 (its result) gets to choose
    # again between them, and the pieces after the taken-back number follow the chosen one
    head = "The first number it needs is the apples, 20 from the question; the Now Step uses"
    result, _, _, _ = scored(tiny_gguf, [[head, " 3", ":", " It is right.", PHRASE]], calculator="on")
    step = result.steps[0]
    critique = step.critiques[0]
    chosen = next(n for n in ("20", "5") if critique.startswith(f"{head} {n} It is right."))
    (span,) = step.calculated[0]
    assert critique[span[0]:span[1]] == chosen


def test_an_operation_the_now_step_does_not_do_is_taken_back_and_written_as_it_does(tiny_gguf):
    # the Now Step "20 ÷ 5 = 3" divides: a critique that says it multiplies (the operation the goal needs, copied)
    # gets " divides" instead, the one operation the step does, and goes on from there
    head = "It needs multiplication; the Now Step"
    result, _, _, _ = scored(tiny_gguf, [[head, " multiplies", ":", " It is right.", PHRASE]], calculator="on")
    step = result.steps[0]
    critique = step.critiques[0]
    assert critique.startswith(f"{head} divides It is right.")
    (span,) = step.calculated[0]
    assert critique[span[0]:span[1]] == " divides"
    right, _, _, _ = scored(tiny_gguf, [[head, " divides", ":", " right.", PHRASE]], calculator="on")
    assert right.steps[0].critiques[0].startswith(f"{head} divides: right.") and right.steps[0].calculated == ((),)

