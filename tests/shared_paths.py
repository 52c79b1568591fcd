"""Paths into the read-only ../shared folder; tests that need it skip with a reason when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
QWEN2_VOCAB = SHARED / "vocab" / "ggml-vocab-qwen2.gguf"
PROCESSBENCH = SHARED / "data" / "processbench"
GOLDEN = Path(__file__).resolve().parent / "golden"
# the project's first demo R-PRM (3.4M parameters, random-init Qwen2 trained on synthetic critiques, Q8_0): no
# longer shipped, but a 3.5 MiB model that writes well-formed critiques fast, so tests that need one use it
TINY_RPRM = Path(__file__).resolve().parent / "models" / "tiny-rprm.gguf"


def needs_shared(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"needs {path} (the read-only ../shared folder)")
