"""The buffer-type rule (rprm_lite/weight_placement.py): no AMX buffer where llama.cpp's AMX matmul crashes, llama.cpp's
default elsewhere, and every load (engine, `llama_cpp.Llama`, the CLI, `convert --verify`) follows it.

This machine's CPU may or may not have AMX: the rule is checked on simulated CPU flags, and the loads are checked
for what llama.cpp really did with the weights (its buffer lines) under the real and the simulated flags.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rprm_lite import weight_placement
from rprm_lite.engine import Engine
from rprm_lite.errors import InputError
from rprm_lite.weight_placement import ENV_VAR, buffer_rule, cpu_flags, weight_buffers
from shared_paths import TINY_RPRM

SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"})
ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "solution.json"


@pytest.mark.parametrize(("flags", "env", "extra"), [
    (SAPPHIRE_RAPIDS, {}, False),
    (SAPPHIRE_RAPIDS, {ENV_VAR: "auto"}, False),
    (SAPPHIRE_RAPIDS, {ENV_VAR: "on"}, True),  # the user's opt-in to AMX
    (ZEN4, {}, True),
    (ZEN4, {ENV_VAR: "off"}, False),
    (frozenset(), {}, True),  # no /proc/cpuinfo (macOS, Windows): llama.cpp's default
])
def test_the_rule_turns_extra_buffers_off_exactly_where_amx_is(flags, env, extra):
    rule = buffer_rule(flags=flags, env=env)
    assert rule.use_extra_bufts is extra
    if flags is SAPPHIRE_RAPIDS and not env.get(ENV_VAR) == "on":
        assert "amx_bf16, amx_int8, amx_tile" in rule.reason and "llama.cpp#20824" in rule.reason
    assert rule.describe().startswith(f"extra buffer types {'on' if extra else 'off'} (")


def test_a_bad_setting_is_a_clear_error():
    with pytest.raises(InputError, match=rf"^{ENV_VAR} must be one of auto, on, off, got 'amx'$"):
        buffer_rule(flags=ZEN4, env={ENV_VAR: "amx"})


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\n"
                       "flags\t\t: fpu avx2 amx_bf16 amx_tile amx_int8\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16", "amx_tile", "amx_int8"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_buffer_lines_are_summed_per_type():
    lines = ["load_tensors:   CPU_Mapped model buffer size =     3.50 MiB\n",
             "load_tensors:   CPU_REPACK model buffer size =     1.25 MiB\n",
             "load_tensors:   CPU_Mapped model buffer size =     0.50 MiB\n", "llama_context: n_ctx = 512\n"]
    assert weight_buffers(lines) == {"CPU_Mapped": 4.0, "CPU_REPACK": 1.25}


@pytest.mark.parametrize("which", ["demo base (Q4_1, a type AMX takes)", "tiny R-PRM (Q8_0)"])
def test_models_never_land_in_the_amx_buffer_by_default(monkeypatch, request, which):
    monkeypatch.delenv(ENV_VAR, raising=False)
    model = request.getfixturevalue("demo_base") if which.startswith("demo") else TINY_RPRM
    engine = Engine(model, threads=1)
    try:
        assert engine.weight_buffers, "llama.cpp's buffer lines were not seen"
        assert "AMX" not in engine.weight_buffers
        assert engine.buffer_rule.use_extra_bufts is not bool(weight_placement.AMX_FLAGS & cpu_flags())
        assert sum(engine.weight_buffers.values()) == pytest.approx(model.stat().st_size / 2**20, rel=0.05)
    finally:
        engine.close()


@pytest.fixture(scope="module")
def q4_0_gguf(tmp_path_factory) -> Path:
    """A tiny Q4_0 model: the type llama.cpp's CPU_REPACK buffer repacks on AVX2 and NEON CPUs."""
    pytest.importorskip("tokenizers", reason="converting needs the convert extra")
    from rprm_lite.convert.converter import ConvertConfig, convert
    from rprm_lite.convert.random_model import build_random_checkpoint

    folder = tmp_path_factory.mktemp("q4")
    checkpoint = build_random_checkpoint(folder / "ckpt", tokenizer="small-bpe", seed=3)
    convert(ConvertConfig(source=str(checkpoint), output=folder / "q4_0.gguf", quant="Q4_0"))
    return folder / "q4_0.gguf"


def test_the_rule_reaches_llama_cpp(q4_0_gguf, monkeypatch):
    """Simulated AMX flags turn the extra buffers off in llama.cpp itself: no CPU_REPACK for a Q4_0 model that
    this CPU would otherwise repack."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(weight_placement, "cpu_flags", lambda: ZEN4)
    default = Engine(q4_0_gguf, threads=1)
    monkeypatch.setattr(weight_placement, "cpu_flags", lambda: SAPPHIRE_RAPIDS)
    amx_cpu = Engine(q4_0_gguf, threads=1)
    try:
        assert not amx_cpu.buffer_rule.use_extra_bufts
        assert set(amx_cpu.weight_buffers) <= {"CPU", "CPU_Mapped"}
        if {"avx2", "neon", "asimd"} & cpu_flags() or sys.platform == "darwin":
            assert "CPU_REPACK" in default.weight_buffers  # the default keeps what is fastest here
    finally:
        default.close()
        amx_cpu.close()


def test_llama_cpp_llama_follows_the_rule(q4_0_gguf, monkeypatch):
    """`llama_cpp.Llama` (convert --verify, the tests' llama_cpp.server) takes its parameters from the patched
    default: the same simulated AMX CPU loads it with the extra buffers off."""
    import llama_cpp

    weight_placement.apply_to_llama_cpp()
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(weight_placement, "cpu_flags", lambda: SAPPHIRE_RAPIDS)
    llm = llama_cpp.Llama(str(q4_0_gguf), n_ctx=64, verbose=False)
    assert llm.model_params.use_extra_bufts is False
    monkeypatch.setattr(weight_placement, "cpu_flags", lambda: ZEN4)
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True


def test_the_cli_scores_the_example_with_the_default_build_and_model(monkeypatch, demo_base):
    """No signal: the crash this rule prevents killed this very command on AMX CPUs. (Short critiques: the
    demo's model and build are what matter here, not its verdicts.)"""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("RPRM_MODEL", raising=False)
    done = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "score", str(EXAMPLE), "--json", "--k", "1",
                           "--max-tokens", "16"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"first_error_step"' in done.stdout
    info = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "info"], capture_output=True, text=True,
                          timeout=300)
    assert info.returncode == 0, info.stderr
    assert "  weights: CPU" in info.stdout and "  buffers: extra buffer types " in info.stdout


def test_convert_verify_runs_in_a_child_without_a_signal(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from rprm_lite.convert.random_model import build_random_checkpoint

    checkpoint = build_random_checkpoint(tmp_path / "ckpt", tokenizer="small-bpe", seed=4)
    done = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "convert", str(checkpoint), "-o",
                           str(tmp_path / "m.gguf"), "--quant", "Q8_0", "--verify"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.gguf").is_file()
