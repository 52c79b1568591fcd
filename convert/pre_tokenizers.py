"""llama.cpp's name for a byte-level BPE tokenizer's pre-tokenizer (`tokenizer.ggml.pre`), found as llama.cpp does.

llama.cpp does not read a tokenizer.json's pre-tokenizer: it splits text with its own code, chosen by
name. Its converter (`get_vocab_base_pre` in convert_hf_to_gguf.py) finds the name by tokenizing a
fixed check text with the checkpoint's tokenizer and looking the sha256 of the token ids up in a table
of published tokenizers. We do the same, with the part of that table below (the tokenizers that come
with the architectures we convert), and the same check text.

A tokenizer trained here (the demo model's, the tests') has a vocabulary no table knows. It is named by
its definition instead, when that is exactly one llama.cpp implements (`DEFINITIONS`); anything else is
refused with its hash, so no GGUF that llama.cpp would refuse, or split differently, is written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .errors import ConversionError

LLAMA_CPP_SOURCE = ("ggml-org/llama.cpp@0c1e57098 (as vendored in llama-cpp-python 0.3.36): "
                    "conversion/base.py, get_vocab_base_pre")

CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 "
    "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you "
    "sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

# sha256 of str(token ids of CHECK_TEXT) -> (llama.cpp pre-tokenizer name, the tokenizer llama.cpp took it from)
KNOWN_TOKENIZERS: dict[str, tuple[str, str]] = {
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": ("qwen2", "Qwen/Qwen1.5-7B"),
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": ("qwen2", "Qwen/Qwen3-Embedding-0.6B"),
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": ("deepseek-r1-qwen",
                                                                         "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": ("llama-bpe", "meta-llama/Meta-Llama-3-8B"),
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": ("smaug-bpe",
                                                                         "abacusai/Smaug-Llama-3-70B-Instruct"),
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": ("smollm", "HuggingFaceTB/SmolLM-135M"),
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": ("deepseek-llm",
                                                                         "deepseek-ai/deepseek-llm-7b-base"),
    "347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821": ("deepseek-coder",
                                                                         "deepseek-ai/deepseek-coder-6.7b-base"),
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": ("gpt-2", "openai-community/gpt2"),
}

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPLIT_THEN_BYTES = "Split({}) + ByteLevel(no regex)"
# (pre-tokenizer definition, model.ignore_merges) -> the llama.cpp name whose code splits and merges exactly so
# (llama-bpe makes llama.cpp ignore merges, as Llama 3's tokenizer.json asks; smaug-bpe is the same split without)
DEFINITIONS: dict[tuple[str, bool], str] = {
    (_SPLIT_THEN_BYTES.format(QWEN2_PATTERN), False): "qwen2",
    (_SPLIT_THEN_BYTES.format(LLAMA3_PATTERN), True): "llama-bpe",
    (_SPLIT_THEN_BYTES.format(LLAMA3_PATTERN), False): "smaug-bpe",
    ("ByteLevel(GPT-2 regex)", False): "gpt-2",
}


@dataclass(frozen=True)
class PreTokenizer:
    name: str  # tokenizer.ggml.pre
    source: str  # how it was found, for reports: the known tokenizer, or "definition"
    check_hash: str


def check_hash(token_ids: list[int]) -> str:
    """llama.cpp's hash: sha256 of Python's str() of the list of ids."""
    return hashlib.sha256(str(token_ids).encode("utf-8")).hexdigest()


def identify(tokenizer_json: dict[str, Any], check_ids: list[int]) -> PreTokenizer:
    """The pre-tokenizer of a byte-level BPE tokenizer, from its ids for CHECK_TEXT (special tokens added)."""
    digest = check_hash(check_ids)
    if digest in KNOWN_TOKENIZERS:
        name, source = KNOWN_TOKENIZERS[digest]
        return PreTokenizer(name, source, digest)
    definition = describe(tokenizer_json)
    name = DEFINITIONS.get(definition) if definition else None
    if name is None:
        known = sorted({name for name, _ in KNOWN_TOKENIZERS.values()})
        raise ConversionError(
            f"tokenizer.json: unknown pre-tokenizer (check hash {digest}); expected one of the tokenizers of "
            f"{', '.join(known)} (hashes from {LLAMA_CPP_SOURCE}) or a split that llama.cpp implements. If "
            "llama.cpp's convert_hf_to_gguf.py names this hash, add it to KNOWN_TOKENIZERS in "
            "convert/pre_tokenizers.py; otherwise llama.cpp cannot run this tokenizer")
    return PreTokenizer(name, "definition", digest)


def describe(tokenizer_json: dict[str, Any]) -> tuple[str, bool] | None:
    """(a canonical text of the pre-tokenizer, model.ignore_merges), or None for shapes we do not describe."""
    pre = tokenizer_json.get("pre_tokenizer")
    steps = pre.get("pretokenizers") if isinstance(pre, dict) and pre.get("type") == "Sequence" else [pre]
    ignore_merges = bool((tokenizer_json.get("model") or {}).get("ignore_merges", False))
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        return None
    if len(steps) == 1 and _is_byte_level(steps[0], use_regex=True):
        return "ByteLevel(GPT-2 regex)", ignore_merges
    if len(steps) == 2 and _is_byte_level(steps[1], use_regex=False):
        split, pattern = steps[0], steps[0].get("pattern")
        regex = pattern.get("Regex") if isinstance(pattern, dict) else None
        if (split.get("type") == "Split" and isinstance(regex, str) and split.get("behavior") == "Isolated"
                and not split.get("invert", False)):
            return _SPLIT_THEN_BYTES.format(regex), ignore_merges
    return None


def _is_byte_level(step: dict[str, Any], *, use_regex: bool) -> bool:
    return (step.get("type") == "ByteLevel" and step.get("use_regex", True) == use_regex
            and not step.get("add_prefix_space", False))

