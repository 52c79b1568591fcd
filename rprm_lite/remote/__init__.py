"""The remote backend: the R-PRM recipe as a client of OpenAI-compatible servers (vLLM, SGLang,
llama-server, llama-cpp-python's server), tokenizing locally; standard library HTTP, no new dependency."""

from __future__ import annotations

from rprm_lite.remote.scorer import RemoteScorer, RemoteStepResult
from rprm_lite.remote.settings import RemoteConfig, parse_backend, remote_config
from rprm_lite.remote.transport import RemoteError

__all__ = ["RemoteConfig", "RemoteError", "RemoteScorer", "RemoteStepResult", "parse_backend", "remote_config"]
