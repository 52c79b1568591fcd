"""What the speed suite guarantees, checked on one real `--quick` run on the tiny shape.

Benchmarks are not tests, so no timing is asserted. What is: the report has every section and variant the
suite promises; the variants of a comparison did the same work (tokens generated, prompt tokens decoded,
steps, fallbacks); every total and ratio is the one its raw measurements give; the markdown is the JSON
rendered; the models are the ones recorded in tests/golden/speed-quick.json (byte for byte); a bad option
is a usage error and a failed measurement an exit code. The golden files come from
`python -m rprm_lite.bench.speed --quick --shape tiny --out DIR` (its speed-quick.json and speed-quick.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
from dataclasses import asdict
from pathlib import Path

import pytest

from rprm_lite.bench import speed
from rprm_lite.bench.speed_jobs import STEPS, MeasurementError
from rprm_lite.model_file import file_sha256
from shared_paths import GOLDEN, QWEN2_VOCAB, needs_shared

pytestmark = [needs_shared(QWEN2_VOCAB), pytest.mark.slow]
QUICK = speed.QUICK


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("speed")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exit_code = speed.main(["--quick", "--shape", "tiny", "--out", str(out)])
    return {"exit_code": exit_code, "out": out, "printed": printed.getvalue(),
            "result": json.loads((out / "speed-quick.json").read_text()),
            "markdown": (out / "speed-quick.md").read_text()}


def runs_of(result: dict) -> list[dict]:
    """Every child's measurement in the report."""
    reference, engine, scaling = result["reference"], result["engine"], result["scaling"]
    return [reference["transformers"], *reference["rprm_lite"].values(),
            *(row[variant] for row in engine["rows"] for variant in ("rprm_lite", "bare_decode")),
            *(scaling[name] for name in ("kv_reuse", "no_kv_reuse", "early_stop")),
            *result["formats"]["rows"].values()]


def decoded_prompts(run: dict) -> list[int]:
    return [step["decoded_prompt_tokens"] for step in run["steps"]]


def test_every_section_is_reported_and_the_markdown_is_the_json_rendered(quick_run):
    result, markdown = quick_run["result"], quick_run["markdown"]
    assert quick_run["exit_code"] == 0
    assert list(result) == ["meta", "engine", "reference", "scaling", "formats", "cold_start"]  # run order
    assert not [name for name, section in result.items() if "error" in section]
    assert markdown == speed.tables(result) + "\n" == quick_run["printed"]  # tables() is pinned in test_bench_tables
    headings = ["### 1. rprm-lite vs the R-PRM reference pipeline", "### 2. Engine efficiency", "### 3. Scaling",
                "### 4. Model formats", "### 5. Cold start"]
    titles = [line for line in markdown.splitlines() if line.startswith("### ")]
    assert len(titles) == len(headings) and all(map(str.startswith, titles, headings))
    for row in result["engine"]["rows"]:  # one row read back: the numbers are the JSON's
        lite, bare = row["rprm_lite"], row["bare_decode"]
        assert (f"| {row['k']} | {lite['tokens_per_s']:.2f} | {bare['tokens_per_s']:.2f} | {row['ratio']:.3f} | "
                f"{lite['mean_seconds_per_step']:.2f} | {round(lite['peak_rss_mb'])} |") in markdown


def test_meta_records_the_settings_and_the_recorded_models(quick_run):
    meta, out = quick_run["result"]["meta"], quick_run["out"]
    assert (meta["shape"], meta["quick"], meta["threads"], meta["logit_scale"]) == ("tiny", True, 2, 4.0)
    assert meta["dims"] == dict(n_layer=2, hidden=64, n_head=4, n_kv_head=2, ffn=128)
    assert meta["sizes"] == json.loads(json.dumps(asdict(QUICK)))  # tuples are JSON lists
    golden = json.loads((GOLDEN / "speed-quick.json").read_text())["meta"]
    same_llama_cpp = meta["versions"]["llama_cpp_python"] == golden["versions"]["llama_cpp_python"]
    for fmt in ("F32", "F16", "Q8_0", "Q4_K_M"):  # quantized files depend on llama.cpp's version
        model = meta["models"][fmt]
        path = out / "models" / model["file"]
        assert model == {"file": f"random-tiny-x4-{fmt}.gguf", "mb": path.stat().st_size / 2**20,
                         "sha256": file_sha256(path)}
        if fmt in ("F32", "F16") or same_llama_cpp:
            assert model["sha256"] == golden["models"][fmt]["sha256"], f"{fmt} is not the recorded model"


def test_every_measurement_adds_up_from_its_steps(quick_run):
    for run in runs_of(quick_run["result"]):
        steps, scored = run["steps"], [s for s in run["steps"] if s["verdict"] != "not scored"]
        assert run["seconds"] == pytest.approx(sum(s["seconds"] for s in steps))
        assert run["generated_tokens"] == sum(s["generated_tokens"] for s in steps)
        assert run["tokens_per_s"] == pytest.approx(run["generated_tokens"] / run["seconds"])
        assert run["steps_scored"] == len(scored)
        assert run["seconds_per_step"] == [s["seconds"] for s in scored]
        assert run["mean_seconds_per_step"] == pytest.approx(run["seconds"] / len(scored))


def test_reference_pipelines_score_the_same_prompt_with_the_same_work(quick_run):
    reference = quick_run["result"]["reference"]
    k, tokens, steps = reference["k"], reference["tokens"], reference["steps"]
    assert (k, tokens, steps) == (QUICK.reference_k, QUICK.tokens, QUICK.reference_steps)
    transformers, lite = reference["transformers"], reference["rprm_lite"]
    assert set(lite) == {"Q8_0", "F32"}  # "Q8_0 adaptive" only with --adaptive
    assert (transformers["device"], transformers["torch_dtype"]) == ("cpu", "float32")
    for run in (transformers, *lite.values()):
        assert run["generated_tokens"] == k * tokens * steps  # fixed critique length, end-of-text banned
        assert run["fallbacks"] == k * steps
    for fmt, run in lite.items():
        assert reference["speedup"][fmt] == pytest.approx(
            transformers["mean_seconds_per_step"] / run["mean_seconds_per_step"])
        # the same rendered prompt: transformers decodes it once per critique, rprm-lite once
        assert decoded_prompts(transformers) == [k * tokens for tokens in decoded_prompts(run)]
    for step in transformers["steps"]:
        assert step["seconds"] == pytest.approx(step["generate_seconds"] + step["score_pass_seconds"])


def test_engine_rows_compare_the_same_batches(quick_run):
    engine = quick_run["result"]["engine"]
    assert (engine["tokens"], engine["steps"], engine["model"]) == (QUICK.tokens, len(STEPS), "Q8_0")
    assert [row["k"] for row in engine["rows"]] == list(QUICK.engine_ks)
    for row in engine["rows"]:
        lite, bare = row["rprm_lite"], row["bare_decode"]
        assert lite["generated_tokens"] == bare["generated_tokens"] == row["k"] * QUICK.tokens * len(STEPS)
        assert decoded_prompts(lite) == decoded_prompts(bare)  # the same KV reuse
        assert lite["critiques_per_step"] == row["k"] and lite["fallbacks"] == row["k"] * len(STEPS)
        assert row["ratio"] == pytest.approx(lite["tokens_per_s"] / bare["tokens_per_s"])


def test_scaling_reuses_the_cache_and_early_stop_skips_later_steps(quick_run):
    scaling = quick_run["result"]["scaling"]
    n, k, tokens, error_step = scaling["n_steps"], scaling["k"], scaling["tokens"], scaling["error_step"]
    assert (n, k, tokens, error_step) == (QUICK.scaling_steps, QUICK.scaling_k, QUICK.scaling_tokens, QUICK.error_step)
    for name, total in scaling["totals"].items():  # the totals table comes from the runs
        run = scaling[name]
        assert total == {"steps_scored": run["steps_scored"], "seconds": run["seconds"],
                         "generated_tokens": run["generated_tokens"],
                         "decoded_prompt_tokens": sum(decoded_prompts(run))}
    decoded = [decoded_prompts(scaling[name]) for name in ("kv_reuse", "no_kv_reuse", "early_stop")]
    assert decoded[0][0] == decoded[1][0]  # the first step starts from an empty cache either way
    assert all(a < b for a, b in zip(decoded[0][1:], decoded[1][1:], strict=True))
    assert decoded[2] == decoded[0][:error_step] + [0] * (n - error_step)  # the same work up to the error
    verdicts = [step["verdict"] for step in scaling["early_stop"]["steps"]]
    assert verdicts[error_step - 1:] == ["wrong"] + ["not scored"] * (n - error_step)
    assert scaling["early_stop"]["generated_tokens"] == error_step * k * tokens
    assert scaling["kv_reuse"]["generated_tokens"] == scaling["no_kv_reuse"]["generated_tokens"] == n * k * tokens


def test_formats_are_measured_on_the_engine_batch(quick_run):
    result = quick_run["result"]
    formats, meta = result["formats"], result["meta"]
    k = max(QUICK.engine_ks)
    assert (formats["k"], formats["tokens"], list(formats["rows"])) == (k, QUICK.tokens, ["F16", "Q8_0", "Q4_K_M"])
    engine_row = next(row["rprm_lite"] for row in result["engine"]["rows"] if row["k"] == k)
    assert formats["rows"]["Q8_0"] == {**engine_row, "file_mb": meta["models"]["Q8_0"]["mb"]}  # not measured twice
    for fmt, row in formats["rows"].items():
        assert row["file_mb"] == meta["models"][fmt]["mb"]
        assert row["generated_tokens"] == k * QUICK.tokens * len(STEPS)


def test_cold_start_phases_add_up_without_torch(quick_run):
    cold = quick_run["result"]["cold_start"]
    assert len(cold["runs"]) == QUICK.cold_runs and cold["torch_imported"] is False
    for run in cold["runs"]:
        assert run["time_to_first_token_s"] == run["first_token"]
        assert run["model_load_s"] == pytest.approx(run["model_load_end"] - run["model_load_start"])
        assert run["startup_s"] + run["model_load_s"] + run["prefill_s"] + run["other_s"] == pytest.approx(
            run["time_to_first_token_s"])
        assert run["minus_load_s"] == pytest.approx(run["time_to_first_token_s"] - run["model_load_s"])
    assert cold["median"] == {key: statistics.median(run[key] for run in cold["runs"])
                              for key in speed.COLD_START_PHASES}


@pytest.mark.parametrize(("option", "message"), [
    (["--only", "engine,bogus"], "error: --only: unknown section(s) bogus; choose from reference, engine, scaling, "
                                 "formats, cold_start"),
    (["--shape", "huge"], "error: argument --shape: invalid choice: 'huge'"),
])
def test_a_bad_option_is_a_usage_error_before_any_work(option, message, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        speed.main(["--quick", "--out", str(tmp_path / "out"), *option])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_failed_measurement_is_reported_in_its_section_and_the_exit_code(quick_run, monkeypatch):
    class FailingChild:
        def __init__(self, module: str) -> None:
            self.module = module

        def __call__(self, variant: str, job) -> dict:
            raise MeasurementError(f"{variant} failed (exit 1):\nno luck")

    monkeypatch.setattr(speed, "Child", FailingChild)
    out = quick_run["out"]  # its models are built already
    with contextlib.redirect_stdout(io.StringIO()):
        assert speed.main(["--quick", "--shape", "tiny", "--only", "engine", "--out", str(out)]) == 1
    result = json.loads((out / "speed-quick-engine.json").read_text())
    assert list(result) == ["meta", "engine"] and result["engine"] == {"error": "rprm-lite failed (exit 1):\nno luck"}
    assert (out / "speed-quick-engine.md").read_text().endswith("\n\n### engine\nfailed: rprm-lite failed (exit 1):"
                                                                 "\nno luck\n")
