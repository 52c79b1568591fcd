"""The early signals find the words that decide each comparison ("52 vs 51, not the same") in the tokens."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("transformers")

from rprm_lite.demo_model.signals import calculation_signals, comparison_signals, signal_examples  # noqa: E402
from rprm_lite.demo_model.synthetic import generate_split  # noqa: E402
from rprm_lite.demo_model.synthetic_teacher import NOT_SAME, SAME, critique  # noqa: E402
from rprm_lite.prompt import render  # noqa: E402
from rprm_lite.training.tokens import PromptTokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from rprm_lite.convert.random_tokenizer import train_byte_level_bpe
    from rprm_lite.prompt import VERDICT_PHRASE, template
    from rprm_lite.training.checkpoint import load_tokenizer

    problems = generate_split("train", 40, seed=2)
    verdicts = [f"Verification: {VERDICT_PHRASE}{verdict}" for verdict in (" Yes", " No")] * 200
    corpus = ["".join(template("r-prm-eval"))] * 20 + verdicts + [critique(p, i, rng=random.Random(i)) for p in problems
                                                       for i, label in enumerate(p.step_labels()) if label is not None]
    folder = tmp_path_factory.mktemp("bpe")
    train_byte_level_bpe(corpus, vocab_size=500).write(folder)
    return load_tokenizer(str(folder))


def test_every_comparison_word_is_found_with_whether_the_pair_differs(tokenizer):
    encoder = PromptTokenizer(tokenizer)
    problems = [p for p in generate_split("test", 30, seed=5) if p.label > 0][:6]
    texts = [critique(p, p.label, rng=random.Random(0)) for p in problems]
    examples = [encoder.example(render(p.solution(), p.label, "r-prm-eval"), text)
                for p, text in zip(problems, texts, strict=True)]
    found = signal_examples(examples, tokenizer, [p.error["kind"] for p in problems])
    for item, text in zip(found, texts, strict=True):
        # three pairs (two operands, the result) and the operation: one word each
        assert len(item.comparison_positions) == text.count(SAME) == 4
        assert sum(item.comparison_differs) == text.count(NOT_SAME) >= 1
        for position, differs in zip(item.comparison_positions, item.comparison_differs, strict=True):
            word = tokenizer.decode([item.example.ids[position]]).strip()  # the word's first token
            assert word and ("not" if differs else "the").startswith(word)
            assert tokenizer.decode(item.example.ids[position - 1:position]).strip() in (",", ":")


def test_comparison_signals_count_hits_overall_on_differing_pairs_and_per_kind():
    compared = [(True, False, None), (True, True, "copy"), (False, True, "copy"), (True, True, "arithmetic")]
    assert comparison_signals(compared) == {"cmp_acc": 0.75, "cmp_not_acc": 0.6667, "cmp_not_arithmetic": 1.0,
                                            "cmp_not_copy": 0.5}
    assert comparison_signals([]) == {}


def test_the_calculation_check_s_own_result_is_found_not_the_step_s(tokenizer):
    from rprm_lite.demo_model.synthetic_problems import apply

    encoder = PromptTokenizer(tokenizer)
    problems = [p for p in generate_split("test", 60, seed=7) if p.error and p.error["kind"] == "arithmetic"][:4]
    assert problems
    for problem in problems:
        step = problem.steps[problem.label]
        text = critique(problem, problem.label, rng=random.Random(0))
        example = encoder.example(render(problem.solution(), problem.label, "r-prm-eval"), text)
        (item,) = signal_examples([example], tokenizer, ["arithmetic"])
        result = apply(step.op, step.left, step.right)
        assert result is not None and result != step.result  # a slip: only computing gives the teacher's number
        positions = list(item.calculation_positions)
        assert positions == list(range(positions[0], positions[-1] + 1))
        decoded = tokenizer.decode([item.example.ids[p] for p in positions])
        assert str(result) in decoded and len(decoded) <= len(str(result)) + 4, decoded  # the tokens of the result


def test_calculation_signals_are_whole_results_overall_and_per_kind():
    assert calculation_signals([(True, None), (False, "arithmetic"), (True, "arithmetic"), (True, "copy")]) == {
        "calc_acc": 0.75, "calc_acc_arithmetic": 0.5, "calc_acc_copy": 1.0}
    assert calculation_signals([]) == {}
