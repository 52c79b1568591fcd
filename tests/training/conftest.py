"""Fixtures for the training tests: tiny random Qwen2 checkpoints, data files, a stub teacher.

Checkpoints come from the converter's `build_random_checkpoint`, with either the real Qwen2
tokenizer (rebuilt from ../shared; tests using it skip without it) or its small BPE trained in
the test run. Training tests use the small BPE: with a 151,936-token vocabulary every CPU step
of a tiny model is several times slower, and the behaviour under test does not depend on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import StubTeacher, pair_records, seed_records, write_jsonl

from shared_paths import QWEN2_VOCAB


def random_checkpoint(out: Path, tokenizer: str, *, seed: int = 0) -> Path:
    from rprm_lite.convert.random_model import build_random_checkpoint

    return build_random_checkpoint(out, tokenizer=tokenizer, n_layer=2, hidden=64, n_head=4, n_kv_head=2,
                                   ffn=128, seed=seed)


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-64 random Qwen2 with the converter's small BPE (about 700 tokens)."""
    return random_checkpoint(tmp_path_factory.mktemp("small-qwen2"), "small-bpe")


@pytest.fixture(scope="session")
def qwen2_model_dir(tmp_path_factory) -> Path:
    """The same tiny model with the real Qwen2 tokenizer (151,936 embedding rows)."""
    if not QWEN2_VOCAB.is_file():
        pytest.skip(f"needs the Qwen2 vocabulary at {QWEN2_VOCAB} (the read-only ../shared folder)")
    return random_checkpoint(tmp_path_factory.mktemp("qwen2-tiny"), "qwen2")


@pytest.fixture
def seed_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "sft.jsonl", seed_records())


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", pair_records())


@pytest.fixture
def stub_teacher():
    teachers: list[StubTeacher] = []

    def start(replies: dict, **kwargs) -> StubTeacher:
        teachers.append(StubTeacher(replies, **kwargs))
        return teachers[-1]

    yield start
    for teacher in teachers:
        teacher.close()
