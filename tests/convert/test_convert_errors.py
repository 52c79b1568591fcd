"""Every bad input gives a clear ConversionError (non-zero exit code) and leaves no output file behind."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from rprm_lite.convert import gguf_file
from rprm_lite.convert.cli import app
from rprm_lite.convert.errors import ConversionError
from rprm_lite.convert.gguf_file import read_gguf_metadata
from rprm_lite.convert.quantize import QUANT_TYPES, quantize, run_child
from rprm_lite.convert.random_model import build_random_checkpoint
from rprm_lite.convert.safetensors_io import read_checkpoint_tensors, read_tensor_f32


@pytest.fixture
def checkpoint(tmp_path):
    return build_random_checkpoint(tmp_path / "ckpt", tokenizer="small-bpe")


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def convert_error(source, out_dir, *options) -> ConversionError:
    """Run `rprm-lite convert`; return its error after checking that nothing was written."""
    result = CliRunner().invoke(app, [str(source), "-o", str(out_dir / "model.gguf"), *options])
    assert isinstance(result.exception, ConversionError), (result.output, result.exception)
    assert result.exception.exit_code != 0
    assert sorted(p.name for p in out_dir.iterdir()) == [], "a failed conversion left files behind"
    return result.exception


def tensors_of(folder) -> dict[str, np.ndarray]:
    return {name: read_tensor_f32(ref) for name, ref in read_checkpoint_tensors(folder).items()}


def rewrite_weights(folder, tensors: dict[str, np.ndarray]) -> None:
    """Replace the checkpoint's weights, written by the official safetensors library."""
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def edit_json(path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_missing_config(checkpoint, out_dir):
    (checkpoint / "config.json").unlink()
    assert "no config.json; expected a Hugging Face checkpoint folder" in str(convert_error(checkpoint, out_dir))


def test_unsupported_architecture_lists_supported_ones(checkpoint, out_dir):
    edit_json(checkpoint / "config.json", architectures=["MistralForCausalLM"])
    message = str(convert_error(checkpoint, out_dir))
    assert message == ("architecture MistralForCausalLM is not supported; supported architectures: "
                       "Qwen2ForCausalLM, LlamaForCausalLM")


def test_missing_tensor_is_named(checkpoint, out_dir):
    tensors = tensors_of(checkpoint)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    rewrite_weights(checkpoint, tensors)
    message = str(convert_error(checkpoint, out_dir))
    assert message.startswith("tensor model.layers.1.mlp.up_proj.weight is missing from the checkpoint")


def test_missing_shard_is_named(tmp_path, out_dir):
    folder = build_random_checkpoint(tmp_path / "sharded", tokenizer="small-bpe", shards=3)
    (folder / "model-00002-of-00003.safetensors").unlink()
    assert "shard model-00002-of-00003.safetensors is missing" in str(convert_error(folder, out_dir))


def test_index_pointing_to_the_wrong_shard(tmp_path, out_dir):
    folder = build_random_checkpoint(tmp_path / "sharded", tokenizer="small-bpe", shards=2)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    assert "tensor model.layers.9.mlp.up_proj.weight is missing" in str(convert_error(folder, out_dir))


def test_truncated_shard(checkpoint, out_dir):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    assert "the shard is truncated" in str(convert_error(checkpoint, out_dir))


def test_shape_mismatch_with_config(checkpoint, out_dir):
    edit_json(checkpoint / "config.json", intermediate_size=96)
    message = str(convert_error(checkpoint, out_dir))
    assert message.startswith("tensor model.layers.0.mlp.gate_proj.weight has shape [128, 64]; config.json "
                              "implies [96, 64] (hidden_size 64, heads 4/2, intermediate_size 96")


def test_unexpected_tensor(checkpoint, out_dir):
    tensors = tensors_of(checkpoint)
    tensors["model.layers.2.mlp.up_proj.weight"] = tensors["model.layers.1.mlp.up_proj.weight"]
    rewrite_weights(checkpoint, tensors)
    assert "unexpected tensor model.layers.2.mlp.up_proj.weight" in str(convert_error(checkpoint, out_dir))


@pytest.mark.parametrize("dtype", [np.float64, np.int8])
def test_unsupported_dtype(checkpoint, out_dir, dtype):
    tensors = tensors_of(checkpoint)
    tensors["model.norm.weight"] = tensors["model.norm.weight"].astype(dtype)
    rewrite_weights(checkpoint, tensors)
    message = str(convert_error(checkpoint, out_dir))
    assert "tensor model.norm.weight has dtype" in message and "expected one of F32, F16, BF16" in message


def test_values_beyond_float16_range(checkpoint, out_dir):
    tensors = tensors_of(checkpoint)
    tensors["model.layers.0.mlp.down_proj.weight"][3, 5] = 1e6
    rewrite_weights(checkpoint, tensors)
    message = str(convert_error(checkpoint, out_dir, "--outtype", "f16"))
    assert "beyond float16's range" in message and "--outtype bf16 or f32" in message


def test_missing_tokenizer(checkpoint, out_dir):
    (checkpoint / "tokenizer.json").unlink()
    assert "no tokenizer.json; expected a byte-level BPE tokenizer" in str(convert_error(checkpoint, out_dir))


def test_tokenizer_that_is_not_byte_level_bpe(checkpoint, out_dir):
    tokenizer = json.loads((checkpoint / "tokenizer.json").read_text())
    tokenizer["model"]["type"] = "Unigram"
    (checkpoint / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert "holds a Unigram model; expected byte-level BPE" in str(convert_error(checkpoint, out_dir))
    tokenizer["model"]["type"] = "BPE"
    tokenizer["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}
    (checkpoint / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert str(convert_error(checkpoint, out_dir)).startswith(
        "tokenizer.json is a SentencePiece-style BPE (byte fallback, '▁' for spaces, as in Llama 2 and Mistral); ")
    tokenizer["pre_tokenizer"] = {"type": "Whitespace"}
    (checkpoint / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert "is BPE but not byte-level" in str(convert_error(checkpoint, out_dir))


def test_existing_output_needs_force(checkpoint, out_dir):
    existing = out_dir / "model.gguf"
    existing.write_bytes(b"keep me")
    result = CliRunner().invoke(app, [str(checkpoint), "-o", str(existing)])
    assert str(result.exception) == f"{existing} already exists; pass --force to overwrite it"
    assert existing.read_bytes() == b"keep me"
    assert CliRunner().invoke(app, [str(checkpoint), "-o", str(existing), "--force"]).exit_code == 0
    assert existing.read_bytes()[:4] == b"GGUF"


def test_unknown_quant_type_lists_valid_ones(checkpoint, out_dir):
    message = str(convert_error(checkpoint, out_dir, "--quant", "Q7_X"))
    assert message == f"unknown quantization type 'Q7_X'; valid types: {', '.join(QUANT_TYPES)}"


def test_unknown_outtype(checkpoint, out_dir):
    assert str(convert_error(checkpoint, out_dir, "--outtype", "f8")) == (
        "unknown --outtype 'f8'; valid types: f32, f16, bf16")


def test_missing_source_folder(tmp_path, out_dir):
    message = str(convert_error(tmp_path / "nowhere", out_dir))
    assert message.endswith("no such folder; expected a checkpoint folder or a Hugging Face repo id such as "
                            "'owner/name'")


def test_output_folder_must_exist(checkpoint, tmp_path):
    result = CliRunner().invoke(app, [str(checkpoint), "-o", str(tmp_path / "no" / "model.gguf")])
    assert "no such folder for the output" in str(result.exception)


def test_disk_full_while_writing_leaves_nothing(checkpoint, out_dir, monkeypatch):
    def fill_disk(out, tensor):
        out.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf_file, "_write_tensor_data", fill_disk)
    message = str(convert_error(checkpoint, out_dir))
    assert message.startswith(f"disk full while writing .model.gguf.partial-{os.getpid()} in {out_dir}")


def test_not_enough_space_is_refused_before_writing(checkpoint, out_dir, monkeypatch):
    monkeypatch.setattr(gguf_file, "_free_bytes", lambda folder: 1000)
    assert "not enough disk space" in str(convert_error(checkpoint, out_dir))


def test_interrupted_write_keeps_the_previous_output(checkpoint, out_dir, monkeypatch):
    existing = out_dir / "model.gguf"
    existing.write_bytes(b"previous model")
    written = []

    def interrupt_on_third_tensor(out, tensor):
        written.append(tensor.gguf_name)
        if len(written) == 3:
            raise KeyboardInterrupt
        out.write(b"\0" * tensor.nbytes)

    monkeypatch.setattr(gguf_file, "_write_tensor_data", interrupt_on_third_tensor)
    result = CliRunner().invoke(app, [str(checkpoint), "-o", str(existing), "--force"])
    assert result.exit_code == 130  # click's answer to Ctrl-C
    assert len(written) == 3
    assert existing.read_bytes() == b"previous model"
    assert [p.name for p in out_dir.iterdir()] == ["model.gguf"]


def test_llama_cpp_crash_in_the_child_becomes_an_error():
    with pytest.raises(ConversionError, match=r"^llama.cpp crashed \(SIGABRT\) while quantizing"):
        run_child([sys.executable, "-c", "import os; os.abort()"], what="quantizing")


def test_llama_cpp_failure_reports_its_log(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x03\0\0\0" + b"\xff" * 64)
    with pytest.raises(ConversionError, match=r"llama.cpp failed \(exit status \d+\) while quantizing to Q8_0"):
        quantize(broken, tmp_path / "q.gguf", "Q8_0")
    assert not (tmp_path / "q.gguf").exists()


def test_hub_id_offline_names_the_id(tmp_path, out_dir):
    code = ("from rprm_lite.convert.hub import resolve_source\n"
            "try:\n    resolve_source('someone/r-prm-test')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.startswith("ConversionError someone/r-prm-test: no such local folder, and it cannot be "
                                  "downloaded: the Hugging Face Hub is unreachable"), done.stdout + done.stderr


def test_local_folder_wins_over_a_hub_id(checkpoint, out_dir, monkeypatch):
    """A SOURCE that looks like owner/name but exists locally is never downloaded."""
    monkeypatch.chdir(checkpoint.parent)
    result = CliRunner().invoke(app, [f"{checkpoint.name}/../{checkpoint.name}", "-o", str(out_dir / "m.gguf")])
    assert result.exit_code == 0, result.output
    assert (out_dir / "m.gguf").is_file()


def test_hub_id_is_downloaded_then_converted(checkpoint, out_dir, monkeypatch):
    """The download path, served from a local folder: snapshot_download is where the network would be."""
    import huggingface_hub

    asked = []

    def fake_snapshot_download(repo_id, **options):
        asked.append((repo_id, options["allow_patterns"]))
        return str(checkpoint)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    result = CliRunner().invoke(app, ["someone/r-prm-tiny", "-o", str(out_dir / "m.gguf")])
    assert result.exit_code == 0, result.output
    assert asked == [("someone/r-prm-tiny", ["*.json", "*.safetensors", "*.jinja", "*.txt"])]
    assert read_gguf_metadata(out_dir / "m.gguf")["general.name"] == "r-prm-tiny"


def test_unsupported_rope_scaling(checkpoint, out_dir):
    edit_json(checkpoint / "config.json", rope_scaling={"rope_type": "llama3", "factor": 8.0})
    assert str(convert_error(checkpoint, out_dir)) == (
        "config.json: rope scaling type 'llama3' is not supported; supported: default, linear, yarn")


def test_yarn_rope_scaling_is_written(checkpoint, out_dir):
    edit_json(checkpoint / "config.json", rope_scaling={"type": "yarn", "factor": 4.0,
                                                        "original_max_position_embeddings": 32768})
    assert CliRunner().invoke(app, [str(checkpoint), "-o", str(out_dir / "m.gguf")]).exit_code == 0
    fields = read_gguf_metadata(out_dir / "m.gguf")
    assert (fields["qwen2.rope.scaling.type"], fields["qwen2.rope.scaling.factor"]) == ("yarn", 4.0)
    assert fields["qwen2.rope.scaling.original_context_length"] == 32768


def test_verify_without_torch_is_refused_before_any_work(checkpoint, out_dir, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "torch" else real_find_spec(name, *args))
    assert str(convert_error(checkpoint, out_dir, "--verify")) == (
        "--verify needs torch and transformers (torch missing): pip install 'rprm-lite[verify]'")
