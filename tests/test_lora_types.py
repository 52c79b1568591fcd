"""A LoRA adapter's tensor types: one llama.cpp cannot multiply with is refused before llama.cpp sees the file.

llama.cpp's loader takes a LoRA tensor of any type, and its graph multiplies each half with ggml_mul_mat;
the CPU backend has no vec_dot for the integer types, F64, Q8_1 and Q8_K, and used to die by SIGSEGV at
the first decode: in `score`, on the demo model with an extra `--lora`, and in `serve` (which answered
/health, then died on the first /v1/score). The adapters here are crafted by gguf's own writer
(tests/gguf_craft.py), every byte zero, so only the type is hostile; the CLI runs in a child process, so
that a crash is a failed assertion, not a dead test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
from gguf_craft import write_adapter

from rprm_lite.adapter_file import COMPUTABLE_TYPE_NAMES, inspect_adapter
from rprm_lite.errors import ModelFileError
from rprm_lite.model_file import ModelInfo, inspect_model
from rprm_lite.scoring import Scorer

T = gguf.GGMLQuantizationType
# the types without a CPU vec_dot in llama.cpp's ggml-cpu.c: every one of them crashed the first decode
NOT_COMPUTABLE = [T.Q8_1, T.Q8_K, T.I8, T.I16, T.I32, T.I64, T.F64]
REFUSED = sorted({*NOT_COMPUTABLE, *(kind for kind in T if kind.name not in COMPUTABLE_TYPE_NAMES)})
TARGET = "blk.0.attn_q.weight"
RANK = 256  # a multiple of every block size, so that lora_b may be of any type
SOLUTION = {"question": "What is 2 + 3?", "steps": ["2 + 3 = 5."]}


def adapter(folder: Path, base: ModelInfo, kind: T, *, half: str = "b", rank: int = RANK) -> Path:
    """An adapter on TARGET whose lora_a or lora_b (`half`) is of type `kind`, the other F32."""
    types = (kind, T.F32) if half == "a" else (T.F32, kind)
    return write_adapter(folder / f"{kind.name}-{half}.gguf", architecture=base.architecture, target=TARGET,
                         dims=base.tensor_dims[TARGET], rank=rank, types=types)


def run(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    """The CLI in a child process, without $RPRM_MODEL (so no --model is the demo). A server that does not refuse
    the adapter would serve until `timeout`: a failure, as a crash is."""
    environ = {k: v for k, v in os.environ.items() if k != "RPRM_MODEL"}
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=environ)


def assert_refused(result: subprocess.CompletedProcess, path: Path, kind: T, half: str = "b") -> None:
    assert (result.returncode, result.stdout) == (3, ""), result.stderr[-2000:]
    assert result.stderr == (f"error: {path}: tensor {TARGET}.lora_{half} is of type {kind.name}, which llama.cpp "
                             "cannot multiply with (it would crash at the first decode); expected one of F32, F16, "
                             "BF16 or a quantized type such as Q8_0: convert the adapter again\n")


@pytest.fixture(scope="module")
def solution(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("solution") / "solution.json"
    path.write_text(json.dumps(SOLUTION), encoding="utf-8")
    return path


def test_the_refused_types_are_those_without_a_vec_dot():
    assert set(NOT_COMPUTABLE) <= set(REFUSED)
    assert {T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_K}.isdisjoint(REFUSED)


@pytest.mark.parametrize("kind", REFUSED, ids=[kind.name for kind in REFUSED])
def test_every_type_llama_cpp_cannot_compute_with_is_refused_in_score(small_bpe_gguf, tmp_path, solution, kind):
    bad = adapter(tmp_path, inspect_model(small_bpe_gguf), kind)
    results = tmp_path / "results.jsonl"
    assert_refused(run("score", solution, "--model", small_bpe_gguf, "--lora", bad, "-o", results), bad, kind)
    assert not results.exists()


@pytest.mark.parametrize("kind", [T.F64, T.I32, T.I8], ids=["F64", "I32", "I8"])
def test_lora_a_is_checked_too(small_bpe_gguf, tmp_path, kind):
    base = inspect_model(small_bpe_gguf)
    bad = adapter(tmp_path, base, kind, half="a")
    with pytest.raises(ModelFileError, match=rf"tensor {TARGET}\.lora_a is of type {kind.name}, which llama\.cpp "):
        inspect_adapter(bad, base)


@pytest.mark.parametrize("kind", REFUSED, ids=[kind.name for kind in REFUSED])
def test_every_such_type_is_refused_on_the_demo_model(demo_base, tmp_path, solution, kind):
    bad = adapter(tmp_path, inspect_model(demo_base), kind)
    assert_refused(run("score", solution, "--lora", bad, "--max-tokens", 8, "--threads", 1), bad, kind)


@pytest.mark.parametrize("kind", REFUSED, ids=[kind.name for kind in REFUSED])
def test_serve_refuses_to_start_with_such_an_adapter(small_bpe_gguf, tmp_path, kind):
    pytest.importorskip("uvicorn", reason="the serve extra (pip install 'rprm-lite[serve]') is not installed")
    bad = adapter(tmp_path, inspect_model(small_bpe_gguf), kind)
    assert_refused(run("serve", "--model", small_bpe_gguf, "--port", 0, "--lora", bad, timeout=60), bad, kind)


def test_serve_on_the_demo_refuses_such_an_adapter(demo_base, tmp_path):
    pytest.importorskip("uvicorn", reason="the serve extra (pip install 'rprm-lite[serve]') is not installed")
    bad = adapter(tmp_path, inspect_model(demo_base), T.F64)
    assert_refused(run("serve", "--port", 0, "--lora", bad, timeout=60), bad, T.F64)


@pytest.mark.parametrize("kind", [T.F16, T.BF16, T.Q8_0, T.Q4_0], ids=["F16", "BF16", "Q8_0", "Q4_0"])
def test_a_zero_adapter_of_a_type_llama_cpp_computes_with_scores_as_the_base(small_bpe_gguf, tmp_path, kind):
    base = inspect_model(small_bpe_gguf)
    zero = write_adapter(tmp_path / "zero.gguf", architecture=base.architecture, target=TARGET,
                         dims=base.tensor_dims[TARGET], rank=32, types=(kind, kind))
    settings = {"k": 2, "temperature": 1.0, "max_tokens": 6, "seed": 3, "threads": 1, "all_steps": True,
                "prefix_cache": False}
    with Scorer(small_bpe_gguf, **settings) as scorer:
        plain = scorer.score(SOLUTION["question"], SOLUTION["steps"])
    with Scorer(small_bpe_gguf, lora=zero, **settings) as scorer:
        adapted = scorer.score(SOLUTION["question"], SOLUTION["steps"])
    assert [step.p_yes for step in adapted.steps] == [step.p_yes for step in plain.steps]
