"""The demo R-PRM, made end to end by one command: the recipe behind `rprm_lite/models/rprm-demo.gguf`.

    python -m rprm_lite.demo_model.recipe --out build/recipe            # the shipped model, about an hour on 2 cores
    python -m rprm_lite.demo_model.recipe --out build/recipe --evaluate # then its F1 on the synthetic test split

Stages, each writing into --out:

1. `data/`       synthetic step-labelled problems (train.jsonl; dev/ and test/ in ProcessBench format)
2. `base/`       a byte-level BPE trained on the synthetic text and the R-PRM prompt, and a Qwen2 model
                 with random weights (the same architecture and code path as R-PRM-7B, much smaller)
3. `seed.jsonl`  critiques by the programmatic teacher, kept when their verdict agrees with the label;
                 `sft-data.jsonl` the kept ones with Yes critiques sampled down to `--no-share` No verdicts
4. `drill/`      the base model after a short arithmetic drill ("72 - 36 = 36" lines, `curriculum`)
   `short/`      then trained on the SFT examples with the fixed instructions cut off (`curriculum`)
5. `sft/`        supervised fine-tuning on the balanced critiques (loss on the critique only), the prompt
                 prefix shared by a micro-batch run once; early signals in `sft/signals.jsonl`
6. `pairs.jsonl` K critiques per step sampled from the SFT model by the runtime, paired agree/disagree
7. `dpo/`        DPO on those pairs, against the frozen SFT model
8. `rprm-demo.gguf` the DPO model converted and quantized (with `base.gguf`, `sft.gguf` kept for evaluation)

A stage that finished is recorded in `stages.json` and skipped by a rerun, so a stopped run resumes at
the stage it was in (the seed and pairs stages also keep what they wrote before the stop). The same seed
and settings give the same data, tokenizer and initial weights; training is deterministic on one machine
with the same thread count (floating-point sums depend on it).
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rprm_lite.config import PROMPT_STYLES
from rprm_lite.errors import InputError
from rprm_lite.training.jobconfig import JobConfig, option

STATE_FILE = "stages.json"
SFT_DATA = "sft-data.jsonl"
ADDABLE = ("evaluate",)  # settings a rerun may change: they add a stage and change none that ran
DEMO_FILE = "rprm-demo.gguf"
DESCRIPTION = ("rprm-lite demo R-PRM: a {params} Qwen2 trained by rprm-lite's recipe on synthetic arithmetic word "
               "problems only; not a substitute for R-PRM-7B")


@dataclass(frozen=True, kw_only=True)
class RecipeConfig(JobConfig):
    """Every setting of the recipe; the defaults make the shipped demo model."""

    out: str = option(help="Working folder: every stage's output, and the final rprm-demo.gguf.")
    seed: int = option(0, help="Seed of every stage (data, tokenizer corpus, initial weights, sampling).")
    train: int = option(16000, help="Synthetic training problems.")
    train_error_share: float = option(0.8, help="Share of training problems with an injected error.")
    dev: int = option(200, help="Synthetic dev problems.")
    test: int = option(300, help="Synthetic test problems (the reported F1).")
    vocab_size: int = option(1024, help="Byte-level BPE tokens learned (plus ChatML specials).")
    hidden: int = option(256, help="Model width.")
    layers: int = option(4, help="Transformer blocks.")
    heads: int = option(4, help="Attention heads.")
    kv_heads: int = option(2, help="Key-value heads (grouped-query attention, as in Qwen2).")
    intermediate: int = option(768, help="MLP width.")
    no_share: float = option(0.45, help="Share of No verdicts in the SFT data (Yes critiques are sampled down).")
    drill_steps: int = option(100, help="Steps of the arithmetic drill before SFT (0: none).")
    short_steps: int = option(600, help="Steps on the SFT examples without the instruction text, before SFT.")
    context: int = option(1024, help="Context length the model is trained for (prompt plus critique).")
    teacher_wrong_share: float = option(0.1, help="Share of teacher critiques that are wrong (the filter drops them).")
    sft_learning_rate: float = option(2e-3, help="SFT peak learning rate (from scratch, so far above the paper's).")
    sft_epochs: float = option(1.0, help="SFT passes over the balanced critiques.")
    sft_max_steps: int = option(400, help="Stop SFT after this many optimizer steps (-1: as the epochs take).")
    precision: str = option("bf16", help="bf16 (autocast, fp32 master weights; fast on CPUs with AVX512-BF16/AMX "
                                         "and on GPUs) or fp32.")
    signals_every: int = option(50, help="SFT steps between teacher-forced digit and verdict accuracies on dev.")
    greedy_every: int = option(200, help="SFT steps between greedy F1 measurements on dev problems (0: none).")
    greedy_problems: int = option(30, help="Dev problems scored for the greedy F1 signal.")
    device: str = option("auto", help="auto (a GPU when there is one), cpu or cuda; cuda also trains longer.")
    cuda_scale: float = option(3.0, help="On cuda: SFT epochs and pair problems are multiplied by this.")
    batch_size: int = option(32, help="Examples per optimizer step (SFT; DPO uses half as many pairs).")
    micro_batch_size: int = option(32, help="Examples per forward pass (SFT; the shared prefix runs once per pass).")
    pair_problems: int = option(400, help="Training problems whose steps are sampled for DPO pairs.")
    pair_k: int = option(8, help="Critiques sampled per step for pairs.")
    pair_temperature: float = option(0.95, help="Sampling temperature for pairs.")
    dpo_learning_rate: float = option(1e-4, help="DPO peak learning rate.")
    dpo_beta: float = option(0.1, help="DPO beta.")
    dpo_epochs: float = option(2.0, help="DPO passes over the pairs.")
    dpo_max_steps: int = option(60, help="Stop DPO after this many optimizer steps (-1: as the epochs take).")
    max_tokens: int = option(256, help="Longest critique when sampling (and the model's default).")
    prompt_style: str = option("r-prm-eval", help="Prompt the model is trained on and scored with.")
    quant: str = option("Q8_0", help="llama.cpp quantization of the shipped file.")
    evaluate: bool = option(False, help="Also measure F1 on the test split: base, SFT and DPO at K=1 and K=10.")
    eval_k: int = option(10, help="K of the sampled evaluation (K=1 is greedy).")

    def problems(self) -> Iterator[str]:
        yield from self.at_least(train=1, test=1, vocab_size=300, hidden=16, layers=1, heads=1, kv_heads=1,
                                 intermediate=16, context=256, batch_size=1, micro_batch_size=1,
                                 pair_problems=1, pair_k=2, max_tokens=16, eval_k=1)
        if self.hidden % self.heads or self.heads % self.kv_heads:
            yield f"hidden ({self.hidden}) must divide by heads ({self.heads}), and heads by kv-heads ({self.kv_heads})"
        if not 0 <= self.teacher_wrong_share < 1:
            yield f"teacher-wrong-share must be in [0, 1), got {self.teacher_wrong_share}"
        for name in ("train_error_share", "no_share"):
            if not 0 <= getattr(self, name) <= 1:
                yield f"{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}"
        yield from self.one_of("device", ("auto", "cpu", "cuda"))
        yield from self.one_of("precision", ("bf16", "fp32"))
        yield from self.one_of("prompt_style", PROMPT_STYLES)


class Recipe:
    """Runs the stages in order; `stages.json` in the working folder remembers the finished ones."""

    def __init__(self, config: RecipeConfig, *, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = Path(config.out)
        self.log = log
        self.state_path = self.out / STATE_FILE
        self.state = self._read_state()

    def path(self, name: str) -> Path:
        return self.out / name

    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        stages: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("data", self.data), ("base", self.base), ("seed", self.seed), ("drill", self.drill), ("short", self.short),
            ("sft", self.sft),
            ("pairs", self.pairs), ("dpo", self.dpo), ("export", self.export)]
        if self.config.evaluate:
            stages.append(("evaluate", self.evaluation))
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

    # -- stages -----------------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        from rprm_lite.training.synthetic import SyntheticConfig, write_dataset

        c = self.config
        written = write_dataset(SyntheticConfig(out=str(self.path("data")), train=c.train, dev=c.dev,
                                                test=c.test, seed=c.seed, train_error_share=c.train_error_share))
        return {"files": {k: str(v) for k, v in written.items()}}

    def base(self) -> dict[str, Any]:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        from rprm_lite.convert.random_tokenizer import train_byte_level_bpe

        c = self.config
        tokenizer = train_byte_level_bpe(tokenizer_corpus(self.path("data") / "train.jsonl", c.prompt_style),
                                         vocab_size=c.vocab_size)
        folder = fresh_folder(self.path("base"))
        tokenizer.write(folder)
        torch.manual_seed(c.seed)
        model = Qwen2ForCausalLM(Qwen2Config(
            vocab_size=tokenizer.vocab_size, hidden_size=c.hidden, intermediate_size=c.intermediate,
            num_hidden_layers=c.layers, num_attention_heads=c.heads, num_key_value_heads=c.kv_heads,
            max_position_embeddings=c.context, rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, use_sliding_window=False))
        model.save_pretrained(folder)
        return {"parameters": sum(p.numel() for p in model.parameters()), "vocab_size": tokenizer.vocab_size}

    def seed(self) -> dict[str, Any]:
        from rprm_lite.training.seed import SeedConfig, balance_verdicts, build_seed_data
        from rprm_lite.training.synthetic_teacher import SyntheticTeacher

        c = self.config
        out = self.path("seed.jsonl")  # a stopped stage resumes: build_seed_data skips what is in the file
        teacher = SyntheticTeacher(seed=c.seed, wrong_share=c.teacher_wrong_share)
        report = build_seed_data(SeedConfig(solutions=str(self.path("data") / "train.jsonl"), teacher=teacher.name,
                                            out=str(out), seed=c.seed), teacher=teacher)
        balanced = balance_verdicts(out, self.path(SFT_DATA), no_share=c.no_share, seed=c.seed)
        return {"kept": report.kept, "dropped": dict(report.dropped), "balanced": balanced}

    def drill(self) -> dict[str, Any]:
        from rprm_lite.training.curriculum import DrillConfig, train_drill

        folder = fresh_folder(self.path("drill"))
        if not self.config.drill_steps:
            shutil.copytree(self.path("base"), folder, dirs_exist_ok=True)
            return {"steps": 0}
        return train_drill(DrillConfig(model=str(self.path("base")), out=str(folder), steps=self.config.drill_steps,
                                       seed=self.config.seed, device=self.device(),
                                       bf16=self.config.precision == "bf16"), log=self.log)

    def short(self) -> dict[str, Any]:
        from rprm_lite.prompt import render
        from rprm_lite.training.checkpoint import load_tokenizer
        from rprm_lite.training.curriculum import DrillConfig, train_short_prompts
        from rprm_lite.training.data_files import read_critiques
        from rprm_lite.training.tokens import PromptTokenizer

        c = self.config
        folder = fresh_folder(self.path("short"))
        if not c.short_steps:
            shutil.copytree(self.path("drill"), folder, dirs_exist_ok=True)
            return {"steps": 0}
        encoder = PromptTokenizer(load_tokenizer(str(self.path("drill"))))
        records = sorted(read_critiques(self.path(SFT_DATA)), key=lambda record: record.key)
        examples = [encoder.example(render(r.solution, r.index, c.prompt_style), r.critique) for r in records]
        scale = c.cuda_scale if self.device() == "cuda" else 1.0
        return train_short_prompts(DrillConfig(model=str(self.path("drill")), out=str(folder),
                                               steps=round(c.short_steps * scale), batch_size=c.batch_size,
                                               learning_rate=c.sft_learning_rate, seed=c.seed, device=self.device(),
                                               bf16=c.precision == "bf16"), examples, log=self.log)

    def sft(self) -> dict[str, Any]:
        from rprm_lite.training.sft import train_sft
        from rprm_lite.training.train_config import SFTRunConfig

        c = self.config
        out = fresh_folder(self.path("sft"))
        scale = c.cuda_scale if self.device() == "cuda" else 1.0
        run = SFTRunConfig(
            model=str(self.path("short")), data=str(self.path(SFT_DATA)), out=str(out),
            prompt_style=c.prompt_style, learning_rate=c.sft_learning_rate, batch_size=c.batch_size,
            micro_batch_size=c.micro_batch_size, epochs=c.sft_epochs * scale, warmup_ratio=0.05, max_length=c.context,
            max_steps=round(c.sft_max_steps * scale) if c.sft_max_steps > 0 else -1, seed=c.seed, logging_steps=10,
            precision=c.precision, shared_prefix=True)
        signals = self.signals_callback(str(out))
        summary = train_sft(run, callbacks=[signals])
        return summary.to_dict() | {"signals": signals.history[-1], "signals_file": str(signals.path)}

    def signals_callback(self, out: str) -> Any:
        """Teacher-forced digit and verdict accuracy on 64 dev critiques; greedy dev F1 every `greedy_every`."""
        from rprm_lite.prompt import render
        from rprm_lite.training.checkpoint import load_tokenizer
        from rprm_lite.training.signals import SignalsCallback, signal_examples
        from rprm_lite.training.synthetic_problems import read_problems
        from rprm_lite.training.synthetic_teacher import critique
        from rprm_lite.training.tokens import PromptTokenizer

        c = self.config
        tokenizer = load_tokenizer(str(self.path("base")))
        encoder = PromptTokenizer(tokenizer)
        dev = read_problems(self.path("data") / "dev" / "gsm8k.json")
        steps = [(p, i) for p in dev for i, label in enumerate(p.step_labels()) if label is not None]
        random.Random(c.seed).shuffle(steps)
        examples = [encoder.example(render(p.solution(), i, c.prompt_style), critique(p, i, rng=random.Random(0)))
                    for p, i in steps[:64]]
        return SignalsCallback(signal_examples(examples, tokenizer), out, every=c.signals_every,
                               extra=self.greedy_signal, extra_every=c.greedy_every, log=self.log)

    def greedy_signal(self, model: Any, step: int) -> dict[str, Any]:
        """Greedy F1 of the model as it is now, on the first `greedy_problems` dev problems, through the runtime."""
        from rprm_lite.demo_model.evaluation import evaluate_processbench
        from rprm_lite.training.checkpoint import export_model, load_tokenizer

        folder = fresh_folder(self.path("signals") / "checkpoint")
        import torch

        export_model(model, load_tokenizer(str(self.path("base"))), str(folder), dtype=torch.float32)
        gguf = self.path("signals") / "model.gguf"
        self.to_gguf(str(folder.relative_to(self.out)), gguf)
        data = fresh_folder(self.path("signals") / "dev")
        items = json.loads((self.path("data") / "dev" / "gsm8k.json").read_text(encoding="utf-8"))
        (data / "gsm8k.json").write_text(json.dumps(items[:self.config.greedy_problems]), encoding="utf-8")
        result = evaluate_processbench(gguf, data, fresh_folder(self.path("signals") / f"step-{step}"), k=1,
                                       seed=self.config.seed, max_tokens=self.config.max_tokens)
        model.train()
        return {"greedy_dev_f1": round(result["f1"], 1), "greedy_dev_error_acc": round(result["error_acc"], 1),
                "greedy_dev_correct_acc": round(result["correct_acc"], 1)}

    def device(self) -> str:
        if self.config.device != "auto":
            return self.config.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def pairs(self) -> dict[str, Any]:
        from rprm_lite.training.pairs import PairsConfig, build_pairs

        c = self.config
        self.to_gguf("sft", self.path("sft.gguf"))
        solutions = self.path("pair-solutions.jsonl")
        lines = (self.path("data") / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        scale = c.cuda_scale if self.device() == "cuda" else 1.0
        solutions.write_text("".join(lines[:round(c.pair_problems * scale)]), encoding="utf-8")
        out = self.path("pairs.jsonl")  # a stopped stage resumes: build_pairs skips the steps already there
        report = build_pairs(PairsConfig(model=str(self.path("sft.gguf")), solutions=str(solutions), out=str(out),
                                         k=c.pair_k, temperature=c.pair_temperature, max_tokens=c.max_tokens,
                                         seed=c.seed, prompt_style=c.prompt_style))
        if not report.pairs:
            raise InputError(f"sampling the SFT model gave no preference pairs ({report.summary()}); DPO needs "
                             "steps where its critiques disagree: sample more problems or raise the temperature")
        return {"pairs": report.pairs, "steps": dict(report.steps)}

    def dpo(self) -> dict[str, Any]:
        from rprm_lite.training.dpo import train_dpo
        from rprm_lite.training.train_config import DPORunConfig

        c = self.config
        batch = max(c.batch_size // 2, 1)
        summary = train_dpo(DPORunConfig(
            model=str(self.path("sft")), data=str(self.path("pairs.jsonl")), out=str(fresh_folder(self.path("dpo"))),
            prompt_style=c.prompt_style, learning_rate=c.dpo_learning_rate, beta=c.dpo_beta, batch_size=batch,
            micro_batch_size=min(c.micro_batch_size // 2 or 1, batch), epochs=c.dpo_epochs, warmup_ratio=0.05,
            max_steps=c.dpo_max_steps,
            max_length=c.context, seed=c.seed, logging_steps=10, precision=c.precision))
        return summary.to_dict()

    def export(self) -> dict[str, Any]:
        from rprm_lite.model_file import file_sha256

        result = self.to_gguf("dpo", self.path(DEMO_FILE), quant=self.config.quant,
                              description=DESCRIPTION.format(params=self.parameter_text()))
        return {"file": str(result.output), "bytes": result.file_bytes, "sha256": file_sha256(result.output)}

    def evaluation(self) -> dict[str, Any]:
        c = self.config
        self.to_gguf("base", self.path("base.gguf"))
        runs = {"base K=1": ("base.gguf", 1), "SFT K=1": ("sft.gguf", 1), f"SFT K={c.eval_k}": ("sft.gguf", c.eval_k),
                "DPO K=1": (DEMO_FILE, 1), f"DPO K={c.eval_k}": (DEMO_FILE, c.eval_k)}
        results = {}
        from rprm_lite.demo_model.evaluation import evaluate_processbench, folder_name, recipe_report

        for name, (model, k) in runs.items():
            folder = self.path("eval") / folder_name(name)
            results[name] = evaluate_processbench(self.path(model), self.path("data") / "test", folder, k=k,
                                                  seed=c.seed, max_tokens=c.max_tokens)
            self.log(f"  {name}: F1 {results[name]['f1']:.1f}")
        report = self.path("eval") / "report.md"
        report.write_text(recipe_report(self.out, list(runs), c.eval_k), encoding="utf-8")
        return {"processbench_test": results, "report": str(report)}

    # -- helpers ----------------------------------------------------------------------------------
    def to_gguf(self, stage: str, output: Path, *, quant: str | None = None, description: str | None = None) -> Any:
        from rprm_lite.convert.converter import ConvertConfig, convert

        return convert(ConvertConfig(source=str(self.path(stage)), output=output, outtype="f32", quant=quant,
                                     force=True, prompt_style=self.config.prompt_style, description=description,
                                     max_tokens=self.config.max_tokens))

    def parameter_text(self) -> str:
        params = self.state["stages"]["base"]["parameters"]
        return f"{params / 1e6:.1f}M-parameter"

    def _read_state(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            return {"config": self.config.to_dict(), "stages": {}}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.state_path}: unreadable ({exc}); delete it to start the recipe over") from None
        before = state.get("config", {})
        changed = sorted(k for k, v in self.config.to_dict().items() if before.get(k) != v and k not in ADDABLE)
        if changed:
            raise InputError(f"{self.out} holds a recipe run with other settings ({', '.join(changed)}); "
                             "use another --out, or delete the folder to start over")
        state["config"] = self.config.to_dict()
        return state

    def _write_state(self) -> None:
        temp = self.state_path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.state, indent=2) + "\n", encoding="utf-8")
        temp.replace(self.state_path)


def tokenizer_corpus(train_file: Path, prompt_style: str) -> Iterator[str]:
    """What the model will read and write: the prompt template, the problems and honest critiques."""
    from rprm_lite import metadata
    from rprm_lite.prompt import VERDICT_PHRASE, template
    from rprm_lite.training.synthetic_problems import read_problems
    from rprm_lite.training.synthetic_teacher import critique

    yield from ["".join(template(prompt_style))] * 100  # every word of the prompt becomes one token
    for verdict in (metadata.YES_TEXT, metadata.NO_TEXT):  # both verdicts must become single tokens
        yield from [f"Verification: {VERDICT_PHRASE}{verdict}"] * 1000
    for problem in read_problems(train_file):
        yield problem.question
        for index, (step, label) in enumerate(zip(problem.steps, problem.step_labels(), strict=True)):
            yield step.text
            if label is not None:
                yield critique(problem, index, rng=random.Random(index))


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
        print(f"model: {state['stages']['export']['file']}")
        return 0

    return run_program(run, interrupted="stopped; finished stages are kept: rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
