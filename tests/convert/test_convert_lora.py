"""`rprm-lite convert` of a peft LoRA folder: the adapter GGUF, its round trip through the runtime, and its refusals.

Round trip: a tiny random Llama and a tiny random Qwen2 with the real Qwen2 tokenizer, a random peft LoRA
on every linear layer (B non-zero, so the adapter changes the output), converted to base GGUF + adapter GGUF
and scored through the runtime, equal to the merged checkpoint converted as one model. The refusals use
numpy-built peft folders (`build_random_lora`) and need no torch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import gguf
import numpy as np
import pytest

from rprm_lite.cli import main
from rprm_lite.convert.converter import ConvertConfig, convert
from rprm_lite.convert.gguf_file import read_gguf_metadata
from rprm_lite.convert.random_model import build_random_checkpoint, build_random_lora
from rprm_lite.convert.verify import TOLERANCES
from rprm_lite.model_file import inspect_model
from rprm_lite.scoring import Scorer

# greedy: a sampled critique over a random 150k-token distribution turns on logit differences of 1e-6
SETTINGS = {"k": 1, "temperature": 0.0, "max_tokens": 16, "all_steps": True, "threads": 1}
QUESTION, STEPS = "Tom has 3 apples and buys 4 more. How many apples?", ["3 + 4 = 7.", "So he has 8 apples."]


def peft_lora(root: Path, arch: str, **checkpoint) -> SimpleNamespace:
    """A random base checkpoint, a random peft LoRA on every linear layer (saved by peft), and the two merged
    (saved by transformers): folders under `root`."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    base = build_random_checkpoint(root / "base", arch=arch, seed=1, **checkpoint)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    adapted = peft.get_peft_model(model, config)
    adapted.save_pretrained(root / "peft")
    adapted.merge_and_unload().save_pretrained(root / "merged")
    for tokenizer_file in base.glob("tokenizer*"):
        shutil.copy(tokenizer_file, root / "merged" / tokenizer_file.name)
    return SimpleNamespace(arch=arch, base_dir=base, peft=root / "peft", merged_dir=root / "merged")


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def round_trip(request, tmp_path_factory, qwen2_vocab) -> SimpleNamespace:
    """With the real Qwen2 tokenizer: base GGUF + adapter GGUF, and the merged checkpoint as one GGUF."""
    root = tmp_path_factory.mktemp(f"lora-{request.param}")
    made = peft_lora(root, request.param, tokenizer="qwen2", qwen2_vocab=qwen2_vocab)
    made.base, made.merged, made.lora = root / "base.gguf", root / "merged.gguf", root / "lora.gguf"
    convert(ConvertConfig(source=str(made.base_dir), output=made.base, outtype="f32"))
    convert(ConvertConfig(source=str(made.merged_dir), output=made.merged, outtype="f32"))
    # the Qwen2 case finds its base through adapter_config.json's base_model_name_or_path
    convert(ConvertConfig(source=str(made.peft), base=str(made.base_dir) if made.arch == "llama" else None,
                          base_gguf=made.base, output=made.lora, outtype="f32"))
    return made


def steps_of(model: Path, **kwargs) -> list:
    with Scorer(model, **SETTINGS, **kwargs) as scorer:
        return list(scorer.score(QUESTION, STEPS).steps)


def test_base_plus_adapter_scores_as_the_merged_model(round_trip):
    merged = steps_of(round_trip.merged)
    adapted = steps_of(round_trip.base, lora=round_trip.lora)
    assert [s.critiques for s in adapted] == [s.critiques for s in merged]
    # within the converter's f32 tolerance for P(Yes): the runtime's f16 KV cache rounds the two paths' activations
    # (the adapter's B @ A added apart, or merged into the weights) a little differently
    assert np.allclose([s.p_yes for s in adapted], [s.p_yes for s in merged], atol=TOLERANCES["f32"].max_p_yes_diff)
    base = steps_of(round_trip.base)
    assert not np.allclose([s.p_yes for s in base], [s.p_yes for s in merged], atol=1e-2)  # the adapter matters


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_verify_compares_base_and_adapter_with_the_merged_model_in_transformers(tmp_path, arch):
    """--verify without --base-gguf converts the base for the check (a small BPE: the real vocabulary's logits over
    2,000 positions take half a minute)."""
    made = peft_lora(tmp_path, arch, tokenizer="small-bpe")
    result = convert(ConvertConfig(source=str(made.peft), base=str(made.base_dir), output=tmp_path / "lora.gguf",
                                   outtype="f16", verify=True))
    report = result.verification
    assert report.passed and report.tokens_match
    assert report.kind == "f16"  # the looser of the f32 base's tolerance and the f16 adapter's
    assert report.max_logit_diff < 0.05 and report.max_p_yes_diff < 2e-3 and report.top1_agreement >= 0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "lora.gguf", "merged", "peft"]  # no leftovers


def test_the_adapter_file_is_laid_out_as_llama_cpp_reads_it(round_trip):
    fields = read_gguf_metadata(round_trip.lora)
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == 8.0 and fields["general.architecture"] == round_trip.arch
    assert fields["rprm.base_sha256"] == inspect_model(round_trip.base).sha256
    tensors = {t.name: t for t in gguf.GGUFReader(round_trip.lora).tensors}
    names = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    assert sorted(tensors) == sorted(f"blk.{layer}.{name}.weight.lora_{half}"
                                     for layer in range(2) for name in names for half in "ab")
    assert list(tensors["blk.1.attn_q.weight.lora_a"].shape) == [64, 4]  # ggml order: in x rank
    assert list(tensors["blk.1.attn_k.weight.lora_b"].shape) == [4, 32]  # rank x out (2 KV heads of 16)
    from safetensors.numpy import load_file

    peft_b = load_file(round_trip.peft / "adapter_model.safetensors")[
        "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"]
    written = np.asarray(tensors["blk.1.attn_k.weight.lora_b"].data).reshape(32, 4)
    # Llama's k rows (2 heads of 16) go to llama.cpp's rope layout, as the base's k_proj rows do
    rows = np.arange(32).reshape(2, 2, 8).swapaxes(1, 2).reshape(32) if round_trip.arch == "llama" else np.arange(32)
    assert np.array_equal(written, peft_b[rows])


def cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> SimpleNamespace:
    """Numpy-built: a Llama checkpoint with its GGUF, another of other widths, and a peft folder for the first."""
    root = tmp_path_factory.mktemp("lora-small")
    base = build_random_checkpoint(root / "base", arch="llama", tokenizer="small-bpe", seed=1)
    other = build_random_checkpoint(root / "other", arch="llama", tokenizer="small-bpe", seed=1, hidden=32)
    made = SimpleNamespace(base=base, other=other, peft=build_random_lora(root / "peft", base),
                           base_gguf=root / "base.gguf", other_gguf=root / "other.gguf")
    convert(ConvertConfig(source=str(base), output=made.base_gguf, outtype="f32"))
    convert(ConvertConfig(source=str(other), output=made.other_gguf, outtype="f32"))
    return made


def edited_peft(small, tmp_path: Path, **changes) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(small.peft, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    return folder


def test_cli_writes_an_adapter_that_scores_on_its_base(small, tmp_path, capsys):
    out = tmp_path / "adapter.gguf"
    code, stdout, err = cli(capsys, "convert", small.peft, "--base-gguf", small.base_gguf, "-o", out)
    assert code == 0, err
    assert stdout.startswith(f"wrote {out} (LlamaForCausalLM LoRA adapter, f16, 28 tensors, ")
    with Scorer(small.base_gguf, lora=out, k=1, max_tokens=4, threads=1) as scorer:
        assert scorer.model_info.adapters[0].ranks == (4,)
        assert scorer.score(QUESTION, STEPS).steps[0].score is not None


@pytest.mark.parametrize("case, message", [
    ("dora", "use_dora=True, which a llama.cpp LoRA adapter cannot hold"),
    ("no_base", "is a peft LoRA folder: pass --base with the checkpoint folder it was trained on"),
    ("quant", "--quant is for models; a LoRA adapter stays float"),
    ("other_base_gguf", "other.gguf: tensor blk.0.ffn_down.weight is [128, 32], but the base checkpoint"),
    ("other_base", "model.layers.0.mlp.down_proj.weight is 32 x 128 in the base, so lora_A must be [r, 128] and "
                   "lora_B [32, r]; got [4, 128] and [64, 4]: is the adapter for another base?"),
    ("full_checkpoint", "--base and --base-gguf are for a peft LoRA folder (with adapter_config.json)"),
])
def test_what_an_adapter_cannot_hold_is_refused_before_writing(small, tmp_path, capsys, case, message):
    out = tmp_path / "adapter.gguf"
    source, extra = {
        "dora": lambda: (edited_peft(small, tmp_path, use_dora=True), []),
        "no_base": lambda: (edited_peft(small, tmp_path, base_model_name_or_path=None), []),
        "quant": lambda: (small.peft, ["--quant", "Q8_0"]),
        "other_base_gguf": lambda: (small.peft, ["--base-gguf", small.other_gguf]),
        "other_base": lambda: (small.peft, ["--base", small.other]),
        "full_checkpoint": lambda: (small.base, ["--base", small.base]),
    }[case]()
    code, stdout, err = cli(capsys, "convert", source, "-o", out, *extra)
    assert code != 0 and stdout == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err
    assert list(tmp_path.glob("*.gguf*")) == []  # nothing written, not even a partial file


def test_lm_head_lora_on_tied_embeddings_is_refused(small, tmp_path, capsys):
    from rprm_lite.convert.safetensors_io import TensorToWrite, write_safetensors

    folder = edited_peft(small, tmp_path, target_modules=["lm_head"])
    vocab, hidden = json.loads((small.base / "config.json").read_text())["vocab_size"], 64
    tensors = [TensorToWrite(f"base_model.model.lm_head.lora_{half}.weight", "F32", shape,
                             lambda shape=shape: [np.ones(shape, np.float32)])
               for half, shape in (("A", (4, hidden)), ("B", (vocab, 4)))]
    write_safetensors(folder / "adapter_model.safetensors", tensors)
    code, _, err = cli(capsys, "convert", folder, "-o", tmp_path / "adapter.gguf")
    assert code != 0
    assert "LoRA on lm_head, but the base ties lm_head to the embeddings" in err
