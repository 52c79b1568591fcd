"""Tokenizers for random-weight test checkpoints, written as Hugging Face tokenizer.json files.

- "qwen2": the real Qwen2/Qwen2.5 tokenizer, rebuilt from the vocabulary-only GGUF in the shared
  folder (tokens, merges, the Qwen2 pre-tokenizer regex, ChatML special tokens), plus the Qwen2.5
  added tokens. " Yes" = 7414, " No" = 2308.
- "small-bpe": a byte-level BPE of about a thousand tokens trained on a built-in corpus (the R-PRM
  template text, digits, arithmetic, verdict lines), with the same pre-tokenizer and ChatML specials.
  Needs no shared file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from rprm_lite import metadata
from rprm_lite.prompt import CHATML_WRAPPER_FILE, EVAL_TEMPLATE_FILE, USER_TEMPLATE_FILE, load_template_file

from .errors import ConversionError
from .gguf_file import read_gguf_metadata
from .pre_tokenizers import QWEN2_PATTERN

TOKENIZERS = ("qwen2", "small-bpe")
# the project's shared folder sits beside the repository root (../shared)
DEFAULT_QWEN2_VOCAB = Path(__file__).resolve().parents[2] / "shared" / "vocab" / "ggml-vocab-qwen2.gguf"
QWEN2_VOCAB_SIZE = 151936  # the model's embedding rows (Qwen2.5), more than the tokenizer's tokens
CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Qwen2.5's added tokens after the three ChatML ones (id 151646 on), with their `special` flag
QWEN25_ADDED = (
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMALL_BPE_VOCAB = 1024
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}


@dataclass(frozen=True)
class TokenizerFiles:
    """What a checkpoint folder needs: tokenizer.json, tokenizer_config.json and config.json's token ids."""

    tokenizer_json: dict[str, Any]
    tokenizer_config: dict[str, Any]
    vocab_size: int  # the model's embedding rows (>= number of tokens)
    bos_token_id: int
    eos_token_id: int

    def write(self, folder: Path) -> None:
        for name, content, indent in (("tokenizer.json", self.tokenizer_json, None),
                                      ("tokenizer_config.json", self.tokenizer_config, 2)):
            (folder / name).write_text(json.dumps(content, indent=indent, ensure_ascii=False), encoding="utf-8")


def build_tokenizer(kind: str, *, qwen2_vocab: Path | None = None) -> TokenizerFiles:
    if kind == "qwen2":
        return qwen2_tokenizer(qwen2_vocab or DEFAULT_QWEN2_VOCAB)
    if kind == "small-bpe":
        return small_bpe_tokenizer()
    raise ConversionError(f"unknown tokenizer {kind!r}; choose one of {', '.join(TOKENIZERS)}")


@lru_cache(maxsize=4)
def qwen2_tokenizer(vocab_gguf: Path) -> TokenizerFiles:
    """The real Qwen2.5 tokenizer, rebuilt from a vocabulary-only GGUF."""
    if not vocab_gguf.is_file():
        raise ConversionError(f"{vocab_gguf}: not found; the 'qwen2' tokenizer is rebuilt from the shared "
                              "vocabulary file ggml-vocab-qwen2.gguf. Pass its path, or use "
                              "tokenizer='small-bpe', which needs no file")
    tokens, types, merges = _read_vocab_gguf(vocab_gguf)
    vocab = {text: i for i, (text, kind) in enumerate(zip(tokens, types, strict=True)) if kind == 1}  # NORMAL tokens
    first_added = len(vocab)
    specials = [(text, True) for text in CHATML_SPECIALS] + list(QWEN25_ADDED)
    added = [_added_token(first_added + i, text, special) for i, (text, special) in enumerate(specials)]
    if tokens[first_added:first_added + 3] != list(CHATML_SPECIALS):
        raise ConversionError(f"{vocab_gguf}: expected the ChatML tokens at ids {first_added}-"
                              f"{first_added + 2}, got {tokens[first_added:first_added + 3]}; is this the Qwen2 "
                              "vocabulary?")
    tokenizer_json = _byte_level_bpe_json(vocab, merges, added)
    config = _tokenizer_config(added, eos="<|im_end|>", pad="<|endoftext|>", tokenizer_class="Qwen2Tokenizer")
    return TokenizerFiles(tokenizer_json, config, QWEN2_VOCAB_SIZE,
                          bos_token_id=first_added, eos_token_id=first_added + 2)


def _read_vocab_gguf(path: Path) -> tuple[list[str], list[int], list[str]]:
    fields = read_gguf_metadata(path)
    return tuple(fields[f"tokenizer.ggml.{key}"] for key in ("tokens", "token_type", "merges"))


def _added_token(token_id: int, text: str, special: bool) -> dict[str, Any]:
    return {"id": token_id, "content": text, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


def _byte_level_bpe_json(vocab: dict[str, int], merges: list[str],
                         added: list[dict[str, Any]]) -> dict[str, Any]:
    """tokenizer.json for a Qwen2-style byte-level BPE (NFC, Qwen2 split regex, ByteLevel without regex)."""
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
            BYTE_LEVEL]},
        "post_processor": BYTE_LEVEL, "decoder": BYTE_LEVEL,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def _tokenizer_config(added: list[dict[str, Any]], *, eos: str, pad: str,
                      tokenizer_class: str) -> dict[str, Any]:
    decoder = {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word",
                                                 "special")} for t in added}
    return {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": [t["content"] for t in added if t["special"] and t["content"] != eos],
        "bos_token": None, "chat_template": CHATML_TEMPLATE, "clean_up_tokenization_spaces": False,
        "eos_token": eos, "errors": "replace", "model_max_length": 131072, "pad_token": pad,
        "split_special_tokens": False, "tokenizer_class": tokenizer_class, "unk_token": None,
    }


def training_corpus() -> list[str]:
    """Built-in text for the small tokenizer: the R-PRM templates, arithmetic and verdict lines."""
    texts = [load_template_file(name)
             for name in (EVAL_TEMPLATE_FILE, USER_TEMPLATE_FILE, CHATML_WRAPPER_FILE)]
    texts += [f"Step {i}: {a} + {b} = {a + b}, so {a} * {b} = {a * b}." for i, (a, b) in
              enumerate(((3, 4), (12, 7), (25, 16), (100, 48), (7, 9), (64, 2), (15, 15), (81, 3)), start=1)]
    texts += ["0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 1/2 -5 x^2 \\frac{a}{b} \\sqrt{2} $x$ = ( ) [ ] { }"]
    verdicts = [f"Verification: Is the step correct (Yes/No)?{metadata.YES_TEXT}",
                f"Verification: Is the step correct (Yes/No)?{metadata.NO_TEXT}",
                "Based on your analysis. Is the answer correct (Yes/No)? Yes", "Conclusion: No error. Yes No"]
    return texts + verdicts * 20


def small_bpe_tokenizer(vocab_size: int = SMALL_BPE_VOCAB) -> TokenizerFiles:
    """Train a small byte-level BPE (deterministic) whose " Yes" and " No" are single tokens."""
    return train_byte_level_bpe(training_corpus(), vocab_size=vocab_size)


def train_byte_level_bpe(corpus: Iterable[str], *, vocab_size: int) -> TokenizerFiles:
    """A Qwen2-style byte-level BPE trained on `corpus` (deterministic), with the ChatML specials.

    It keeps Qwen2's pre-tokenizer (llama.cpp knows it, and it splits digits one by one), so a model
    trained with it runs in the runtime like the real one. " Yes" and " No" must be single tokens.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.add_special_tokens(list(CHATML_SPECIALS))
    data = json.loads(tokenizer.to_str())
    for text in (metadata.YES_TEXT, metadata.NO_TEXT):
        if len(tokenizer.encode(text).ids) != 1:
            raise ConversionError(f"byte-level BPE: {text!r} did not become a single token; the training text "
                                  "must contain verdict lines")
    added = data["added_tokens"]
    n_tokens = max(t["id"] for t in added) + 1
    config = _tokenizer_config(added, eos="<|im_end|>", pad="<|endoftext|>",
                               tokenizer_class="PreTrainedTokenizerFast")
    # round the embedding up like real models do, so the GGUF needs [PAD] tokens
    return TokenizerFiles(data, config, vocab_size=-(-n_tokens // 64) * 64 + 64,
                          bos_token_id=added[0]["id"], eos_token_id=added[2]["id"])
