"""The speed suite's quick mode on the tiny model: every section is measured and written.

Benchmarks are not tests, so nothing here asserts a timing: only that each measurement ran, did the work it
was asked for (token counts), and reported positive numbers.
"""

from __future__ import annotations

import json

import pytest

from shared_paths import QWEN2_VOCAB, needs_shared

pytestmark = [needs_shared(QWEN2_VOCAB), pytest.mark.slow]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    from rprm_lite.bench.speed import main

    out = tmp_path_factory.mktemp("speed")
    assert main(["--quick", "--shape", "tiny", "--out", str(out)]) == 0
    return json.loads((out / "speed-quick.json").read_text()), (out / "speed-quick.md").read_text()


def positive(result: dict, *keys: str) -> None:
    for key in keys:
        assert result[key] > 0, f"{key} = {result[key]}"


def test_every_section_is_present_without_errors(quick_run):
    result, markdown = quick_run
    assert set(result) == {"meta", "reference", "engine", "scaling", "formats", "cold_start"}
    assert not [name for name, section in result.items() if "error" in section]
    assert result["meta"]["quick"] and result["meta"]["shape"] == "tiny" and result["meta"]["threads"] == 2
    assert set(result["meta"]["models"]) == {"F32", "F16", "Q8_0", "Q4_K_M"}
    for heading in ("### 1.", "### 2.", "### 3.", "### 4.", "### 5."):
        assert heading in markdown


def test_reference_runs_transformers_and_rprm_lite_on_the_same_work(quick_run):
    reference = quick_run[0]["reference"]
    expected_tokens = reference["k"] * reference["tokens"] * reference["steps"]
    runs = [reference["transformers"], *reference["rprm_lite"].values()]
    for run in runs:
        assert run["generated_tokens"] == expected_tokens  # fixed critique length, end-of-text banned
        positive(run, "mean_seconds_per_step", "tokens_per_s", "peak_rss_mb")
    assert reference["transformers"]["device"] == "cpu" and reference["transformers"]["torch_dtype"] == "float32"
    assert set(reference["rprm_lite"]) == {"Q8_0", "F32"}
    assert all(speedup > 0 for speedup in reference["speedup"].values())


def test_engine_rows_compare_the_same_batches(quick_run):
    engine = quick_run[0]["engine"]
    assert [row["k"] for row in engine["rows"]] == [1, 2]
    for row in engine["rows"]:
        expected = row["k"] * engine["tokens"] * engine["steps"]
        assert row["rprm_lite"]["generated_tokens"] == row["bare_decode"]["generated_tokens"] == expected
        positive(row["rprm_lite"], "tokens_per_s", "peak_rss_mb")
        positive(row["bare_decode"], "tokens_per_s")
        assert row["ratio"] > 0


def test_scaling_reuses_the_cache_and_early_stop_skips_later_steps(quick_run):
    scaling = quick_run[0]["scaling"]
    totals = scaling["totals"]
    n = scaling["n_steps"]
    assert totals["kv_reuse"]["steps_scored"] == totals["no_kv_reuse"]["steps_scored"] == n
    assert totals["kv_reuse"]["decoded_prompt_tokens"] < totals["no_kv_reuse"]["decoded_prompt_tokens"]
    early = scaling["early_stop"]
    assert early["steps_scored"] == scaling["error_step"] < n
    assert [s["verdict"] for s in early["steps"]][scaling["error_step"] - 1:] == ["wrong"] + ["not scored"] * (
        n - scaling["error_step"])
    assert totals["early_stop"]["generated_tokens"] == scaling["error_step"] * scaling["k"] * scaling["tokens"]
    assert all(step["seconds"] > 0 for step in scaling["kv_reuse"]["steps"])


def test_formats_and_cold_start(quick_run):
    result = quick_run[0]
    assert set(result["formats"]["rows"]) == {"F16", "Q8_0", "Q4_K_M"}
    for row in result["formats"]["rows"].values():
        positive(row, "file_mb", "tokens_per_s", "peak_rss_mb")
    cold = result["cold_start"]
    assert cold["torch_imported"] is False
    for run in cold["runs"]:
        positive(run, "time_to_first_token_s", "startup_s", "model_load_s", "prefill_s")

