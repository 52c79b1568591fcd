"""Shared fixtures: tiny random-weight Qwen2 GGUF models built by our own converter.

`tiny_gguf` uses the real Qwen2 tokenizer from ../shared (skipped when it is absent);
`small_bpe_gguf` uses a small byte-level BPE trained in the test run, so it needs no shared file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
QWEN2_VOCAB = SHARED / "vocab" / "ggml-vocab-qwen2.gguf"
PROCESSBENCH = SHARED / "data" / "processbench"
GOLDEN = Path(__file__).resolve().parent / "golden"


def needs_shared(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"needs {path} (the read-only ../shared folder)")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A 2-layer, hidden-64 random-weight Qwen2 with the real Qwen2 tokenizer, converted to f32 GGUF."""
    if not QWEN2_VOCAB.exists():
        pytest.skip(f"needs the real Qwen2 tokenizer at {QWEN2_VOCAB}")
    import os  # DEVTEMP
    if os.environ.get("RPRM_DEV_MODEL"):  # DEVTEMP
        return Path(os.environ["RPRM_DEV_MODEL"])  # DEVTEMP
    from rprm_lite.convert.random_model import build_random_gguf

    return build_random_gguf(tmp_path_factory.mktemp("tiny") / "tiny-qwen2.gguf", tokenizer="qwen2", seed=0)


@pytest.fixture(scope="session")
def small_bpe_gguf(tmp_path_factory) -> Path:
    """The same tiny model with a small BPE trained here: needs nothing from ../shared."""
    from rprm_lite.convert.random_model import build_random_gguf

    return build_random_gguf(tmp_path_factory.mktemp("bpe") / "tiny-bpe.gguf", tokenizer="small-bpe", seed=0)
