"""Random-weight checkpoints and GGUFs: what tests and the README demo rely on."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tokenizers import Tokenizer

from rprm_lite import metadata
from rprm_lite.convert.converter import RANDOM_WEIGHTS_DESCRIPTION
from rprm_lite.convert.errors import ConversionError
from rprm_lite.convert.gguf_file import read_gguf_metadata
from rprm_lite.convert.random_model import build_random_checkpoint, build_random_gguf
from rprm_lite.convert.safetensors_io import read_checkpoint_tensors, read_tensor_f32
from rprm_lite.prompt import template_hash


def tensor_values(folder, name):
    return read_tensor_f32(read_checkpoint_tensors(folder)[name])


def test_small_checkpoint_has_hugging_face_files(small_checkpoint):
    config = json.loads((small_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"]) == (64, 2, 2)
    tokenizer_config = json.loads((small_checkpoint / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tokenizer_config["chat_template"]
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    tensors = read_checkpoint_tensors(small_checkpoint)
    assert tensors["model.embed_tokens.weight"].shape == (config["vocab_size"], 64)
    assert "lm_head.weight" not in tensors  # tied embeddings are stored once, as transformers does


def test_small_bpe_tokenizer_has_single_token_verdicts_and_chatml_specials(small_checkpoint):
    tokenizer = Tokenizer.from_file(str(small_checkpoint / "tokenizer.json"))
    assert len(tokenizer.encode(" Yes").ids) == 1
    assert len(tokenizer.encode(" No").ids) == 1
    assert tokenizer.encode(" Yes").ids != tokenizer.encode(" No").ids
    ids = tokenizer.encode("<|im_start|>user\nhi<|im_end|>").ids
    assert ids[0] == tokenizer.token_to_id("<|im_start|>") and ids[-1] == tokenizer.token_to_id("<|im_end|>")
    specials = {t["content"] for t in json.loads((small_checkpoint / "tokenizer.json").read_text())["added_tokens"]
                if t["special"]}
    assert specials == {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    # any unicode text still tokenizes (byte-level), and decodes back exactly
    text = "Unicode: √2 ≈ 1.414, π/4, 文字 😀"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_qwen2_tokenizer_is_the_real_one(qwen2_checkpoint):
    tokenizer = Tokenizer.from_file(str(qwen2_checkpoint / "tokenizer.json"))
    assert tokenizer.encode(" Yes").ids == [7414]
    assert tokenizer.encode(" No").ids == [2308]
    assert tokenizer.encode("<|im_start|>assistant<|im_end|><|endoftext|>").ids == [151644, 77091, 151645, 151643]
    assert json.loads((qwen2_checkpoint / "config.json").read_text())["vocab_size"] == 151936


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    first = build_random_checkpoint(tmp_path / "a", tokenizer="small-bpe", seed=3)
    again = build_random_checkpoint(tmp_path / "b", tokenizer="small-bpe", seed=3)
    other = build_random_checkpoint(tmp_path / "c", tokenizer="small-bpe", seed=4)
    assert (first / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()
    name = "model.layers.1.mlp.up_proj.weight"
    assert not np.array_equal(tensor_values(first, name), tensor_values(other, name))


def test_sharded_checkpoint_holds_the_same_tensors(tmp_path):
    single = build_random_checkpoint(tmp_path / "single", tokenizer="small-bpe", tied=False)
    sharded = build_random_checkpoint(tmp_path / "sharded", tokenizer="small-bpe", tied=False, shards=3)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert set(index["weight_map"]) == set(read_checkpoint_tensors(single))
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.1.self_attn.q_proj.bias"):
        assert np.array_equal(tensor_values(single, name), tensor_values(sharded, name))


def test_bfloat16_checkpoint_rounds_the_float32_weights(tmp_path):
    f32 = build_random_checkpoint(tmp_path / "f32", tokenizer="small-bpe")
    bf16 = build_random_checkpoint(tmp_path / "bf16", tokenizer="small-bpe", dtype="bfloat16")
    assert read_checkpoint_tensors(bf16)["model.norm.weight"].dtype == "BF16"
    name = "model.layers.0.mlp.down_proj.weight"
    exact, rounded = tensor_values(f32, name), tensor_values(bf16, name)
    assert np.abs(rounded - exact).max() <= np.abs(exact).max() * 2**-8
    assert not np.array_equal(rounded, exact)


def test_transformers_loads_the_checkpoint(small_checkpoint):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(small_checkpoint, dtype=torch.float32)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    embedding = model.get_input_embeddings().weight.detach().numpy()
    assert np.array_equal(embedding, tensor_values(small_checkpoint, "model.embed_tokens.weight"))
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # tied


def test_random_gguf_is_labelled_and_carries_rprm_metadata(qwen2_gguf):
    fields = read_gguf_metadata(qwen2_gguf)
    assert fields[metadata.DESCRIPTION] == RANDOM_WEIGHTS_DESCRIPTION
    assert fields[metadata.YES_TOKEN_ID] == 7414 and fields[metadata.NO_TOKEN_ID] == 2308
    assert fields[metadata.PROMPT_STYLE] == "r-prm-eval"
    assert fields[metadata.TEMPLATE_SHA256] == template_hash("r-prm-eval")
    assert (fields[metadata.K], fields[metadata.MAX_TOKENS]) == (10, 4096)
    assert fields[metadata.TEMPERATURE] == pytest.approx(0.95) and fields[metadata.TOP_P] == pytest.approx(0.95)
    assert fields[metadata.THRESHOLD] == pytest.approx(0.5)
    assert fields["general.architecture"] == "qwen2" and fields["general.file_type"] == 0  # all f32


def test_random_gguf_runs_in_llama_cpp(qwen2_gguf):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(qwen2_gguf), n_ctx=256, verbose=False, logits_all=True)
    assert llm.tokenize(b" Yes", add_bos=False, special=False) == [7414]
    assert llm.tokenize(b"<|im_start|>", add_bos=False, special=True) == [151644]
    llm.eval(llm.tokenize(b"Step 1: 2 + 2 = 4.", add_bos=False))
    logits = np.array(llm.scores[llm.n_tokens - 1])
    assert logits.shape == (151936,) and np.isfinite(logits).all() and logits.std() > 0.5


def test_build_random_gguf_without_shared_files(tmp_path):
    path = build_random_gguf(tmp_path / "demo.gguf", tokenizer="small-bpe", arch="llama", outtype="f16")
    fields = read_gguf_metadata(path)
    assert fields["general.architecture"] == "llama" and fields["general.file_type"] == 1  # mostly f16
    assert fields[metadata.DESCRIPTION] == RANDOM_WEIGHTS_DESCRIPTION
    tokens = fields["tokenizer.ggml.tokens"]
    assert tokens[fields[metadata.YES_TOKEN_ID]] == "ĠYes" and tokens[fields[metadata.NO_TOKEN_ID]] == "ĠNo"


def test_qwen2_tokenizer_without_vocab_file_says_what_to_do(tmp_path):
    with pytest.raises(ConversionError, match="ggml-vocab-qwen2.gguf.*small-bpe"):
        build_random_checkpoint(tmp_path / "x", tokenizer="qwen2", qwen2_vocab=tmp_path / "absent.gguf")


def test_module_entry_point_writes_a_labelled_model(tmp_path):
    out = tmp_path / "demo.gguf"
    command = [sys.executable, "-m", "rprm_lite.convert.random_model", str(out), "--tokenizer", "small-bpe"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}") and RANDOM_WEIGHTS_DESCRIPTION in done.stdout
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 5
    assert again.stderr.strip() == f"error: {out} already exists; pass --force to overwrite it"
