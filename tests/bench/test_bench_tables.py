"""The one markdown-table writer, and the exact table text of every benchmark that writes one.

Each benchmark's table is pinned byte for byte on fixed numbers, so a change to the writer or to a caller
fails on the first changed character. The speed suite's tables are pinned on a recorded quick run
(tests/golden/speed-quick.json, and the .md the suite wrote from it).
"""

from __future__ import annotations

import json

import pytest

from rprm_lite.bench import (
    convert_speed,
    remote_speed,
    score_speed,
    serve_speed,
    shared_prefix_speed,
    speed,
    train_speed,
)
from rprm_lite.markdown import table
from shared_paths import GOLDEN


def test_the_writer_left_aligns_every_column_by_default():
    assert table(("name", "value"), [("a", 1), ("b", 2.5)]) == (
        "| name | value |\n"
        "|---|---|\n"
        "| a | 1 |\n"
        "| b | 2.5 |")


def test_the_writer_right_aligns_the_columns_marked_r():
    assert table(("name", "n", "note", "x"), [("a", 1, "", None)], align="lrlr") == (
        "| name | n | note | x |\n"
        "|---|---:|---|---:|\n"
        "| a | 1 |  | None |")
    assert table(("n",), [], align="r") == "| n |\n|---:|"


@pytest.mark.parametrize("align", ["lr", "lrrx", "LRR"])
def test_the_writer_refuses_an_alignment_that_does_not_fit_the_header(align):
    with pytest.raises(ValueError, match=f"expected l or r for each of the 3 columns, got {align!r}"):
        table(("a", "b", "c"), [], align=align)


def test_speed_suite_tables_are_the_recorded_ones():
    result = json.loads((GOLDEN / "speed-quick.json").read_text(encoding="utf-8"))
    assert speed.tables(result) + "\n" == (GOLDEN / "speed-quick.md").read_text(encoding="utf-8")


def test_speed_suite_shows_a_failed_section_as_its_error():
    result = json.loads((GOLDEN / "speed-quick.json").read_text(encoding="utf-8"))
    text = speed.tables({"meta": result["meta"], "engine": {"error": "bare-decode failed (exit 1):\nboom"},
                         "formats": result["formats"]})
    assert "\n\n### engine\nfailed: bare-decode failed (exit 1):\nboom\n\n### 4. Model formats" in text


def test_score_speed_table():
    summary = {"model": "random-tiny-Q8_0.gguf", "model_mb": 16.4, "k": 2, "critique_tokens": 8, "threads": 2,
               "variants": {"rprm-lite": {"tokens_per_s": 250.25, "mean_seconds_per_step": 0.0625,
                                          "peak_rss_mb": 235.4},
                            "llama-high-level": {"tokens_per_s": 100.0, "mean_seconds_per_step": 0.16,
                                                 "peak_rss_mb": 240.6},
                            "bare-decode": {"tokens_per_s": 260.0, "mean_seconds_per_step": 0.06,
                                            "peak_rss_mb": 230.0}},
               "speedup_vs_high_level": 2.5025, "fraction_of_bare_decode": 0.9625, "rss_budget_mb": 612.5}
    assert score_speed.summary_table(summary) == (
        "| variant | generated tok/s | s/step | peak RSS MB |\n"
        "|---|---:|---:|---:|\n"
        "| rprm-lite | 250.2 | 0.06 | 235 |\n"
        "| llama-high-level | 100.0 | 0.16 | 241 |\n"
        "| bare-decode | 260.0 | 0.06 | 230 |\n"
        "\n"
        "model random-tiny-Q8_0.gguf (16 MB), K=2, 8 tokens per critique, 2 threads\n"
        "rprm-lite / high-level Llama: 2.50x (target >= 1.5x)\n"
        "rprm-lite / bare decode loop: 0.963 (target >= 0.9)\n"
        "rprm-lite peak RSS 235 MB, budget 612 MB (model + KV cache + 400 MB)")


CONVERTED = {"shape": "tiny", "source": "bf16, 2 shards", "checkpoint_mb": 40, "largest_tensor_mb": 19.4,
             "rss_target_mb": 529, "ours": {"seconds": 1.5, "peak_rss_mb": 300.2, "output_mb": 25},
             "reference": {"seconds": 6.0, "peak_rss_mb": 900.0, "output_mb": 25},
             "outputs_compared": {"tensors": 24, "tensors_data_differing": ["a"]},
             "quantize": {"type": "Q4_K_M", "seconds": 0.8, "peak_rss_mb": 120.0, "output_mb": 9}}


def test_convert_speed_table():
    assert convert_speed.speed_table(CONVERTED, "f16") == (
        "| step | tool | wall s | peak RSS MB | output MB |\n"
        "|---|---|---:|---:|---:|\n"
        "| bf16 -> f16 | rprm-lite convert | 1.5 | 300.2 | 25 |\n"
        "| bf16 -> f16 | llama.cpp convert_hf_to_gguf.py | 6.0 | 900.0 | 25 |\n"
        "| f16 -> Q4_K_M | llama_model_quantize (child process) | 0.8 | 120.0 | 9 |\n"
        "\n"
        "checkpoint 40 MB (tiny, bf16, 2 shards); largest tensor 19.4 MB; peak RSS target 1.5 x largest + 500 MB "
        "= 529 MB: rprm-lite meets it\n"
        "speed: rprm-lite takes 0.25x the reference's wall time (4.00x faster); tensors with differing data: 1 of 24")
    alone = {key: value for key, value in CONVERTED.items() if key not in ("reference", "outputs_compared")}
    assert convert_speed.speed_table(alone, "f16") == (
        "| step | tool | wall s | peak RSS MB | output MB |\n"
        "|---|---|---:|---:|---:|\n"
        "| bf16 -> f16 | rprm-lite convert | 1.5 | 300.2 | 25 |\n"
        "| f16 -> Q4_K_M | llama_model_quantize (child process) | 0.8 | 120.0 | 9 |\n"
        "\n"
        "checkpoint 40 MB (tiny, bf16, 2 shards); largest tensor 19.4 MB; peak RSS target 1.5 x largest + 500 MB "
        "= 529 MB: rprm-lite meets it")


def test_convert_comparison_table():
    results = [
        {"arch": "qwen2", "tied": True, "source_dtype": "float32", "outtype": "f16", "keys_equal": 30,
         "keys_only_ours": ["rprm.version", "general.description"], "keys_only_reference": [],
         "keys_differing": {"general.name": ["Random", "Tiny Qwen2"]}, "tensors": 24,
         "tensors_layout_differing": [], "tensors_data_differing": []},
        {"arch": "llama", "tied": False, "source_dtype": "bfloat16", "outtype": "bf16", "keys_equal": 31,
         "keys_only_ours": [], "keys_only_reference": ["general.size_label"], "keys_differing": {}, "tensors": 25,
         "tensors_layout_differing": ["x"], "tensors_data_differing": ["y", "z"]},
    ]
    assert convert_speed.comparison_table(results) == (
        "| arch | source | out | keys equal | only ours | only reference | differing values | tensors | "
        "layout diff | data diff |\n"
        "|---|---|---|---:|---|---|---|---:|---:|---:|\n"
        "| qwen2 tied | float32 | f16 | 30 | rprm.version, general.description | - | "
        "general.name: ours 'Random' / ref 'Tiny Qwen2' | 24 | 0 | 0 |\n"
        "| llama | bfloat16 | bf16 | 31 | - | general.size_label | - | 25 | 1 | 2 |")


def test_train_speed_table():
    report = {"rows": [{"variant": "TRL sft", "vocab": 151936, "tokens_per_sequence": 412, "sequences_per_step": 4,
                        "seconds_per_step": 1.23456, "tokens_per_s": 1334.9},
                       {"variant": "plain PyTorch sft", "vocab": 700, "tokens_per_sequence": 412,
                        "sequences_per_step": 4, "seconds_per_step": 0.5, "tokens_per_s": 3296.0}],
              "ratios": {"TRL sft / plain sft (vocab 700)": 2.5, "TRL sft vocab 700 / vocab 151936": 4.125},
              "machine": {"cpus": 2, "torch_threads": 2}, "versions": {"torch": "2.13.0", "trl": "0.99"}}
    assert train_speed.markdown(report) == (
        "| variant | vocab | tokens/sequence | sequences/step | s/step | tokens/s |\n"
        "|---|---:|---:|---:|---:|---:|\n"
        "| TRL sft | 151,936 | 412 | 4 | 1.235 | 1,335 |\n"
        "| plain PyTorch sft | 700 | 412 | 4 | 0.500 | 3,296 |\n"
        "\n"
        "- TRL sft / plain sft (vocab 700): 2.50x\n"
        "- TRL sft vocab 700 / vocab 151936: 4.12x\n"
        "- CPU: 2 cores (2 torch threads), torch 2.13.0, trl 0.99\n")


def test_shared_prefix_speed_table():
    report = {"rows": [{"variant": "plain", "micro_batch": 1, "precision": "fp32", "seconds_per_step": 2.0,
                        "examples_per_s": 4.0, "steps_per_minute": 30.0, "vs_plain_fp32": 1.0},
                       {"variant": "shared prefix", "micro_batch": 8, "precision": "bf16", "seconds_per_step": 0.625,
                        "examples_per_s": 12.8, "steps_per_minute": 96.0, "vs_plain_fp32": 3.2}],
              "batch": 8, "steps": 8, "machine": {"cpus": 2, "torch_threads": 2}}
    assert shared_prefix_speed.markdown(report) == (
        "| forward | micro-batch | precision | s/step | examples/s | steps/min | vs plain fp32 |\n"
        "|---|---:|---|---:|---:|---:|---:|\n"
        "| plain | 1 | fp32 | 2.00 | 4.0 | 30.0 | 1.00x |\n"
        "| shared prefix | 8 | bf16 | 0.62 | 12.8 | 96.0 | 3.20x |\n"
        "\n"
        "- 8 examples per optimizer step, 8 steps per variant (the first 2 not timed); CPU: 2 cores, "
        "2 torch threads\n")


def test_serve_speed_tables():
    report = {"overhead": {"solutions": 2, "steps_per_solution": 3, "ratio_server": 1.0625,
                           "ratio_server_stream": 1.125,
                           "solutions_per_s": {"in_process": 4.0, "server": 3.765, "server_stream": 3.5},
                           "median_step_latency_ms": {"in_process": 80.25, "server_stream": 90.5},
                           "results_differing": 0},
              "disconnect": {"disconnects": 3, "median_s_to_free_engine": 0.0125, "max_s_to_free_engine": 0.02,
                             "decodes_to_free_engine": 2.5, "median_extra_s_for_next_request": 0.004},
              "seconds_per_decode": 0.005, "server_exit_code": 0,
              "setup": {"model": "m.gguf", "k": 4, "max_tokens": 32, "threads": 1}}
    assert serve_speed.markdown(report) == (
        "### rprm-lite serve: m.gguf, K=4, max_tokens=32, threads=1, 2 solutions of 3 steps\n"
        "\n"
        "| path | solutions/s | median step latency (ms) | time / in-process time |\n"
        "|---|---:|---:|---:|\n"
        "| in process (Scorer) | 4.00 | 80.2 | 1.00 |\n"
        "| server, JSON | 3.77 | - | 1.062 |\n"
        "| server, NDJSON stream | 3.50 | 90.5 | 1.125 |\n"
        "\n"
        "results differing between server and in process: 0\n"
        "\n"
        "| disconnect (median of 3) | value |\n"
        "|---|---:|\n"
        "| close to free engine | 12.5 ms (max 20.0 ms) |\n"
        "| same, in decode steps (5.0 ms each) | 2.5 |\n"
        "| next request's wait beyond an idle engine | 4.0 ms |\n"
        "| server exit code after SIGTERM | 0 |\n")


def test_remote_speed_table():
    report = {"rows": [{"servers": 1, "concurrency": 1, "solutions_per_s": 0.5, "vs_concurrency_1": 1.0,
                        "requests": 24, "request_wait_s": 11.25, "max_score_diff_vs_concurrency_1": 0.0},
                       {"servers": 2, "concurrency": 4, "solutions_per_s": 1.25, "vs_concurrency_1": 2.5,
                        "requests": 24, "request_wait_s": 4.5, "max_score_diff_vs_concurrency_1": 0.00012}],
              "client": {"k": 10, "seconds_per_step": 0.0021, "steps_per_s": 476.2, "requests_per_step": 11.0},
              "machine": {"cpus": 2, "load_average_1min": 1.5}, "solutions": 6, "steps_per_solution": 2, "k": 2,
              "max_tokens": 8, "server": "llama_cpp.server (llama-cpp-python), 1 thread each", "model": "tiny.gguf"}
    assert remote_speed.markdown(report) == (
        "| servers | concurrency | solutions/s | vs concurrency 1 | requests | s waiting on the server | "
        "max score diff vs concurrency 1 |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
        "| 1 | 1 | 0.500 | 1.00x | 24 | 11.2 | 0.0e+00 |\n"
        "| 2 | 4 | 1.250 | 2.50x | 24 | 4.5 | 1.2e-04 |\n"
        "\n"
        "- 6 solutions of 2 steps, K=2, max 8 tokens per critique, against llama_cpp.server (llama-cpp-python), "
        "1 thread each serving tiny.gguf\n"
        "- client overhead (instant vLLM-format server, K=10): 2.1 ms per step (476 steps/s, 11 requests per step)\n"
        "- machine: 2 CPUs, 1-minute load average 1.5 at the end\n")
