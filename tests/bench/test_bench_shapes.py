"""The benchmarks' one table of model shapes builds exactly the checkpoints each benchmark built before.

`build_random_checkpoint` is replaced by a recorder that stops at the call, so nothing is written: the test
compares the keyword arguments with the literal dicts the benchmarks passed when each had its own table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from rprm_lite.bench import convert_speed, score_speed, speed_models
from rprm_lite.convert import random_model

QWEN25_05B = dict(n_layer=24, hidden=896, n_head=14, n_kv_head=2, ffn=4864)
TINY = dict(n_layer=2, hidden=64, n_head=4, n_kv_head=2, ffn=128)
# the speed suite, score_speed and adaptive_speed: f32, seed 0, build_random_checkpoint's tied and context defaults
SCORING_CHECKPOINTS = {
    "qwen2.5-0.5b": dict(tokenizer="qwen2", seed=0, dtype="float32", **QWEN25_05B),
    "tiny": dict(tokenizer="qwen2", seed=0, dtype="float32", **TINY),
}
# convert_speed: bf16 in 2 shards; the Qwen2.5 shapes tied with their released 32k context
CONVERTER_CHECKPOINTS = {
    "qwen2.5-1.5b": dict(tokenizer="qwen2", dtype="bfloat16", shards=2, n_layer=28, hidden=1536, n_head=12,
                         n_kv_head=2, ffn=8960, tied=True, max_position=32768),
    "qwen2.5-0.5b": dict(tokenizer="qwen2", dtype="bfloat16", shards=2, **QWEN25_05B, tied=True,
                         max_position=32768),
    "tiny": dict(tokenizer="qwen2", dtype="bfloat16", shards=2, **TINY),
}


class Built(Exception):
    """Raised by the recorder: the call was seen, build nothing."""


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    seen: list[dict] = []

    def record(out_dir, **arguments):
        seen.append(arguments)
        raise Built

    monkeypatch.setattr(random_model, "build_random_checkpoint", record)
    return seen


@pytest.mark.parametrize("shape", sorted(SCORING_CHECKPOINTS))
def test_the_scoring_benchmarks_build_the_same_checkpoints(shape, calls, tmp_path: Path):
    with pytest.raises(Built):
        speed_models.build_checkpoint(shape, tmp_path, logit_scale=4.0)
    assert calls == [SCORING_CHECKPOINTS[shape]]


@pytest.mark.parametrize("shape", sorted(CONVERTER_CHECKPOINTS))
def test_the_converter_benchmark_builds_the_same_checkpoints(shape, calls, tmp_path: Path):
    with pytest.raises(Built):
        convert_speed.speed(None, shape, "f16", "Q4_K_M", tmp_path)
    assert calls == [CONVERTER_CHECKPOINTS[shape]]


def test_each_benchmark_offers_the_shapes_it_offered(monkeypatch):
    from rprm_lite.bench import adaptive_speed, speed

    def shape_choices(main) -> list[str]:
        choices: list[str] = []

        def record(parser, args=None, namespace=None):
            choices.extend(parser._option_string_actions["--shape"].choices)
            raise Built

        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", record)
        with pytest.raises(Built):
            main([])
        return choices

    assert shape_choices(convert_speed.main) == ["qwen2.5-0.5b", "qwen2.5-1.5b", "tiny"]
    for main in (score_speed.main, speed.main, adaptive_speed.main):
        assert shape_choices(main) == ["qwen2.5-0.5b", "tiny"]


@pytest.mark.parametrize(("shape", "dims"), [("qwen2.5-0.5b", QWEN25_05B), ("tiny", TINY)])
def test_the_speed_suite_records_the_five_sizes_as_its_dims(shape, dims, tmp_path: Path):
    from rprm_lite.bench import speed

    suite = speed.Suite(shape, speed.QUICK, threads=1, n_gpu_layers=0, device="cpu", torch_dtype="auto", out=tmp_path)
    assert speed.metadata(suite)["dims"] == dims
