"""The checkpoint's byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json) as GGUF vocabulary.

Token types follow llama.cpp's reference converter: special added tokens (and added tokens that look
special, `<|...|>`) are CONTROL, other added tokens USER_DEFINED, ids past the tokenizer's end up to
the model's vocabulary size are `[PAD<i>]` UNUSED. Merges, bos/eos/pad ids, add-bos and the chat
template come from gguf-py's own `SpecialVocab`. The pre-tokenizer's llama.cpp name is found as
llama.cpp's own converter finds it (`pre_tokenizers.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf

from rprm_lite import metadata

from . import pre_tokenizers
from .errors import CheckpointError, ConversionError
from .json_files import json_type, object_or_empty, read_json_file, short_repr

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.json"

# normalizers llama.cpp reproduces (NFC: llama.cpp does not normalize; text that is already NFC, which is
# nearly all text, tokenizes the same)
ACCEPTED_NORMALIZERS = (None, "NFC")


@dataclass(frozen=True)
class Vocabulary:
    tokens: list[str]
    token_types: list[int]
    pre: pre_tokenizers.PreTokenizer
    special: gguf.SpecialVocab
    yes_token_id: int
    no_token_id: int
    add_prefix_space: bool | None = None  # tokenizer_config.json's flag, when it has one

    def write(self, writer: gguf.GGUFWriter, *, add_space_prefix: bool = False) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(self.pre.name)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.token_types)
        self.special.add_to_gguf(writer, quiet=True)
        # write both flags even when the tokenizer is silent, so llama.cpp cannot guess differently
        if "bos" not in self.special.add_special_token:
            writer.add_add_bos_token(False)
        if "eos" not in self.special.add_special_token:
            writer.add_add_eos_token(False)
        if add_space_prefix and self.add_prefix_space is not None:
            writer.add_add_space_prefix(self.add_prefix_space)


def read_tokenizer_json(folder: Path) -> dict[str, Any]:
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        legacy = [name for name in ("vocab.json", "merges.txt", "tokenizer.model")
                  if (folder / name).is_file()]
        hint = (f" (found {', '.join(legacy)}: save a fast tokenizer with "
                "AutoTokenizer.from_pretrained(folder).save_pretrained(folder))") if legacy else ""
        raise CheckpointError(f"{folder}: no {TOKENIZER_FILE}; expected a byte-level BPE tokenizer{hint}")
    return read_json_file(path)


def read_vocabulary(folder: Path, vocab_size: int) -> Vocabulary:
    """Everything llama.cpp needs to tokenize exactly like the checkpoint's tokenizer.json."""
    tokenizer = read_tokenizer_json(folder)
    check_byte_level_bpe(tokenizer)
    tokens, token_types = _token_list(tokenizer, vocab_size)  # our checks first: their messages say more
    hf_tokenizer = load_hf_tokenizer(folder / TOKENIZER_FILE)
    pre = pre_tokenizers.identify(tokenizer, hf_tokenizer.encode(pre_tokenizers.CHECK_TEXT).ids)
    tokenizer_config = _read_optional_json(folder / TOKENIZER_CONFIG_FILE)
    _read_optional_json(folder / CHAT_TEMPLATE_FILE)  # checked here; gguf's SpecialVocab parses it again
    special = _special_vocab(folder, vocab_size)
    if not special.merges:
        raise CheckpointError(f"{folder / TOKENIZER_FILE}: the BPE model has no merges")
    yes_id, no_id = verdict_token_ids(hf_tokenizer)
    flag = tokenizer_config.get("add_prefix_space")
    return Vocabulary(tokens, token_types, pre, special, yes_id, no_id, flag if isinstance(flag, bool) else None)


def _read_optional_json(path: Path) -> dict[str, Any]:
    return read_json_file(path) if path.is_file() else {}


def _special_vocab(folder: Path, vocab_size: int) -> gguf.SpecialVocab:
    """gguf-py's merges, special ids and chat template; its plain parsing of odd values becomes our error."""
    try:
        return gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise CheckpointError(f"{folder}: gguf cannot read the tokenizer files ({type(exc).__name__}: "
                              f"{short_repr(str(exc), 200)})") from None


def check_byte_level_bpe(tokenizer: dict[str, Any]) -> None:
    """Refuse what llama.cpp's byte-level BPE ("gpt2" tokenizer model) cannot reproduce."""
    model = object_or_empty(tokenizer.get("model"), f"{TOKENIZER_FILE}: model")
    if model.get("type") != "BPE":
        raise ConversionError(f"tokenizer.json holds a {model.get('type', 'unknown')} model; expected "
                              "byte-level BPE (as in Qwen2, Llama 3 and SmolLM)")
    normalizer = object_or_empty(tokenizer.get("normalizer"), f"{TOKENIZER_FILE}: normalizer").get("type")
    kinds = [step.get("type") for step in _pre_tokenizer_steps(tokenizer.get("pre_tokenizer"))]
    if model.get("byte_fallback") or "Metaspace" in kinds or normalizer == "Sequence":
        raise ConversionError("tokenizer.json is a SentencePiece-style BPE (byte fallback, '▁' for spaces, as in "
                              "Llama 2 and Mistral); llama.cpp runs it as a 'llama' vocabulary with scores, which "
                              "this converter does not write: convert it with llama.cpp's convert_hf_to_gguf.py")
    if normalizer not in ACCEPTED_NORMALIZERS:
        raise ConversionError(f"tokenizer.json uses a {normalizer} normalizer; expected none or NFC, "
                              "which llama.cpp's byte-level BPE reproduces")
    if "ByteLevel" not in kinds:
        raise ConversionError(f"tokenizer.json is BPE but not byte-level (pre-tokenizers: "
                              f"{kinds or 'none'}); expected a ByteLevel pre-tokenizer as in Qwen2 and Llama 3")


def _pre_tokenizer_steps(pre: object) -> list[dict[str, Any]]:
    pre = object_or_empty(pre, f"{TOKENIZER_FILE}: pre_tokenizer")
    if pre.get("type") != "Sequence":
        return [pre] if pre else []
    steps = pre.get("pretokenizers") or []
    if not isinstance(steps, list):
        raise CheckpointError(f"{TOKENIZER_FILE}: expected 'pretokenizers' to be an array, got {json_type(steps)}")
    return [object_or_empty(step, f"{TOKENIZER_FILE}: pre-tokenizer") for step in steps]


def _token_list(tokenizer: dict[str, Any], vocab_size: int) -> tuple[list[str], list[int]]:
    by_id: dict[int, tuple[str, int]] = {}
    for text, token_id in object_or_empty(tokenizer["model"].get("vocab"), f"{TOKENIZER_FILE}: vocab").items():
        by_id[_token_id(token_id, text)] = (text, gguf.TokenType.NORMAL)
    for added in _added_tokens(tokenizer):
        text = added.get("content")
        special = added.get("special", False) or looks_special(text)
        by_id[_token_id(added.get("id"), text)] = (text, gguf.TokenType.CONTROL if special
                                                   else gguf.TokenType.USER_DEFINED)
    if not by_id:
        raise CheckpointError("tokenizer.json has an empty vocabulary")
    largest = max(by_id)
    if largest >= vocab_size:
        raise CheckpointError(f"tokenizer.json has token id {largest} but config.json's vocab_size is "
                              f"{vocab_size}; expected every token id below vocab_size")
    tokens, types = [], []
    for token_id in range(vocab_size):
        text, kind = by_id.get(token_id, (f"[PAD{token_id}]", gguf.TokenType.UNUSED))
        tokens.append(text)
        types.append(int(kind))
    return tokens, types


def _added_tokens(tokenizer: dict[str, Any]) -> list[dict[str, Any]]:
    added_tokens = tokenizer.get("added_tokens") or []
    if not isinstance(added_tokens, list):
        raise CheckpointError(f"{TOKENIZER_FILE}: expected 'added_tokens' to be an array, got "
                              f"{json_type(added_tokens)}")
    checked = [object_or_empty(added, f"{TOKENIZER_FILE}: added token") for added in added_tokens]
    for added in checked:
        if not isinstance(added.get("content"), str):
            raise CheckpointError(f"{TOKENIZER_FILE}: expected each added token's 'content' to be a string, "
                                  f"got {short_repr(added.get('content'))}")
    return checked


def _token_id(value: object, text: str) -> int:
    if type(value) is not int or value < 0:
        raise CheckpointError(f"{TOKENIZER_FILE}: token {short_repr(text)}: expected a non-negative integer id, "
                              f"got {short_repr(value)}")
    return value


def looks_special(text: str) -> bool:
    """Added tokens that some models forget to mark special (llama.cpp's reference rule)."""
    return ((text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<｜") and text.endswith("｜>"))
            or (text.startswith("<unused") and text.endswith(">"))
            or text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]"))


def load_hf_tokenizer(tokenizer_path: Path) -> Tokenizer:
    """tokenizer.json in the tokenizers library (its reference implementation)."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(tokenizer_path))
    except Exception as exc:  # tokenizers raises plain Exception for unreadable files
        raise CheckpointError(f"{tokenizer_path}: the tokenizers library cannot load it ({exc})") from None


def verdict_token_ids(tokenizer: Tokenizer) -> tuple[int, int]:
    """The single tokens of " Yes" and " No", which R-PRM's score is read from."""
    ids = []
    for text in (metadata.YES_TEXT, metadata.NO_TEXT):
        encoded = tokenizer.encode(text, add_special_tokens=False).ids
        if len(encoded) != 1:
            raise ConversionError(f"tokenizer: expected {text!r} to be a single token, got {len(encoded)} "
                                  f"tokens {encoded}; R-PRM reads its score from these two tokens")
        ids.append(encoded[0])
    return ids[0], ids[1]
