"""llama.cpp's tokenization of the converted GGUF equals the Hugging Face tokenizer's, token for token."""

from __future__ import annotations

import json

import pytest

from rprm_lite.convert.converter import ConvertConfig, convert
from rprm_lite.prompt import render_text
from rprm_lite.solution import Solution

llama_cpp = pytest.importorskip("llama_cpp")
transformers = pytest.importorskip("transformers")

CHATML_TEXT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nIs 2 + 2 = 4?"
               "<|im_end|>\n<|im_start|>assistant\nVerification: Is the step correct (Yes/No)? Yes<|im_end|>"
               "<|endoftext|>")


@pytest.fixture(scope="module")
def qwen2_pair(tmp_path_factory, qwen2_checkpoint):
    """(llama.cpp vocabulary of the converted GGUF, the checkpoint's Hugging Face tokenizer)."""
    out = tmp_path_factory.mktemp("tok") / "qwen2.gguf"
    convert(ConvertConfig(source=str(qwen2_checkpoint), output=out, outtype="f16"))
    vocab = llama_cpp.Llama(str(out), vocab_only=True, verbose=False)
    return vocab, transformers.AutoTokenizer.from_pretrained(qwen2_checkpoint)


def processbench_texts(folder) -> list[str]:
    texts = []
    for path in sorted(folder.glob("*.json")):
        for item in json.loads(path.read_text(encoding="utf-8")):
            texts.append(item["problem"])
            texts.extend(item["steps"])
    return texts


def llama_ids(vocab, text: str, *, special: bool) -> list[int]:
    return vocab.tokenize(text.encode("utf-8"), add_bos=False, special=special)


def test_every_processbench_problem_and_step_tokenizes_identically(qwen2_pair, processbench_dir):
    vocab, hf = qwen2_pair
    texts = processbench_texts(processbench_dir)
    assert len(texts) > 29000  # 3,400 problems and their ~25,700 steps: LaTeX, unicode, digits
    expected = hf(texts, add_special_tokens=False)["input_ids"]
    mismatches = [(text, ids) for text, ids in zip(texts, expected, strict=True)
                  if llama_ids(vocab, text, special=False) != ids]
    assert not mismatches, f"{len(mismatches)} texts differ, first: {mismatches[0][0][:200]!r}"


def test_rendered_prompts_tokenize_identically(qwen2_pair, processbench_dir):
    vocab, hf = qwen2_pair
    item = json.loads((processbench_dir / "gsm8k.json").read_text(encoding="utf-8"))[0]
    solution = Solution.create(item["problem"], item["steps"])
    for style in ("r-prm-eval", "chatml"):
        text = render_text(solution, 1, style)
        assert llama_ids(vocab, text, special=True) == hf(text, add_special_tokens=False)["input_ids"]


def test_special_tokens_are_control_tokens_parsed_only_when_asked(qwen2_pair):
    vocab, hf = qwen2_pair
    parsed = llama_ids(vocab, CHATML_TEXT, special=True)
    assert parsed == hf(CHATML_TEXT, add_special_tokens=False)["input_ids"]
    assert parsed[0] == 151644 and parsed[-2:] == [151645, 151643]
    as_text = llama_ids(vocab, CHATML_TEXT, special=False)
    assert 151644 not in as_text and 151645 not in as_text
    assert as_text == hf(CHATML_TEXT, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def test_no_bos_is_added_as_in_the_hugging_face_tokenizer(qwen2_pair):
    vocab, hf = qwen2_pair
    text = "Step 1: 48 / 2 = 24."
    assert vocab.tokenize(text.encode(), add_bos=True, special=False) == hf(text)["input_ids"]


def test_small_tokenizer_round_trips_through_llama_cpp(tmp_path, small_checkpoint):
    out = tmp_path / "small.gguf"
    convert(ConvertConfig(source=str(small_checkpoint), output=out, outtype="f32"))
    vocab = llama_cpp.Llama(str(out), vocab_only=True, verbose=False)
    hf = transformers.AutoTokenizer.from_pretrained(small_checkpoint)
    for text in ("Question: What is $\\frac{3}{4}$ of 128?", "Ünïcödé √ ≤ ∞ 日本 🙂", "  spaces\n\n\tand tabs  ",
                 CHATML_TEXT):
        assert llama_ids(vocab, text, special=True) == hf(text, add_special_tokens=False)["input_ids"]
        assert vocab.detokenize(llama_ids(vocab, text, special=False)).decode() == text
