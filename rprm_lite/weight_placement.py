"""Where llama.cpp may put a model's weights: the one rule every model load follows.

Beside plain CPU memory, llama.cpp's CPU backend has "extra" buffer types that repack weights for faster
matmuls: AMX (Intel CPUs with AMX tiles: Sapphire Rapids and later Xeons) and CPU_REPACK (Q4_0, Q4_K, IQ4_NL and
MXFP4 for AVX2/AVX-512/NEON; Q2_K with AVX-512). One switch, `llama_model_params.use_extra_bufts`, turns both on
or off together. The AMX matmul of the llama.cpp that llama-cpp-python 0.3.x builds crashes the process
(SIGSEGV in `ggml_backend_amx_mul_mat`, ggml-org/llama.cpp#20824, closed without a fix) on such CPUs, in the
first decode of any model it took. So:

- on a CPU with AMX the extra buffer types are off: the weights stay in plain CPU memory. Q8_0, F16, BF16 and
  F32 models lose nothing but AMX (which ollama measured at -10% to +7% against AVX-512); Q4_0 and Q4_K models
  also lose CPU_REPACK's layout;
- on every other CPU they stay on, as llama.cpp's default (CPU_REPACK matters for Q4 models on AVX2);
- `RPRM_EXTRA_BUFFERS=on` opts in to them anyway (to try AMX, at the risk of that crash), `=off` turns them
  off anywhere, `=auto` (or unset) is the rule above.

The rule is applied by `model_params()` (the runtime's engine and anything built on llama-cpp-python's
`Llama`, through `apply_to_llama_cpp()`), and `llama_server_args()` for llama.cpp's own server.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rprm_lite.errors import InputError

if TYPE_CHECKING:  # llama_cpp is imported where it is used: `buffer_rule` needs none of it
    from llama_cpp import llama_model_params

ENV_VAR = "RPRM_EXTRA_BUFFERS"
CHOICES = ("auto", "on", "off")
AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16", "amx_fp16", "amx_complex"})
BUFFER_LINE = re.compile(r"(\S+) model buffer size\s*=\s*([0-9.]+) MiB")


@dataclass(frozen=True)
class BufferRule:
    use_extra_bufts: bool
    reason: str

    def describe(self) -> str:
        return f"extra buffer types {'on' if self.use_extra_bufts else 'off'} ({self.reason})"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them; empty where there is no /proc/cpuinfo (macOS has no AMX; on
    Windows the rule cannot see the flags and keeps llama.cpp's default: RPRM_EXTRA_BUFFERS=off there)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def buffer_rule(*, flags: frozenset[str] | None = None, env: dict[str, str] | None = None) -> BufferRule:
    """The rule for this machine (or for the given CPU flags and environment, in tests)."""
    environment: Mapping[str, str] = os.environ if env is None else env
    choice = environment.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise InputError(f"{ENV_VAR} must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "on":
        return BufferRule(True, f"{ENV_VAR}=on; on a CPU with AMX this risks llama.cpp#20824's crash")
    if choice == "off":
        return BufferRule(False, f"{ENV_VAR}=off")
    amx = sorted(AMX_FLAGS & (cpu_flags() if flags is None else flags))
    if amx:
        return BufferRule(False, f"this CPU has AMX ({', '.join(amx)}), whose llama.cpp matmul crashes "
                                 f"(llama.cpp#20824); {ENV_VAR}=on to try it")
    return BufferRule(True, f"no AMX on this {platform.machine() or 'CPU'}: llama.cpp's default")


def model_params(**fields: Any) -> llama_model_params:
    """llama.cpp's model parameters with the rule applied, then `fields` set (n_gpu_layers, vocab_only, ...)."""
    params = _default_model_params()
    params.use_extra_bufts = buffer_rule().use_extra_bufts
    for name, value in fields.items():
        setattr(params, name, value)
    return params


# llama.cpp's own default parameters, kept here once `apply_to_llama_cpp` has put `model_params` in their place
_original_default_params: Callable[[], llama_model_params] | None = None


def _default_model_params() -> llama_model_params:
    import llama_cpp

    return (_original_default_params or llama_cpp.llama_model_default_params)()


def apply_to_llama_cpp() -> None:
    """Make llama-cpp-python's own loaders (`llama_cpp.Llama`, and so `python -m llama_cpp.server`) follow the
    rule: they take their model parameters from `llama_model_default_params()` and offer no switch of their
    own. Idempotent."""
    global _original_default_params
    import llama_cpp
    import llama_cpp.llama_cpp as low_level

    if _original_default_params is not None:
        return
    _original_default_params = low_level.llama_model_default_params
    low_level.llama_model_default_params = model_params
    llama_cpp.llama_model_default_params = model_params


def llama_cpp_server_command() -> list[str]:
    """The command that starts llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) under
    the rule; append its own arguments."""
    code = ("import runpy, rprm_lite.weight_placement as rule; rule.apply_to_llama_cpp(); "
            "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", code]


def llama_server_args() -> list[str]:
    """The arguments that make llama.cpp's `llama-server` follow the rule (`--no-repack` turns the extra buffer
    types off there)."""
    return [] if buffer_rule().use_extra_bufts else ["--no-repack"]


def weight_buffers(log_lines: list[str]) -> dict[str, float]:
    """MiB of weights per buffer type, from llama.cpp's `load_tensors: X model buffer size = N MiB` lines."""
    sizes: dict[str, float] = {}
    for line in log_lines:
        match = BUFFER_LINE.search(line)
        if match:
            sizes[match.group(1)] = sizes.get(match.group(1), 0.0) + float(match.group(2))
    return sizes
