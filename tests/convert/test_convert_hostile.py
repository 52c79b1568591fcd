"""Hostile checkpoints, configs, index files and full disks: one clear error, exit 3 for a bad checkpoint
file (5 for a full disk), no traceback, no output file, and nothing allocated from an absurd size."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from rprm_lite.convert import checkpoint as full_checkpoint
from rprm_lite.convert import gguf_file
from rprm_lite.convert.cli import app
from rprm_lite.convert.errors import CheckpointError, ConversionError
from rprm_lite.convert.json_files import MAX_INT_DIGITS, MAX_JSON_DEPTH, parse_json_object, read_json_file
from rprm_lite.convert.quantize import run_child
from rprm_lite.convert.random_model import build_random_checkpoint

CHILD_TIMEOUT_S = 120
INDEX = "model.safetensors.index.json"
NORM = "model.layers.0.input_layernorm.weight"
OTHER_NORM = "model.layers.0.post_attention_layernorm.weight"


@pytest.fixture
def checkpoint(small_checkpoint, tmp_path):
    """A private copy of the session's small random checkpoint, free to break."""
    return shutil.copytree(small_checkpoint, tmp_path / "ckpt")


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def refused(source, out_dir, error=CheckpointError) -> str:
    """Convert through the CLI app; return the error's message after checking its type and the empty folder."""
    result = CliRunner().invoke(app, [str(source), "-o", str(out_dir / "model.gguf")])
    assert isinstance(result.exception, error), (result.output, result.exception)
    assert list(out_dir.iterdir()) == [], "a refused conversion left files behind"
    return str(result.exception)


def edit_json(path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def edit_header(path, name, **changes) -> None:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    header[name].update(changes)
    header_bytes = json.dumps(header).encode()
    path.write_bytes(len(header_bytes).to_bytes(8, "little") + header_bytes + raw[8 + length:])


# --- the one JSON reader -----------------------------------------------------------------------------

def test_json_nesting_is_limited_and_strings_do_not_count():
    assert parse_json_object(b'{"a": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}",
                             source="x")
    assert parse_json_object(b'{"a": "' + b"[" * 10_000 + b'"}', source="x") == {"a": "[" * 10_000}
    with pytest.raises(CheckpointError, match=f"^x: expected JSON nested at most {MAX_JSON_DEPTH} levels deep, "
                                              f"got {MAX_JSON_DEPTH + 1}$"):
        parse_json_object(b'{"a": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}", source="x")


def test_json_integers_are_bounded_in_digits():
    # transformers writes model_max_length = int(1e30) as 31 digits: the bound is CPython's own (4300 digits)
    assert parse_json_object(b'{"model_max_length": 1000000000000000019884624838656}', source="x") == {
        "model_max_length": 1000000000000000019884624838656}
    assert parse_json_object(b'{"n": -' + b"9" * MAX_INT_DIGITS + b"}", source="x") == {"n": -(10**MAX_INT_DIGITS - 1)}
    with pytest.raises(CheckpointError, match=f"^x: expected integers of at most {MAX_INT_DIGITS} digits, got one of "
                                              f"{MAX_INT_DIGITS + 1} digits$"):
        parse_json_object(b'{"n": 1' + b"0" * MAX_INT_DIGITS + b"}", source="x")


def test_json_files_are_bounded_in_size_before_reading(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"vocab_size": 10}')
    with pytest.raises(CheckpointError, match=f"^{path}: expected a JSON file of at most 8 bytes, got 18$"):
        read_json_file(path, max_bytes=8)


# --- index files ----------------------------------------------------------------------------------------

@pytest.fixture
def sharded(tmp_path):
    return build_random_checkpoint(tmp_path / "sharded", tokenizer="small-bpe", shards=2)


def edit_index(folder, change) -> None:
    index = json.loads((folder / INDEX).read_text())
    change(index)
    (folder / INDEX).write_text(json.dumps(index))


HOSTILE_INDEXES = {
    "weight_map an array": (lambda index: index.update(weight_map=[]), "expected a 'weight_map' object, got an array"),
    "no weight_map": (lambda index: index.pop("weight_map"), "expected a 'weight_map' object, got null"),
    "a shard that is a number": (lambda index: index["weight_map"].update({NORM: 1}),
                                 f"tensor {NORM}: expected a shard file name inside the checkpoint folder, got 1"),
    "a shard that is null": (lambda index: index["weight_map"].update({NORM: None}), "got None"),
    "an absolute shard path": (lambda index: index["weight_map"].update({NORM: "/etc/hostname"}),
                               "got '/etc/hostname'"),
    "a shard outside the folder": (lambda index: index["weight_map"].update({NORM: "../x.safetensors"}),
                                   "got '../x.safetensors'"),
}


@pytest.mark.parametrize("change, message", HOSTILE_INDEXES.values(), ids=HOSTILE_INDEXES.keys())
def test_hostile_index_files(sharded, out_dir, change, message):
    edit_index(sharded, change)
    assert message in refused(sharded, out_dir)


def test_deeply_nested_index(sharded, out_dir):
    (sharded / INDEX).write_text("[" * 100_000 + "]" * 100_000)
    assert refused(sharded, out_dir) == (f"{sharded / INDEX}: expected JSON nested at most 64 levels deep, "
                                         "got 100000")


def test_a_tensor_in_two_shards_is_refused(sharded, out_dir):
    first, second = sorted(sharded.glob("*.safetensors"))
    tensors = load_file(str(first))
    name = next(iter(load_file(str(second))))
    save_file({**tensors, name: np.zeros_like(load_file(str(second))[name])}, str(first))
    assert refused(sharded, out_dir) == (f"tensor {name} is in both {first.name} and {second.name}; expected "
                                         "each tensor in one shard")


# --- safetensors entries the converter used to turn into a wrong GGUF ----------------------------------------

def test_negative_offsets_never_become_a_gguf(checkpoint, out_dir):
    edit_header(checkpoint / "model.safetensors", NORM, data_offsets=[-256, 0])  # 256 bytes: the right length
    assert (f"tensor {NORM}: expected 'data_offsets' to be a list of 2 non-negative integers below 2**64, got "
            "[-256, 0]") in refused(checkpoint, out_dir)


def test_overlapping_tensors_never_become_a_gguf(checkpoint, out_dir):
    path = checkpoint / "model.safetensors"
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    edit_header(path, OTHER_NORM, data_offsets=header[NORM]["data_offsets"])
    assert "expected tensors that share no bytes; the file is corrupt" in refused(checkpoint, out_dir)


# --- config.json ------------------------------------------------------------------------------------------

@pytest.fixture
def nothing_sized_by_config(monkeypatch):
    """Fails the test if anything that allocates by config.json's sizes runs (the vocabulary, the tensor plan)."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("sized work started before config.json was checked against the tensors")

    monkeypatch.setattr(full_checkpoint, "read_vocabulary", must_not_run)
    monkeypatch.setattr(full_checkpoint.arch_table, "expected_shapes", must_not_run)


ABSURD_SIZES = {
    "num_hidden_layers": (10**9, "config.json: num_hidden_layers is 1000000000, expected at most 2: the checkpoint "
                                 "holds tensors for 2 layers"),
    "vocab_size": (2**31 - 1, "config.json: vocab_size 2147483647 and hidden_size 64 imply "
                              "model.embed_tokens.weight of shape [2147483647, 64], got [768, 64]"),
    "hidden_size": (2**31 - 4, "config.json: vocab_size 768 and hidden_size 2147483644 imply"),
}


@pytest.mark.parametrize("key, value, message", [(k, *v) for k, v in ABSURD_SIZES.items()], ids=ABSURD_SIZES.keys())
def test_absurd_sizes_are_refused_against_the_tensors(checkpoint, out_dir, nothing_sized_by_config, key, value,
                                                      message):
    edit_json(checkpoint / "config.json", **{key: value})
    assert refused(checkpoint, out_dir).startswith(message)


HOSTILE_CONFIG_VALUES = {
    "hidden_size 10^12": ('"hidden_size": 1000000000000', "'hidden_size' must be a positive integer of at most "
                                                          "2147483647, got 1000000000000"),
    "a 5000-digit integer": ('"num_hidden_layers": ' + "9" * 5000, "expected integers of at most 4300 digits"),
    "max_position_embeddings 2^40": ('"max_position_embeddings": 1099511627776', "got 1099511627776"),
    "layers as text": ('"num_hidden_layers": "2"', "'num_hidden_layers' must be a positive integer"),
    # the one JSON reader refuses numbers a float cannot hold before any value is looked at
    "rms_norm_eps NaN": ('"rms_norm_eps": NaN', "config.json: NaN is not a JSON number"),
    "rope_theta 1e400": ('"rope_theta": 1e400', "config.json: the number 1e400 is too large for a float"),
    "tie_word_embeddings as text": ('"tie_word_embeddings": "false"', "must be true or false, got 'false'"),
    "rope_scaling as text": ('"rope_scaling": "yarn"', "config.json: rope_scaling: expected an object, got a string"),
    "rope_parameters an array": ('"rope_parameters": [1]', "rope_parameters: expected an object, got an array"),
    "a NaN rope factor": ('"rope_scaling": {"rope_type": "linear", "factor": NaN}',
                          "config.json: NaN is not a JSON number"),
    "yarn context beyond uint32": ('"rope_scaling": {"rope_type": "yarn", "factor": 2.0, '
                                   '"original_max_position_embeddings": 1099511627776}',
                                   "'original_max_position_embeddings' must be a positive integer"),
}


@pytest.mark.parametrize("member, message", HOSTILE_CONFIG_VALUES.values(), ids=HOSTILE_CONFIG_VALUES.keys())
def test_hostile_config_values(checkpoint, out_dir, member, message):
    path = checkpoint / "config.json"
    path.write_text(path.read_text().rstrip().rstrip("}") + ", " + member + "}")
    assert message in refused(checkpoint, out_dir)


def test_an_architectures_entry_that_is_not_text(checkpoint, out_dir):
    edit_json(checkpoint / "config.json", architectures=[{"name": "Qwen2ForCausalLM"}])
    assert refused(checkpoint, out_dir, ConversionError).startswith("architecture {'name': 'Qwen2ForCausalLM'} "
                                                                     "is not supported")


def test_tokenizer_files_go_through_the_same_reader(checkpoint, out_dir):
    (checkpoint / "tokenizer_config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "tokenizer_config.json: expected JSON nested at most 64 levels deep" in refused(checkpoint, out_dir)
    (checkpoint / "tokenizer_config.json").write_text("{}")
    edit_json(checkpoint / "tokenizer.json", added_tokens=[{"content": "<x>", "id": -1}])
    assert refused(checkpoint, out_dir) == "tokenizer.json: token '<x>': expected a non-negative integer id, got -1"


# --- the command line, in a real process ----------------------------------------------------------------------

def break_header(folder):
    edit_header(folder / "model.safetensors", NORM, data_offsets=[-256, 0])


def nest_config(folder):
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)


def claim_a_billion_layers(folder):
    edit_json(folder / "config.json", num_hidden_layers=10**9)


@pytest.mark.parametrize("breakage", [break_header, nest_config, claim_a_billion_layers])
def test_cli_prints_one_error_line_and_exits_3(checkpoint, out_dir, breakage):
    breakage(checkpoint)
    done = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "convert", str(checkpoint), "-o",
                           str(out_dir / "m.gguf")], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert (done.returncode, done.stdout) == (3, "")
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert list(out_dir.iterdir()) == []


# --- a full disk ---------------------------------------------------------------------------------------------

def test_disk_full_when_the_last_bytes_are_flushed(checkpoint, out_dir, monkeypatch):
    real_close = gguf.GGUFWriter.close

    def close_on_a_full_disk(writer):
        real_close(writer)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "close", close_on_a_full_disk)
    message = refused(checkpoint, out_dir, ConversionError)
    assert message.startswith(f"disk full while writing .model.gguf.partial-{os.getpid()} in {out_dir} "
                              "(No space left on device; ")


def test_disk_full_when_creating_the_file(checkpoint, out_dir, monkeypatch):
    def no_space(writer, path=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_header_to_file", no_space)
    assert refused(checkpoint, out_dir, ConversionError).startswith("disk full while writing")


def test_a_real_file_size_limit_mid_write(checkpoint, out_dir):
    """The kernel refuses writes past RLIMIT_FSIZE with EFBIG, as a full disk does with ENOSPC: no root needed."""
    limit = 64 * 1024  # the GGUF is about 4 times larger
    code = ("import resource, signal\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
            "from rprm_lite.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code, "convert", str(checkpoint), "-o", str(out_dir / "m.gguf")],
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert done.returncode == gguf_file.ConversionError.exit_code == 5
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: disk full while writing .m.gguf.partial-"), done.stderr
    assert "(File too large; " in done.stderr
    assert list(out_dir.iterdir()) == []


def test_quantizer_on_a_full_disk_says_so():
    child = "import sys; sys.stderr.write('llama_model_quantize: failed to quantize: write error: " \
            "No space left on device\\n'); sys.exit(1)"
    with pytest.raises(ConversionError, match=r"^disk full while quantizing to Q8_0 \(No space left on device\); "):
        run_child([sys.executable, "-c", child], what="quantizing to Q8_0")
