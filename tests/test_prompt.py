import hashlib
import json

import pytest

from rprm_lite.errors import InputError
from rprm_lite.prompt import FIRST_STEP_PREVIOUS, load_template_file, render, render_text, template_hash
from rprm_lite.solution import Solution, solution_from_dict
from shared_paths import GOLDEN, SHARED, needs_shared

REFERENCE = SHARED / "reference"


def gsm8k_0() -> Solution:
    return solution_from_dict(json.loads((GOLDEN / "gsm8k-0.json").read_text()), where="gsm8k-0")


@pytest.mark.parametrize("style", ["r-prm-eval", "chatml"])
@pytest.mark.parametrize("step", [1, 2])
def test_golden_prompts_byte_for_byte(style, step):
    expected = (GOLDEN / f"gsm8k-0.{style}.step{step}.txt").read_bytes()
    assert render_text(gsm8k_0(), step - 1, style).encode("utf-8") == expected


def test_packaged_eval_template_is_the_released_file_pinned_by_hash():
    text = load_template_file("r-prm-eval.v1.txt")
    assert hashlib.sha256(text.encode()).hexdigest() == (
        "020647b468fd1fb0ecd955d349f1f2cbcc33477da09110c4a7ef85d5856865ca")


@needs_shared(REFERENCE / "r-prm-eval-prompt.txt")
def test_eval_style_equals_released_template_filled_with_format():
    released = (REFERENCE / "r-prm-eval-prompt.txt").read_text(encoding="utf-8")
    solution = gsm8k_0()
    expected = released.format(solution.question, "Step 1: " + solution.steps[0], "Step 2: " + solution.steps[1])
    assert render_text(solution, 1, "r-prm-eval") == expected
    assert released.endswith("Reply: <|im_end|>\\n<|im_start|>assistant\\n")  # literal backslash-n pairs


@needs_shared(REFERENCE / "r-prm-train-user-prompt.txt")
def test_chatml_style_wraps_the_training_user_text_with_real_newlines():
    user = (REFERENCE / "r-prm-train-user-prompt.txt").read_text(encoding="utf-8")
    solution = Solution.create("Q?", ["a", "b"])
    text = render_text(solution, 1, "chatml")
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    + user.format("Q?", "Step 1: a", "Step 2: b") + "<|im_end|>\n<|im_start|>assistant\n")


def test_first_step_uses_the_released_placeholder():
    text = render_text(Solution.create("Q?", ["only step"]), 0)
    assert "Previous Steps: Since the Now Step is the first step, there are no Previous Steps.\n" in text
    assert FIRST_STEP_PREVIOUS == "Since the Now Step is the first step, there are no Previous Steps."
    assert "Now Step: Step 1: only step\n" in text


def test_previous_steps_are_numbered_and_joined_by_newlines():
    text = render_text(Solution.create("Q?", ["a", "b", "c"]), 2)
    assert "Previous Steps: Step 1: a\nStep 2: b\nNow Step: Step 3: c\n" in text


def test_user_text_is_marked_so_it_is_never_parsed_for_special_tokens():
    prompt = render(Solution.create("Q <|im_end|>", ["x <|im_start|>"]), 0)
    user_pieces = [p.text for p in prompt.pieces if not p.is_template]
    assert user_pieces == ["Q <|im_end|>", FIRST_STEP_PREVIOUS, "Step 1: x <|im_start|>"]


def test_unknown_style_and_step_out_of_range_are_input_errors():
    solution = Solution.create("Q?", ["a"])
    with pytest.raises(InputError, match="unknown prompt style 'plain'"):
        render(solution, 0, "plain")
    with pytest.raises(InputError, match="step 2 does not exist; the solution has 1 steps"):
        render(solution, 1)


def test_template_hash_differs_between_styles():
    assert template_hash("r-prm-eval") != template_hash("chatml")
    assert len(template_hash("chatml")) == 64
