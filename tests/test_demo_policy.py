"""The demo policy's recipe end to end at toy size: data -> base -> LoRA SFT -> policy adapter -> greedy evaluation.

A tiny random-weight Qwen2 with the real Qwen2 tokenizer (and its ChatML chat template) stands in for SmolLM2, as
a Hugging Face folder: every stage is real (transformers and peft train it, our converter writes the base GGUF and
the adapter, verified against the merged model, llama.cpp writes the greedy solutions), only small. Its solutions
are noise; what is checked is what the recipe trains on, what it writes, and how it reads a solution's mistakes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rprm_lite.demo_model.policy import (
    NAME,
    POLICY_ADAPTER,
    TRAIN_DATA,
    PolicyConfig,
    PolicyRecipe,
    first_mistake,
    policy_examples,
)
from rprm_lite.demo_model.synthetic import generate_split
from rprm_lite.demo_model.synthetic_problems import SYMBOLS, read_problems
from rprm_lite.errors import InputError
from rprm_lite.policy import policy_completion, policy_prompt
from shared_paths import QWEN2_VOCAB

pytest.importorskip("llama_cpp", reason="the recipe evaluates with llama-cpp-python")
pytest.importorskip("peft", reason="the recipe trains a LoRA adapter with peft (the train extra)")

TOY = {"train": 16, "max_steps": 2, "batch_size": 4, "micro_batch_size": 4, "learning_rate": 1e-2, "lora_r": 4,
       "precision": "fp32", "threads": 1, "evaluate": True, "eval_problems": 3, "eval_max_tokens": 24}
KINDS = {"no answer", "stopped early", "no calculation in a step", "wrong operation", "copied a wrong number",
         "miscopied a number", "arithmetic slip", "extra steps", "wrong answer stated"}


@pytest.fixture(scope="module")
def toy_base(tmp_path_factory) -> Path:
    if not QWEN2_VOCAB.exists():
        pytest.skip(f"needs the real Qwen2 tokenizer at {QWEN2_VOCAB}")
    from rprm_lite.convert.random_model import build_random_checkpoint

    return build_random_checkpoint(tmp_path_factory.mktemp("base") / "tiny-qwen2", tokenizer="qwen2", seed=0)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, toy_base):
    out = tmp_path_factory.mktemp("policy")
    lines: list[str] = []
    state = PolicyRecipe(PolicyConfig(out=str(out), base=str(toy_base), **TOY), log=lines.append).run()
    return out, state, lines


def test_every_stage_runs_and_the_result_is_a_policy_adapter_not_a_judge(toy_run):
    from rprm_lite.adapter_file import inspect_adapter
    from rprm_lite.convert.gguf_file import read_gguf_metadata
    from rprm_lite.model_file import inspect_model

    out, state, _ = toy_run
    assert list(state["stages"]) == ["data", "base", "sft", "export", "evaluate"]
    adapter = out / POLICY_ADAPTER
    fields = read_gguf_metadata(adapter)
    assert fields["general.type"] == "adapter"
    assert fields["general.name"] == NAME
    assert "POLICY" in fields["general.description"]
    assert [key for key in fields if key.startswith("rprm.")] == ["rprm.base_sha256"]  # no scoring key
    checked = inspect_adapter(adapter, inspect_model(out / "base.gguf"))  # the runtime takes it for its base
    assert checked.rprm == {"rprm.base_sha256": fields["rprm.base_sha256"]}
    assert state["stages"]["sft"]["steps"] == 2


def test_it_trains_on_correct_solutions_of_training_problems_only(toy_run):
    out, state, _ = toy_run
    problems = read_problems(out / TRAIN_DATA)
    assert len(problems) == 16
    assert {p.split for p in problems} == {"train"}
    assert all(p.error is None and p.final_answer_correct for p in problems)


def test_the_loss_covers_exactly_the_solution_and_its_end_of_turn(toy_run):
    from rprm_lite.convert.gguf_file import read_gguf_metadata
    from rprm_lite.training.checkpoint import load_tokenizer
    from rprm_lite.training.tokens import PromptTokenizer

    out, _, _ = toy_run
    template = read_gguf_metadata(out / "base.gguf")["tokenizer.chat_template"]
    problem = read_problems(out / TRAIN_DATA)[0]
    tokenizer = load_tokenizer(str(out / "base"))
    (example,), too_long = policy_examples([problem], PromptTokenizer(tokenizer), template=template, max_length=512)
    assert too_long == 0
    split = example.prompt_length
    assert example.loss_mask == [0] * split + [1] * (len(example.ids) - split)
    assert tokenizer.decode(example.ids[:split]) == policy_prompt(template, problem.question)
    assert tokenizer.decode(example.ids[split:]) == policy_completion([s.text for s in problem.steps]) + "<|im_end|>"
    assert policy_examples([problem], PromptTokenizer(tokenizer), template=template, max_length=split)[1] == 1


def test_the_evaluation_writes_each_greedy_solution_with_its_first_mistake(toy_run):
    out, state, _ = toy_run
    records = [json.loads(line) for line in (out / "eval" / "solutions.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        assert (record["mistake"] is None) == record["correct"]
        assert record["mistake"] is None or record["mistake"] in KINDS
    summary = state["stages"]["evaluate"]
    assert summary["problems"] == 3
    assert summary["correct"] == sum(r["correct"] for r in records)
    assert "greedy accuracy" in (out / "eval" / "report.md").read_text()


def test_a_rerun_skips_the_finished_stages_and_other_settings_are_refused(toy_run, toy_base):
    out, _, _ = toy_run
    lines: list[str] = []
    PolicyRecipe(PolicyConfig(out=str(out), base=str(toy_base), **TOY), log=lines.append).run()
    assert [line.split("]")[0] for line in lines] == ["[data", "[base", "[sft", "[export", "[evaluate"]
    assert all("done earlier" in line for line in lines)
    with pytest.raises(InputError, match="other settings .*lora-r|other settings .*lora_r"):
        PolicyRecipe(PolicyConfig(out=str(out), base=str(toy_base), **(TOY | {"lora_r": 8})))


def test_an_evaluation_seed_is_refused_for_training(tmp_path):
    with pytest.raises(InputError, match="evaluation seed"):
        PolicyConfig(out=str(tmp_path), seed=40404)


def mistaken(steps: list[str], index: int, old: str, new: str) -> list[str]:
    changed = list(steps)
    changed[index] = changed[index].replace(old, new, 1)
    return changed


def test_first_mistake_names_the_kind_of_the_first_wrong_step():
    problem = generate_split("test", 1, seed=3, error_share=0.0)[0]
    steps = [step.text for step in problem.steps]
    first = problem.steps[0]
    shown = f"{first.left} {SYMBOLS[first.op]} {first.right} = {first.result}"
    wrong_answer = mistaken(steps, -1, f"The answer is {problem.answer}.", f"The answer is {problem.answer + 1}.")
    other_symbol = next(SYMBOLS[op] for op in "+-*/" if op != first.op)
    other_number = next((v for v in problem.quantities.values() if v not in (first.left, first.right)), None)

    assert first_mistake(problem, steps) is None
    assert first_mistake(problem, mistaken(steps, -1, "The answer is", "So we get")) == "no answer"
    assert first_mistake(problem, [steps[0] + " The answer is 1."]) == "stopped early"
    assert first_mistake(problem, mistaken(wrong_answer, 0, shown, f"{first.left} {SYMBOLS[first.op]} "
                                                                   f"{first.right} = {first.result + 1}")
                         ) == "arithmetic slip"
    assert first_mistake(problem, mistaken(wrong_answer, 0, shown, f"{first.left} {other_symbol} {first.right} = "
                                                                   f"{first.result}")) == "wrong operation"
    assert first_mistake(problem, mistaken(wrong_answer, 0, shown, f"987 {SYMBOLS[first.op]} {first.right} = "
                                                                   f"{first.result}")) == "miscopied a number"
    if other_number is not None:
        assert first_mistake(problem, mistaken(wrong_answer, 0, shown, f"{other_number} {SYMBOLS[first.op]} "
                                                                       f"{first.right} = {first.result}")
                             ) == "copied a wrong number"
    if first.op in "+*":  # the operands of a sum or a product in the other order are no mistake
        assert first_mistake(problem, mistaken(wrong_answer, 0, shown, f"{first.right} {SYMBOLS[first.op]} "
                                                                       f"{first.left} = {first.result}")
                             ) == "wrong answer stated"
    assert first_mistake(problem, wrong_answer) == "wrong answer stated"
    assert first_mistake(problem, wrong_answer + ["Then 1 + 1 = 2. The answer is 2."]) == "extra steps"
