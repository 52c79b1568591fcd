"""`rprm-lite data pairs`: sample K critiques per labelled step from a model, and pair them up.

A pair is (chosen, rejected): chosen's verdict agrees with the step's label, rejected's does not.
Steps whose critiques all agree, all disagree or give no verdict make no pair. Sampling goes
through the rprm-lite runtime for a GGUF file, and through transformers `generate` for a Hugging
Face checkpoint folder. One line per sampled step is appended to `out` (its samples, verdicts and
pairs), so a rerun skips the steps already there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rprm_lite.config import PROMPT_STYLES
from rprm_lite.jsonl import JsonlWriter, existing_records
from rprm_lite.prompt import render
from rprm_lite.seeds import json_seed
from rprm_lite.solution import Solution
from rprm_lite.training.critiques import Verdict, find_verdict
from rprm_lite.training.jobconfig import JobConfig, option
from rprm_lite.training.labels import LabelledStep, by_solution, read_labelled_steps


@dataclass(frozen=True, kw_only=True)
class PairsConfig(JobConfig):
    """Settings of `rprm-lite data pairs`; every field is a command-line option."""

    model: str = option(help="The SFT model: a GGUF file (sampled by the runtime) or a Hugging Face folder.")
    solutions: str = option(help="Labelled solutions: JSON or JSONL with 'label' (ProcessBench) or 'labels'.")
    out: str = option(help="Output JSONL, one line per step with its samples and pairs (a rerun resumes).")
    k: int = option(8, help="Critiques sampled per labelled step.")
    pairs_per_step: int = option(1, help="Most pairs taken from one step.")
    temperature: float = option(0.95, help="Sampling temperature (must be > 0: pairs need varied critiques).")
    top_p: float = option(0.95, help="Nucleus sampling.")
    max_tokens: int = option(4096, help="Longest critique, in tokens.")
    seed: int = option(0, help="Seed; each step and sample gets its own seed derived from it.")
    prompt_style: str = option("chatml", help="Prompt style the model was trained on.")
    n_gpu_layers: int = option(0, help="GGUF models: layers to offload to the GPU.")
    backend: str = option("local", help="local, or URL[,URL...] of OpenAI-compatible servers serving the model "
                                        "(then --model is the GGUF whose vocabulary tokenizes).")
    server_model: str = option("", help="Remote: the served model's name (default: the first in /v1/models).")
    api_key_env: str = option("", help="Remote: the environment variable holding the servers' API key.")
    concurrency: int = option(1, help="Remote: solutions in flight at once.")

    def problems(self):
        yield from self.at_least(k=2, pairs_per_step=1, max_tokens=1, concurrency=1)
        if self.temperature <= 0:
            yield f"temperature must be > 0 so that the K critiques differ, got {self.temperature}"
        if not 0 < self.top_p <= 1:
            yield f"top-p must be in (0, 1], got {self.top_p}"
        yield from self.one_of("prompt_style", PROMPT_STYLES)


@dataclass(frozen=True)
class Sample:
    critique: str
    verdict: Verdict | None
    p_yes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"critique": self.verdict.text if self.verdict else self.critique,
                "verdict": self.verdict.word if self.verdict else None, "p_yes": self.p_yes}


class Sampler(Protocol):
    name: str

    def sample(self, solution: Solution, indices: list[int]) -> Iterator[tuple[int, list[Sample]]]: ...


def make_pairs(samples: list[Sample], *, step_correct: bool, limit: int) -> list[tuple[int, int]]:
    """(chosen, rejected) sample indices: agreeing and disagreeing verdicts, matched in order."""
    agree = [i for i, s in enumerate(samples) if s.verdict and s.verdict.says_correct == step_correct]
    disagree = [i for i, s in enumerate(samples) if s.verdict and s.verdict.says_correct != step_correct]
    return list(zip(agree, disagree, strict=False))[:limit]  # the longer list's extras stay unpaired


def outcome(samples: list[Sample], pairs: list[tuple[int, int]], step_correct: bool) -> str:
    if pairs:
        return "paired"
    verdicts = [s.verdict.says_correct for s in samples if s.verdict]
    if not verdicts:
        return "no_verdict"
    return "all_agree" if verdicts[0] == step_correct else "all_disagree"


@dataclass
class PairsReport:
    steps: Counter = field(default_factory=Counter)  # outcome -> steps
    pairs: int = 0
    new_steps: int = 0
    todo: int = 0  # steps to sample in this run
    out: str = ""

    def summary(self) -> str:
        total = sum(self.steps.values())
        parts = ", ".join(f"{self.steps[k]} {k.replace('_', ' ')}"
                          for k in ("paired", "all_agree", "all_disagree", "no_verdict"))
        return (f"{self.pairs} pairs from {total} steps ({self.new_steps} new in this run): {parts}; "
                f"written to {self.out}")


def build_pairs(config: PairsConfig, *, sampler: Sampler | None = None,
                on_step: Callable[[PairsReport], None] | None = None) -> PairsReport:
    """Sample every labelled step not yet in `config.out`, and append its samples and pairs there."""
    steps = read_labelled_steps(config.solutions)
    done, report = _resume(config.out)
    pending = [s for s in steps if (s.solution.id, s.number) not in done]
    report.todo = len(pending)
    own_sampler = sampler is None
    sampler = sampler or make_sampler(config)
    try:
        with JsonlWriter(config.out) as out:
            groups = by_solution(pending, lambda step: step)
            for solution_steps, sampled in zip(groups, _sample_groups(sampler, groups), strict=True):
                by_index = {s.index: s for s in solution_steps}
                for index, samples in sampled:
                    step = by_index[index]
                    pairs = make_pairs(samples, step_correct=step.correct, limit=config.pairs_per_step)
                    out.write(pairs_record(step, samples, pairs, config, sampler.name))
                    report.steps[outcome(samples, pairs, step.correct)] += 1
                    report.pairs += len(pairs)
                    report.new_steps += 1
                    if on_step is not None:
                        on_step(report)
    finally:
        if own_sampler and hasattr(sampler, "close"):
            sampler.close()
    return report


def _resume(out: str) -> tuple[set[tuple[str, int]], PairsReport]:
    report = PairsReport(out=out)
    done = set()
    for record in existing_records(out):
        done.add((str(record.get("id")), record.get("step")))
        report.steps[record.get("outcome", "")] += 1
        report.pairs += len(record.get("pairs") or [])
    return done, report


def pairs_record(step: LabelledStep, samples: list[Sample], pairs: list[tuple[int, int]],
                 config: PairsConfig, model_name: str) -> dict[str, Any]:
    return {"id": step.solution.id, "step": step.number, "label": step.label,
            "question": step.solution.question, "steps": list(step.solution.steps),
            "prompt_style": config.prompt_style, "model": model_name,
            "outcome": outcome(samples, pairs, step.correct),
            "samples": [s.to_dict() for s in samples], "pairs": [list(p) for p in pairs]}


def _sample_groups(sampler: Sampler, groups: list[list[LabelledStep]]) -> Iterator[Iterator[tuple[int, list[Sample]]]]:
    """Each solution's samples in turn; a sampler with `sample_many` keeps several solutions in flight."""
    asks = [(steps[0].solution, sorted(s.index for s in steps)) for steps in groups]
    many = getattr(sampler, "sample_many", None)
    if many is not None:
        yield from many(asks)
    else:
        yield from (sampler.sample(solution, indices) for solution, indices in asks)


def step_seed(seed: int, solution_id: str, index: int) -> int:
    return json_seed(seed, solution_id, index)


def make_sampler(config: PairsConfig) -> Sampler:
    path = Path(config.model)
    if config.backend != "local" or (path.is_file() and path.suffix.lower() == ".gguf"):
        return GGUFSampler(config)
    return HFSampler(config)


class GGUFSampler:
    """K critiques per step from the runtime's parallel engine (one shared prompt, K streams)."""

    def __init__(self, config: PairsConfig) -> None:
        from rprm_lite.remote.options import remote_from_options
        from rprm_lite.training.gguf_critiques import GGUFCritiques

        remote = remote_from_options(config.backend, server_model=config.server_model or None,
                                     api_key_env=config.api_key_env or None,
                                     concurrency=config.concurrency if config.concurrency != 1 else None)
        self.critiques = GGUFCritiques(config.model, k=config.k, temperature=config.temperature, top_p=config.top_p,
                                       max_tokens=config.max_tokens, seed=config.seed,
                                       prompt_style=config.prompt_style, n_gpu_layers=config.n_gpu_layers,
                                       remote=remote)
        self.name = self.critiques.name

    def sample(self, solution: Solution, indices: list[int]) -> Iterator[tuple[int, list[Sample]]]:
        return _samples(self.critiques.steps(solution, indices))

    def sample_many(self, asks: list[tuple[Solution, list[int]]]) -> Iterator[Iterator[tuple[int, list[Sample]]]]:
        for steps in self.critiques.steps_many(asks):
            yield _samples(steps)

    def close(self) -> None:
        self.critiques.close()


def _samples(steps: dict[int, Any]) -> Iterator[tuple[int, list[Sample]]]:
    for index, step in steps.items():
        yield index, [Sample(text, find_verdict(text), p_yes)
                      for text, p_yes in zip(step.critiques, step.p_yes, strict=True)]


class HFSampler:
    """K critiques per step from a Hugging Face checkpoint with transformers `generate` (GPU if present)."""

    def __init__(self, config: PairsConfig) -> None:
        import torch

        from rprm_lite.training.checkpoint import load_causal_lm, load_tokenizer
        from rprm_lite.training.tokens import PromptTokenizer

        self.config = config
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = load_causal_lm(config.model, dtype=dtype).to(self.device).eval()
        self.tokenizer = load_tokenizer(config.model)
        self.encoder = PromptTokenizer(self.tokenizer)
        self.end_ids = [self.encoder.end_of_turn_id, self.tokenizer.eos_token_id]
        self.name = Path(config.model).name

    def sample(self, solution: Solution, indices: list[int]) -> Iterator[tuple[int, list[Sample]]]:
        for index in indices:
            texts = self.critiques(solution, index)
            yield index, [Sample(text, find_verdict(text)) for text in texts]

    def critiques(self, solution: Solution, index: int) -> list[str]:
        import torch

        cfg = self.config
        prompt = self.encoder.prompt_ids(render(solution, index, cfg.prompt_style))
        torch.manual_seed(step_seed(cfg.seed, solution.id, index))
        with torch.no_grad():
            output = self.model.generate(
                input_ids=torch.tensor([prompt], device=self.device), do_sample=True,
                temperature=cfg.temperature, top_p=cfg.top_p, top_k=0, max_new_tokens=cfg.max_tokens,
                num_return_sequences=cfg.k, eos_token_id=self.end_ids, pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(output[:, len(prompt):], skip_special_tokens=True)
