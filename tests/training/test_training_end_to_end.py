"""The whole recipe on a tiny model: seed -> SFT -> convert -> pairs (runtime) -> DPO -> convert -> score.

Skips with a reason while the converter or the runtime scorer cannot be imported.
"""

from __future__ import annotations

import json

import pytest
from training_helpers import CRITIQUE, REPLIES, SOLUTIONS, read_jsonl, write_jsonl
from typer.testing import CliRunner

from rprm_lite.training.dpo import train_dpo
from rprm_lite.training.pairs import PairsConfig, build_pairs
from rprm_lite.training.seed_critiques import SeedConfig, build_seed_data
from rprm_lite.training.sft import train_sft
from rprm_lite.training.train_config import DPORunConfig, SFTRunConfig

pytest.importorskip("llama_cpp", reason="the runtime needs llama-cpp-python")
pytest.importorskip("rprm_lite.scoring", reason="the runtime scorer is not written yet")
pytest.importorskip("rprm_lite.commands", reason="the `rprm-lite score` command is not written yet")
converter = pytest.importorskip("rprm_lite.convert.converter", reason="the converter is not written yet")

FAST = {"warmup_ratio": 0.0, "lr_scheduler": "constant", "logging_steps": 5, "batch_size": 2,
        "micro_batch_size": 2}


def to_gguf(folder, output):
    converter.convert(converter.ConvertConfig(source=str(folder), output=output, outtype="f32",
                                              prompt_style="chatml"))
    return output


# One step appears in two solutions with opposite labels (label noise): the teacher agrees with each,
# so SFT sees both verdicts for one prompt and the SFT model is unsure there, which makes pairs.
NOISY = [{"id": f"noisy-{label}", "question": "What is 7 + 8?", "steps": ["7 + 8 = 15."], "label": label}
         for label in (-1, 0)]


def test_seed_sft_pairs_dpo_convert_score(small_model_dir, tmp_path, stub_teacher):
    solutions = write_jsonl(tmp_path / "solutions.jsonl", SOLUTIONS + NOISY)
    yes, no = CRITIQUE.format("Yes"), CRITIQUE.format("No")
    teacher = stub_teacher({**REPLIES, ("What is 7 + 8?", 1): [yes, no]})
    seed = build_seed_data(SeedConfig(solutions=str(solutions), teacher=teacher.url, teacher_model="t",
                                      out=str(tmp_path / "sft.jsonl"), concurrency=1))
    assert seed.kept == 6

    train_sft(SFTRunConfig(model=str(small_model_dir), data=str(tmp_path / "sft.jsonl"), out=str(tmp_path / "sft"),
                           learning_rate=1e-2, max_steps=20, **FAST))
    sft_gguf = to_gguf(tmp_path / "sft", tmp_path / "sft.gguf")

    report = build_pairs(PairsConfig(model=str(sft_gguf), solutions=str(solutions), out=str(tmp_path / "pairs.jsonl"),
                                     k=8, max_tokens=40, temperature=1.0))
    lines = read_jsonl(tmp_path / "pairs.jsonl")
    assert len(lines) == 9 and report.pairs >= 2
    assert {line["id"]: line["outcome"] for line in lines if line["id"].startswith("noisy")} == {
        "noisy--1": "paired", "noisy-0": "paired"}
    samples = [s for line in lines for s in line["samples"]]
    assert all(0 <= s["p_yes"] <= 1 for s in samples)
    # the SFT model learned the critique: many samples reach the verdict phrase on their own
    # (the random base model never does)
    assert sum(s["verdict"] is not None for s in samples) >= 0.5 * len(samples)

    train_dpo(DPORunConfig(model=str(tmp_path / "sft"), data=str(tmp_path / "pairs.jsonl"),
                           out=str(tmp_path / "dpo"), learning_rate=1e-3, max_steps=3, **FAST))
    dpo_gguf = to_gguf(tmp_path / "dpo", tmp_path / "dpo.gguf")

    from rprm_lite.cli import app

    solution = write_jsonl(tmp_path / "one.jsonl", [{"question": "What is 2 + 3?", "steps": ["2 + 3 = 5."]}])
    result = CliRunner().invoke(app, ["score", str(solution), "--model", str(dpo_gguf), "--k", "2",
                                      "--max-tokens", "40", "--prompt-style", "chatml", "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout.strip().splitlines()[-1])
    step = scored["steps"][0]
    assert len(step["p_yes"]) == 2 and 0 <= step["score"] <= 1 and step["verdict"] in ("correct", "wrong")
