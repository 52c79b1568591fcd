"""Fixtures for the converter tests: tiny random checkpoints, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from rprm_lite.convert.random_model import build_random_checkpoint, build_random_gguf
from shared_paths import PROCESSBENCH, QWEN2_VOCAB


@pytest.fixture(scope="session")
def qwen2_vocab() -> Path:
    if not QWEN2_VOCAB.is_file():
        pytest.skip(f"needs the shared Qwen2 vocabulary at {QWEN2_VOCAB} (absent outside the project workspace)")
    return QWEN2_VOCAB


@pytest.fixture(scope="session")
def processbench_dir() -> Path:
    if not PROCESSBENCH.is_dir():
        pytest.skip(f"needs the shared ProcessBench data at {PROCESSBENCH} (absent outside the project workspace)")
    return PROCESSBENCH


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """Qwen2 architecture, small trained tokenizer, f32, one file: needs no shared file."""
    return build_random_checkpoint(tmp_path_factory.mktemp("small") / "ckpt", tokenizer="small-bpe")


@pytest.fixture(scope="session")
def qwen2_checkpoint(tmp_path_factory, qwen2_vocab) -> Path:
    """Qwen2 architecture with the real Qwen2.5 tokenizer."""
    return build_random_checkpoint(tmp_path_factory.mktemp("qwen2") / "ckpt", tokenizer="qwen2",
                                   qwen2_vocab=qwen2_vocab)


@pytest.fixture(scope="session")
def qwen2_gguf(tmp_path_factory, qwen2_vocab) -> Path:
    return build_random_gguf(tmp_path_factory.mktemp("qwen2-gguf") / "random.gguf", qwen2_vocab=qwen2_vocab)
