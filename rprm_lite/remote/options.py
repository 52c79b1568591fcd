"""The remote backend's command-line options, shared by `score`, `solve`, the benchmarks, `rerank` and `data pairs`
(a job's scorer is made by `rprm_lite.job.make_scorer`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rprm_lite.errors import InputError
from rprm_lite.options import Options, option

if TYPE_CHECKING:
    from rprm_lite.remote.settings import RemoteConfig


@dataclass(frozen=True)
class RemoteOptions:
    """The remote backend's options (their values become a RemoteConfig through `remote_from_options`)."""

    backend: str | None = option(None, help="local (the llama.cpp engine) [default], or URL[,URL...] of "
                                 "OpenAI-compatible servers (vLLM, SGLang, llama-server, llama-cpp-python); "
                                 "KIND+URL names the server kind.")
    server_model: str | None = option(None, help="Remote: the served model's name.",
                                      shown_default="the first in /v1/models")
    api_key_env: str | None = option(None, help="Remote: the environment variable holding the servers' API key.")
    concurrency: int | None = option(None, help="Remote: solutions in flight at once.", shown_default="1")
    vocab: Path | None = option(None, help="Remote: GGUF whose vocabulary tokenizes the prompts (a vocabulary-only "
                                "GGUF of the served model).", shown_default="--model, else $RPRM_MODEL")


REMOTE_OPTIONS = Options(RemoteOptions, given=True)


def remote_from_options(backend: str | None = None, *, server_model: str | None = None, api_key_env: str | None = None,
                        concurrency: int | None = None, vocab: Path | None = None) -> RemoteConfig | None:
    """The RemoteConfig of the options given, or None for the local engine (`vocab` is only checked: the
    local engine tokenizes with its own model)."""
    from rprm_lite.remote.settings import parse_backend, remote_config

    if vocab is not None and parse_backend(backend) is None:
        raise InputError("--vocab needs --backend URL (a remote server); the local engine tokenizes with --model")
    return remote_config(backend, server_model=server_model, api_key_env=api_key_env, concurrency=concurrency)


def vocab_path(vocab: Path | str | None, model: Path | str | None) -> Path:
    """The file that tokenizes for a remote run: --vocab, else --model, else $RPRM_MODEL (never the bundled
    demo model: its vocabulary need not be the served model's)."""
    from rprm_lite.model_file import MODEL_ENV

    chosen = vocab or model or os.environ.get(MODEL_ENV)
    if not chosen:
        raise InputError("--backend URL tokenizes prompts locally: pass --vocab FILE.gguf (a vocabulary-only GGUF "
                         "of the served model, such as ggml-vocab-qwen2.gguf for R-PRM-7B) or --model")
    path = Path(chosen)
    if not path.is_file():
        raise InputError(f"{path}: vocabulary file not found (--vocab expects a GGUF file)")
    return path

