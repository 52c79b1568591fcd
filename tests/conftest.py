"""Shared fixtures: tiny random-weight Qwen2 GGUF models built by our own converter.

`tiny_gguf` uses the real Qwen2 tokenizer from ../shared (skipped when it is absent);
`small_bpe_gguf` uses a small byte-level BPE trained in the test run, so it needs no shared file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_paths import QWEN2_VOCAB


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A 2-layer, hidden-64 random-weight Qwen2 with the real Qwen2 tokenizer, converted to f32 GGUF."""
    if not QWEN2_VOCAB.exists():
        pytest.skip(f"needs the real Qwen2 tokenizer at {QWEN2_VOCAB}")
    from rprm_lite.convert.random_model import build_random_gguf

    return build_random_gguf(tmp_path_factory.mktemp("tiny") / "tiny-qwen2.gguf", tokenizer="qwen2", seed=0)


@pytest.fixture(scope="session")
def small_bpe_gguf(tmp_path_factory) -> Path:
    """The same tiny model with a small BPE trained here: needs nothing from ../shared."""
    from rprm_lite.convert.random_model import build_random_gguf

    return build_random_gguf(tmp_path_factory.mktemp("bpe") / "tiny-bpe.gguf", tokenizer="small-bpe", seed=0)
