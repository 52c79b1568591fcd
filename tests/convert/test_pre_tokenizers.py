"""tokenizer.ggml.pre is found as llama.cpp's converter finds it: the check text's token ids, hashed, in its table."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from rprm_lite.convert.converter import ConvertConfig, convert
from rprm_lite.convert.errors import ConversionError
from rprm_lite.convert.gguf_file import read_gguf_metadata
from rprm_lite.convert.pre_tokenizers import (
    CHECK_TEXT,
    LLAMA3_PATTERN,
    QWEN2_PATTERN,
    PreTokenizer,
    check_hash,
    identify,
)
from rprm_lite.convert.random_model import build_random_checkpoint
from rprm_lite.convert.tokenizer import load_hf_tokenizer

QWEN_HASH = "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea"  # llama.cpp's, for Qwen1.5 and 2.5
BYTES_NO_REGEX = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
GPT2_BYTES = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
DIGITS_THEN_GPT2 = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, GPT2_BYTES]}


def split_then_bytes(pattern: str) -> dict:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}, BYTES_NO_REGEX]}


def check_ids(folder) -> list[int]:
    return load_hf_tokenizer(folder / "tokenizer.json").encode(CHECK_TEXT).ids


def test_the_real_qwen2_tokenizer_has_llama_cpps_hash(tmp_path, qwen2_vocab):
    """The check text is byte for byte llama.cpp's: the Qwen2.5 tokenizer gives the hash in llama.cpp's table."""
    folder = build_random_checkpoint(tmp_path / "ckpt", tokenizer="qwen2", qwen2_vocab=qwen2_vocab)
    ids = check_ids(folder)
    assert check_hash(ids) == QWEN_HASH
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    assert identify(tokenizer, ids) == PreTokenizer("qwen2", "Qwen/Qwen1.5-7B", QWEN_HASH)


def test_a_tokenizer_trained_here_is_named_by_its_split(small_checkpoint):
    tokenizer = json.loads((small_checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
    found = identify(tokenizer, check_ids(small_checkpoint))
    assert (found.name, found.source) == ("qwen2", "definition")
    assert found.check_hash != QWEN_HASH  # its own vocabulary: no table can know it


@pytest.mark.parametrize(("pre_tokenizer", "ignore_merges", "name"), [
    (split_then_bytes(QWEN2_PATTERN), False, "qwen2"),
    (split_then_bytes(LLAMA3_PATTERN), True, "llama-bpe"),  # llama.cpp ignores merges for llama-bpe, as Llama 3 does
    (split_then_bytes(LLAMA3_PATTERN), False, "smaug-bpe"),
    (GPT2_BYTES, False, "gpt-2"),
])
def test_splits_llama_cpp_implements(pre_tokenizer, ignore_merges, name):
    tokenizer = {"pre_tokenizer": pre_tokenizer, "model": {"type": "BPE", "ignore_merges": ignore_merges}}
    assert identify(tokenizer, [1, 2, 3]) == PreTokenizer(name, "definition", check_hash([1, 2, 3]))


@pytest.mark.parametrize("pre_tokenizer", [
    DIGITS_THEN_GPT2,  # SmolLM's split: known only by its hash, since its vocabulary makes it what it is
    split_then_bytes(r"\p{N}{1,2}| ?\p{L}+"),
    {**BYTES_NO_REGEX, "add_prefix_space": True},
    None,
])
def test_other_splits_are_refused_with_the_hash(pre_tokenizer):
    tokenizer = {"pre_tokenizer": pre_tokenizer, "model": {"type": "BPE"}}
    with pytest.raises(ConversionError, match=f"^tokenizer.json: unknown pre-tokenizer \\(check hash "
                                              f"{check_hash([7])}\\); expected one of the tokenizers of "):
        identify(tokenizer, [7])


def test_the_gguf_records_the_name(tmp_path, small_checkpoint):
    out = tmp_path / "m.gguf"
    convert(ConvertConfig(source=str(small_checkpoint), output=out, outtype="f32"))
    assert read_gguf_metadata(out)["tokenizer.ggml.pre"] == "qwen2"


def test_an_unknown_tokenizer_is_one_error_line_and_no_file(tmp_path, small_checkpoint):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for path in small_checkpoint.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["pre_tokenizer"] = DIGITS_THEN_GPT2
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "convert", str(folder), "-o",
                           str(tmp_path / "m.gguf")], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (5, "")
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert re.match(r"error: tokenizer.json: unknown pre-tokenizer \(check hash [0-9a-f]{64}\); expected one of "
                    r"the tokenizers of deepseek-coder, deepseek-llm, deepseek-r1-qwen, gpt-2, llama-bpe, qwen2, "
                    r"smaug-bpe, smollm \(hashes from ggml-org/llama.cpp@0c1e57098 ", done.stderr), done.stderr
    assert "add it to KNOWN_TOKENIZERS in convert/pre_tokenizers.py" in done.stderr
    assert not (tmp_path / "m.gguf").exists()
