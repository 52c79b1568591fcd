"""LoRA adapters in the runtime: `--lora ADAPTER.gguf[:SCALE]` on score and info, `Scorer(lora=...)`, the checks
against the base before scoring, the result's config and the step-cache key.

The adapters are made by the project's converter from random peft-format folders (numpy, no torch) against
tiny random Llama checkpoints with a small BPE trained here, so nothing from ../shared is needed. The round
trip against transformers and peft (base + adapter equal to the merged model) is in
tests/convert/test_convert_lora.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from rprm_lite.adapter_file import inspect_adapter, lora_specs, parse_lora
from rprm_lite.cli import main
from rprm_lite.convert.converter import ConvertConfig, convert
from rprm_lite.convert.random_model import build_random_checkpoint, build_random_lora
from rprm_lite.errors import InputError, ModelFileError
from rprm_lite.model_file import inspect_model
from rprm_lite.scoring import Scorer
from rprm_lite.step_cache import StepCache

SETTINGS = {"k": 2, "temperature": 1.0, "max_tokens": 12, "all_steps": True, "threads": 1, "seed": 3}
QUESTION, STEPS = "What is 2+3?", ["2+3 = 5.", "So the answer is 6."]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A base Llama, an adapter for it, a twin base (same shapes, other weights), and another base (other
    shapes) with an adapter made for it."""
    root = tmp_path_factory.mktemp("lora")
    base = build_random_checkpoint(root / "base", arch="llama", tokenizer="small-bpe", seed=1)
    twin = build_random_checkpoint(root / "twin", arch="llama", tokenizer="small-bpe", seed=2)
    other = build_random_checkpoint(root / "other", arch="llama", tokenizer="small-bpe", seed=2, ffn=96)
    made = {}
    for name, folder in (("base", base), ("twin", twin), ("other", other)):
        made[name] = root / f"{name}.gguf"
        convert(ConvertConfig(source=str(folder), output=made[name], outtype="f32", prompt_style="chatml"))
    made["lora"] = root / "lora.gguf"  # records the base's sha256
    convert(ConvertConfig(source=str(build_random_lora(root / "peft", base, seed=5)), output=made["lora"],
                          outtype="f32", base_gguf=made["base"], prompt_style="chatml", max_tokens=77))
    made["other_lora"] = root / "other-lora.gguf"  # records no base: refused on its shapes alone
    convert(ConvertConfig(source=str(build_random_lora(root / "other-peft", other, seed=6)),
                          output=made["other_lora"], outtype="f32"))
    return made


def cli(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process, through its own error-to-exit boundary: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def solution_file(tmp_path: Path) -> Path:
    solution = tmp_path / "solution.json"
    solution.write_text(json.dumps({"question": QUESTION, "steps": STEPS}), encoding="utf-8")
    return solution


def score(model: Path, **kwargs) -> list[float]:
    """P(Yes) of every critique of every step."""
    with Scorer(model, **SETTINGS, **kwargs) as scorer:
        return [p for step in scorer.score(QUESTION, STEPS).steps for p in step.p_yes]


def test_an_adapter_changes_the_scores_and_its_scale_counts(files):
    base, adapted = score(files["base"]), score(files["base"], lora=files["lora"])
    assert base != adapted
    assert score(files["base"], lora=(files["lora"], 0.0)) == base  # scale 0 is the base model
    assert score(files["base"], lora=f"{files['lora']}:0.5") not in (base, adapted)
    # the same adapter twice at half scale each adds the same delta as once at full scale
    twice = score(files["base"], lora=[(files["lora"], 0.5), (files["lora"], 0.5)])
    assert twice == pytest.approx(adapted, abs=1e-4)


def test_cli_records_the_adapter_in_every_result(files, tmp_path, capsys):
    code, out, err = cli(capsys, "score", solution_file(tmp_path), "-m", files["base"],
                         "--lora", f"{files['lora']}:0.5", "--json", "--k", "1", "--max-tokens", "8", "--threads", "1")
    assert code == 0, err
    config = json.loads(out)["config"]
    adapter = inspect_adapter(files["lora"], inspect_model(files["base"]))
    assert config["lora"] == [{"file": "lora.gguf", "sha256": adapter.sha256, "scale": 0.5}]
    assert config["model_sha256"] == inspect_model(files["base"]).sha256
    assert config["max_tokens"] == 8  # the option over the adapter's rprm.max_tokens


def test_adapter_metadata_overrides_the_base_defaults(files):
    with Scorer(files["base"], lora=files["lora"], threads=1) as scorer:
        assert scorer.config.max_tokens == 77  # rprm.max_tokens of the adapter; the base says 4096
    with Scorer(files["base"], threads=1) as scorer:
        assert scorer.config.max_tokens == 4096


def test_a_different_adapter_never_reuses_cached_steps(files):
    cache = StepCache()
    score(files["base"], cache=cache)
    assert (cache.hits, cache.misses) == (0, 2)
    score(files["base"], cache=cache, lora=files["lora"])
    assert (cache.hits, cache.misses) == (0, 4)
    score(files["base"], cache=cache, lora=(files["lora"], 0.5))
    assert (cache.hits, cache.misses) == (0, 6)
    score(files["base"], cache=cache, lora=files["lora"])
    assert (cache.hits, cache.misses) == (2, 6)  # the same adapter and scale again


@pytest.mark.parametrize("case, message", [
    ("other_lora", "tensor blk.0.ffn_down.weight of the base base.gguf is 128 x 64 (ggml order), so lora_a must be "
                   "[128, r] and lora_b [r, 64]; got [96, 4] and [4, 64]: this adapter is for another base model"),
    ("base_sha", "the adapter was converted against a base with sha256"),
    ("model_as_lora", "not a LoRA adapter (general.type is 'model', expected 'adapter')"),
])
def test_an_adapter_for_another_base_is_refused_before_scoring(files, tmp_path, capsys, case, message):
    model, lora = {"other_lora": (files["base"], files["other_lora"]),
                   "base_sha": (files["twin"], files["lora"]),
                   "model_as_lora": (files["base"], files["other"])}[case]
    results = tmp_path / "results.jsonl"
    code, out, err = cli(capsys, "score", solution_file(tmp_path), "-m", model, "--lora", lora, "-o", results)
    assert (code, out) == (3, "")
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {lora}: ") and message in lines[0]
    assert not results.exists()  # refused before the results file, let alone the model, was touched


def test_an_adapter_given_as_the_model_is_refused(files):
    with pytest.raises(ModelFileError, match="is a LoRA adapter, not a model; pass its base model with --model"):
        inspect_model(files["lora"])


def test_info_lists_the_adapters_and_their_settings(files, capsys):
    code, out, err = cli(capsys, "info", "-m", files["base"], "--lora", f"{files['lora']}:0.25")
    assert code == 0, err
    adapter = inspect_adapter(files["lora"], inspect_model(files["base"]))
    assert f"lora: {files['lora']} (scale 0.25)\n  rank 4, alpha 8, 14 matrices" in out
    assert f"sha256 {adapter.sha256}" in out
    assert "  rprm.max_tokens: 77" in out
    assert out.splitlines()[-1].startswith("settings: ") and "max_tokens=77" in out.splitlines()[-1]


def test_a_results_file_is_not_resumed_with_another_adapter(files, tmp_path, capsys):
    common = ["score", solution_file(tmp_path), "-m", files["base"], "--k", "1", "--max-tokens", "8", "--threads", "1",
              "-o", tmp_path / "results.jsonl", "--json"]
    assert cli(capsys, *common)[0] == 0
    code, _, err = cli(capsys, *common, "--lora", files["lora"])
    assert code == 2
    assert "holds results made with other settings" in err and "lora: None before" in err


def test_lora_arguments():
    assert parse_lora("adapter.gguf") == (Path("adapter.gguf"), 1.0)
    assert parse_lora("adapter.gguf:0.5") == (Path("adapter.gguf"), 0.5)
    assert parse_lora("dir:v2/adapter.gguf") == (Path("dir:v2/adapter.gguf"), 1.0)  # not a number: part of the path
    assert lora_specs([("a.gguf", 2), Path("b.gguf"), "c.gguf:-1"]) == [
        (Path("a.gguf"), 2.0), (Path("b.gguf"), 1.0), (Path("c.gguf"), -1.0)]
    with pytest.raises(InputError, match="finite number"):
        parse_lora("adapter.gguf:nan")
    with pytest.raises(InputError, match="expected a path, 'PATH:SCALE' or a"):
        lora_specs([3])


def test_serve_applies_the_adapter_and_lists_it(files, tmp_path, capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from serve_process import Server

    server = Server(files["base"], "--port", 0, "--lora", f"{files['lora']}:0.5", "--k", 1, "--max-tokens", 8,
                    "--threads", 1).wait_listening()
    try:
        server.wait_healthy()  # the port is bound before the model has loaded
        info = json.loads(http_call(f"{server.url}/v1/info"))
        body = {"question": QUESTION, "steps": STEPS}
        served = json.loads(http_call(f"{server.url}/v1/score", body))
    finally:
        assert server.stop() == 0
    adapter = inspect_adapter(files["lora"], inspect_model(files["base"]))
    [listed] = info["model"]["lora"]
    assert listed.pop("metadata")["rprm.max_tokens"] == 77
    assert listed == {**adapter.record(), "scale": 0.5}
    assert info["settings"]["max_tokens"] == 8 and info["model"]["sha256"] == inspect_model(files["base"]).sha256
    code, out, _ = cli(capsys, "score", solution_file(tmp_path), "-m", files["base"], "--lora", f"{files['lora']}:0.5",
                       "--k", "1", "--max-tokens", "8", "--threads", "1", "--json")
    assert code == 0
    printed = json.loads(out)
    assert [s["p_yes"] for s in served["steps"]] == [s["p_yes"] for s in printed["steps"]]
    assert served["config"]["lora"] == printed["config"]["lora"] == [{**adapter.record(), "scale": 0.5}]


def test_serve_refuses_an_adapter_for_another_base_before_binding(files):
    result = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "serve", "--model", str(files["base"]), "--port",
                             "0", "--lora", str(files["other_lora"])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3
    assert result.stderr.startswith(f"error: {files['other_lora']}: tensor ") and result.stderr.count("\n") == 1


def http_call(url: str, body: dict | None = None) -> str:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read().decode()


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[: len(data) - 100], "truncated: tensor "),
    (lambda data: b"GGUX" + data[4:], "not a GGUF file (expected magic b'GGUF', got b'GGUX')"),
    (lambda data: data[:40], "corrupt or truncated GGUF header"),
])
def test_a_damaged_adapter_is_one_error_line(files, tmp_path, capsys, damage, message):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(damage(files["lora"].read_bytes()))
    code, out, err = cli(capsys, "score", solution_file(tmp_path), "-m", files["base"], "--lora", broken)
    assert (code, out) == (3, "")
    assert err.startswith(f"error: {broken}: ") and message in err and err.count("\n") == 1


def test_a_calibration_fit_without_adapters_is_not_applied_to_an_adapted_model(files, tmp_path, capsys):
    """A calibration records the adapters it was fit with (tests/bench/test_calibration_adapters.py); one that
    records none was fit on the base alone."""
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"format": "rprm-lite-calibration", "version": 1, "threshold": 0.5,
                                       "model_sha256": inspect_model(files["base"]).sha256}))
    code, out, err = cli(capsys, "score", solution_file(tmp_path), "-m", files["base"], "--lora", files["lora"],
                         "--calibration", calibration)
    assert (code, out) == (2, "")
    sha256 = inspect_adapter(files["lora"], inspect_model(files["base"])).sha256
    assert err == (f"error: --calibration {calibration} was fit with no LoRA adapter, but this model runs with LoRA "
                   f"adapter(s) lora.gguf (sha256 {sha256[:12]}..., scale 1); adapters and their scales change the "
                   "scores: fit one for these with `rprm-lite calibrate`\n")


def test_remote_scoring_refuses_an_adapter(files, tmp_path, capsys):
    code, out, err = cli(capsys, "score", solution_file(tmp_path), "--backend", "http://127.0.0.1:9", "--lora",
                         files["lora"])
    assert (code, out) == (2, "")
    assert err.startswith("error: --lora applies adapters to the local engine") and err.count("\n") == 1


def test_llama_cpp_refusing_an_adapter_is_a_model_file_error_and_frees_the_model(files, monkeypatch):
    """Our pre-flight can pass an adapter that llama.cpp still refuses (a type it does not take, no memory)."""
    import llama_cpp

    from rprm_lite import engine

    freed = []
    monkeypatch.setattr(llama_cpp, "llama_adapter_lora_init", lambda model, path: None)
    real_free = llama_cpp.llama_model_free
    monkeypatch.setattr(llama_cpp, "llama_model_free", lambda model: (freed.append(model), real_free(model)))
    with pytest.raises(ModelFileError, match=r"llama\.cpp could not load this LoRA adapter onto base\.gguf"):
        engine.Engine(files["base"], threads=1, loras=[(files["lora"], 1.0)])
    assert len(freed) == 1


def test_a_context_the_adapters_could_not_be_applied_to_is_never_used(files, monkeypatch):
    import llama_cpp

    from rprm_lite import engine

    model = engine.Engine(files["base"], threads=1, loras=[(files["lora"], 1.0)])
    try:
        monkeypatch.setattr(llama_cpp, "llama_set_adapters_lora", lambda *args: -1)
        with pytest.raises(ModelFileError, match="could not apply 1 LoRA adapter"):
            model.ensure_context(256, 2)
        assert model.ctx is None and model.n_ctx == 0  # the next call makes a new context and applies them again
        monkeypatch.undo()
        model.ensure_context(256, 2)
        assert model.ctx is not None
    finally:
        model.close()
