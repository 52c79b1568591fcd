"""Model pre-flight and model-dependent checks on tiny GGUFs."""

import numpy as np
import pytest

from rprm_lite.config import ScoreConfig
from rprm_lite.errors import ModelFileError
from rprm_lite.model_file import inspect_model
from rprm_lite.scoring import Scorer


def bytes_only_gguf(path):
    """A tiny Qwen2 whose byte-level vocabulary has no merges: " Yes" is four tokens."""
    import gguf

    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    others = [b for b in range(256) if b not in printable]
    byte_chars = {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}  # GPT-2
    tokens = [byte_chars[b] for b in range(256)] + ["ab", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 257 + [3] * 3)
    writer.add_token_merges(["a b"])
    writer.add_eos_token_id(259)
    writer.add_bos_token_id(257)
    writer.add_add_bos_token(False)
    hidden, ffn, vocab = 16, 32, len(tokens)
    for name, value in [("context_length", 512), ("embedding_length", hidden), ("block_count", 1),
                        ("feed_forward_length", ffn), ("head_count", 2), ("head_count_kv", 2)]:
        getattr(writer, f"add_{name}")(value)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,),
              "blk.0.attn_norm.weight": (hidden,), "blk.0.ffn_norm.weight": (hidden,),
              "blk.0.attn_q.weight": (hidden, hidden), "blk.0.attn_q.bias": (hidden,),
              "blk.0.attn_k.weight": (hidden, hidden), "blk.0.attn_k.bias": (hidden,),
              "blk.0.attn_v.weight": (hidden, hidden), "blk.0.attn_v.bias": (hidden,),
              "blk.0.attn_output.weight": (hidden, hidden), "blk.0.ffn_gate.weight": (ffn, hidden),
              "blk.0.ffn_up.weight": (ffn, hidden), "blk.0.ffn_down.weight": (hidden, ffn)}
    for name, shape in shapes.items():
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32) * 0.1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_vocabulary_without_single_yes_no_tokens_is_refused(tmp_path):
    path = bytes_only_gguf(tmp_path / "bytes.gguf")
    with pytest.raises(ModelFileError, match="no single token for ' Yes' and ' No'"):
        Scorer(path, ScoreConfig(k=1))


def test_small_bpe_model_needs_no_shared_file_and_scores(small_bpe_gguf):
    info = inspect_model(small_bpe_gguf)
    assert info.architecture == "qwen2" and info.description == "random weights: for tests and demos only"
    with Scorer(small_bpe_gguf, ScoreConfig(k=2, max_tokens=4, all_steps=True)) as scorer:
        result = scorer.score("What is 2 + 2?", ["2 + 2 = 4.", "The answer is 4."])
        yes = scorer.engine.tokenize(" Yes", special=False)
    assert [step.verdict in ("correct", "wrong") for step in result.steps] == [True, True]
    assert yes == [scorer.vocab.yes] and info.yes_token_id == scorer.vocab.yes


def test_metadata_defaults_reach_the_config(tiny_gguf):
    info = inspect_model(tiny_gguf)
    assert info.yes_token_id == 7414 and info.no_token_id == 2308
    assert info.config_defaults()["temperature"] == 0.95  # stored as float32, read back as meant
    with Scorer(tiny_gguf) as scorer:
        assert scorer.config.k == 10 and scorer.config.top_p == 0.95
    with Scorer(tiny_gguf, k=3) as scorer:
        assert scorer.config.k == 3


def test_vocab_only_file_is_refused(tmp_path):
    from shared_paths import QWEN2_VOCAB

    if not QWEN2_VOCAB.exists():
        pytest.skip(f"needs {QWEN2_VOCAB}")
    with pytest.raises(ModelFileError, match="vocabulary-only"):
        inspect_model(QWEN2_VOCAB)
