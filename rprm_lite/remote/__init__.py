"""The remote backend: the R-PRM recipe as a client of OpenAI-compatible servers (vLLM, SGLang,
llama-server, llama-cpp-python's server), tokenizing locally; standard library HTTP, no new dependency.

Names load on first use, so the CLI can import the option parsing without loading llama.cpp.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "RemoteScorer": "rprm_lite.remote.scorer", "RemoteStepResult": "rprm_lite.remote.scorer",
    "RemoteConfig": "rprm_lite.remote.settings", "parse_backend": "rprm_lite.remote.settings",
    "remote_config": "rprm_lite.remote.settings", "RemoteError": "rprm_lite.remote.transport",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rprm_lite.remote' has no attribute {name!r}")
