"""Logits of the converted GGUF (llama.cpp) against the original checkpoint (transformers, float32).

Measured on these tiny models (hidden 64, 2 layers, seeds 0-2), max |logit difference| / max |P(Yes)
difference| over 3 R-PRM prompts (~1900 positions): f32 about 1e-5 / 1e-6; f16 0.016 / 0.001;
bf16 0.12 / 0.004; Q8_0 0.45 / 0.023. The bounds below leave about 2x room over those figures.
"""

from __future__ import annotations

import json

import pytest

from rprm_lite.convert.converter import ConvertConfig, convert
from rprm_lite.convert.gguf_file import read_gguf_metadata
from rprm_lite.convert.random_model import build_random_checkpoint

pytest.importorskip("torch")
pytest.importorskip("transformers")
from rprm_lite.convert.verify import verify_conversion  # noqa: E402  (needs the two above)

F32_BOUND = 1e-3  # the bound for f32 output
# kind -> (max |logit difference|, max |P(Yes) difference|, min top-1 agreement)
LOOSER_BOUNDS = {"f16": (0.05, 0.005, 0.98), "bf16": (0.3, 0.02, 0.95), "Q8_0": (1.0, 0.05, 0.9)}


def convert_and_verify(folder, out, *, outtype="f32", quant=None):
    convert(ConvertConfig(source=str(folder), output=out, outtype=outtype, quant=quant))
    return verify_conversion(folder, out, kind=quant or outtype, raise_on_failure=False)


@pytest.mark.parametrize(("arch", "tied", "shards", "dtype"), [
    ("qwen2", True, 1, "float32"),
    ("qwen2", False, 3, "float32"),
    ("llama", True, 1, "float32"),
    ("llama", False, 2, "bfloat16"),
    ("llama", True, 2, "float16"),
])
def test_f32_logits_match_transformers(tmp_path, arch, tied, shards, dtype):
    folder = build_random_checkpoint(tmp_path / "ckpt", arch=arch, tokenizer="small-bpe", tied=tied, shards=shards,
                                     dtype=dtype, seed=1)
    report = convert_and_verify(folder, tmp_path / "m.gguf")
    assert report.tokens_match
    assert report.max_logit_diff < F32_BOUND, report.rows()
    assert report.max_p_yes_diff < 1e-4
    assert report.top1_agreement == 1.0
    assert report.n_positions > 1500  # every position of the three prompts was compared


def test_f32_logits_match_with_the_real_qwen2_tokenizer(tmp_path, qwen2_checkpoint):
    report = convert_and_verify(qwen2_checkpoint, tmp_path / "m.gguf")
    assert report.tokens_match
    assert report.max_logit_diff < F32_BOUND, report.rows()
    assert report.top1_agreement == 1.0


@pytest.mark.parametrize(("arch", "dtype", "outtype", "quant"), [
    ("qwen2", "float32", "f16", None),
    ("llama", "bfloat16", "f16", None),
    ("qwen2", "float32", "bf16", None),
    ("qwen2", "float32", "f16", "Q8_0"),
    ("llama", "float32", "f16", "Q8_0"),
])
def test_lower_precision_logits_stay_within_stated_bounds(tmp_path, arch, dtype, outtype, quant):
    folder = build_random_checkpoint(tmp_path / "ckpt", arch=arch, tokenizer="small-bpe", dtype=dtype, seed=2)
    report = convert_and_verify(folder, tmp_path / "m.gguf", outtype=outtype, quant=quant)
    max_logit, max_p_yes, min_top1 = LOOSER_BOUNDS[quant or outtype]
    assert report.tokens_match
    assert report.max_logit_diff < max_logit, report.rows()
    assert report.max_p_yes_diff < max_p_yes, report.rows()
    assert report.top1_agreement >= min_top1, report.rows()
    # Not vacuous: the file compared really holds its matrices in the lower precision (how far its logits then
    # differ depends on the CPU's rounding, so no floor on the difference is asserted)
    assert matrix_types(tmp_path / "m.gguf") == {quant or outtype.upper()}


def matrix_types(path) -> set[str]:
    """The GGML types of the GGUF's weight matrices (norms and biases stay f32 in every output type)."""
    import gguf

    return {tensor.tensor_type.name for tensor in gguf.GGUFReader(path).tensors if len(tensor.shape) == 2}


def test_q4_k_m_quantizes_through_llama_cpp(tmp_path, small_checkpoint):
    out = tmp_path / "q4.gguf"
    report = convert_and_verify(small_checkpoint, out, quant="Q4_K_M")
    fields = read_gguf_metadata(out)
    assert fields["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert fields["rprm.yes_token_id"] > 0  # our metadata survives llama.cpp's quantizer
    assert report.top1_agreement > 0.6, report.rows()


def test_checkpoint_saved_by_transformers_converts(tmp_path, small_checkpoint):
    """A model built and saved by transformers itself (its own config.json and safetensors layout)."""
    import torch
    import transformers

    torch.manual_seed(0)
    source = json.loads((small_checkpoint / "config.json").read_text())
    for arch_class, config_class in ((transformers.Qwen2ForCausalLM, transformers.Qwen2Config),
                                     (transformers.LlamaForCausalLM, transformers.LlamaConfig)):
        config = config_class(vocab_size=source["vocab_size"], hidden_size=64, intermediate_size=96,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                              max_position_embeddings=2048, tie_word_embeddings=False, initializer_range=0.2)
        folder = tmp_path / arch_class.__name__
        arch_class(config).save_pretrained(folder)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (folder / name).write_bytes((small_checkpoint / name).read_bytes())
        report = convert_and_verify(folder, tmp_path / f"{arch_class.__name__}.gguf")
        assert report.max_logit_diff < F32_BOUND, (arch_class.__name__, report.rows())


def test_verify_beyond_tolerance_fails_and_keeps_nothing(tmp_path, small_checkpoint, monkeypatch):
    from typer.testing import CliRunner

    from rprm_lite.convert import verify
    from rprm_lite.convert.cli import app
    from rprm_lite.convert.errors import VerificationError

    monkeypatch.setitem(verify.TOLERANCES, "f16", verify.Tolerance(1e-9, 1e-9, 1.0))
    out = tmp_path / "m.gguf"
    result = CliRunner().invoke(app, [str(small_checkpoint), "-o", str(out), "--verify"])
    assert isinstance(result.exception, VerificationError) and result.exception.exit_code == 6
    assert str(result.exception).startswith("verification failed for f16: max |logit difference| ")
    assert "The GGUF was not kept" in str(result.exception)
    assert list(tmp_path.iterdir()) == []


def test_verify_within_tolerance_prints_the_figures(tmp_path, small_checkpoint):
    from typer.testing import CliRunner

    from rprm_lite.convert.cli import app

    result = CliRunner().invoke(app, [str(small_checkpoint), "-o", str(tmp_path / "m.gguf"), "--verify"])
    assert result.exit_code == 0, result.output
    assert "GGUF vs transformers (f16)" in result.output and "max |P(Yes) difference|" in result.output
    assert "tokenizer corpus agreement" in result.output and "20/20 texts" in result.output
    assert (tmp_path / "m.gguf").is_file()


def test_verify_finds_a_tokenizer_that_splits_the_corpus_differently(tmp_path, small_checkpoint):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for path in small_checkpoint.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "m.gguf"
    convert(ConvertConfig(source=str(folder), output=out, outtype="f32"))
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["normalizer"] = {"type": "Lowercase"}  # now only the Hugging Face side lowercases
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    report = verify_conversion(folder, out, kind="f32", raise_on_failure=False)
    assert 0 < len(report.corpus_mismatches) < report.corpus_size
    assert all(text != text.lower() for text in report.corpus_mismatches)  # exactly the texts with capitals
    assert any(failure.startswith(f"the Hugging Face tokenizer and llama.cpp tokenize {len(report.corpus_mismatches)} "
                                  f"of {report.corpus_size} corpus texts differently (first: ")
               for failure in report.failures), report.failures
