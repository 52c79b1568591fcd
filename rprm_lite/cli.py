"""The `rprm-lite` command line: a thin client of the library.

Options are validated once here (through `ScoreConfig`); library errors become one-line
messages on stderr with a non-zero exit, never tracebacks.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from rprm_lite.errors import RprmError

try:  # typer 0.29+ carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_errors
from rprm_lite.lazy_cli import LazyGroup
from rprm_lite.remote.options import ApiKeyEnvOpt, BackendOpt, ConcurrencyOpt, ServerModelOpt, VocabOpt

app = typer.Typer(cls=LazyGroup, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Step-by-step verdicts on math solutions with R-PRM, offline, on llama.cpp.")

ModelOpt = Annotated[Path | None, typer.Option("--model", "-m", help="GGUF model (default: $RPRM_MODEL, "
                                                  "else the bundled model).", show_default=False)]
StyleOpt = Annotated[str | None, typer.Option("--prompt-style",
                                                 help="r-prm-eval (released evaluation prompt) or chatml.")]


Opt = typer.Option
FileArg = Annotated[str, typer.Argument(
    metavar="FILE", help="Solution JSON, ProcessBench item, JSONL (one per line), or - for stdin.")]
KOpt = Annotated[int | None, Opt("--k", help="Critiques per step [default: 10].")]
TemperatureOpt = Annotated[float | None, Opt(help="Sampling temperature; 0 is greedy [default: 0.95].")]
TopPOpt = Annotated[float | None, Opt("--top-p", help="Nucleus sampling [default: 0.95].")]
ThresholdOpt = Annotated[float | None, Opt(help="A step scoring below this is wrong [default: 0.5].")]
MaxTokensOpt = Annotated[int | None, Opt("--max-tokens", help="Max tokens per critique [default: 4096].")]
SeedOpt = Annotated[int | None, Opt(help="Seed for every sampled critique [default: 0].")]
VerdictOpt = Annotated[str | None, Opt(help="How P(Yes) is read: single-pass (in the decode that writes the "
                                        "verdict phrase) or released (the released evaluation's second pass "
                                        "over the cleaned critique) [default: single-pass].")]
AllStepsOpt = Annotated[bool, Opt("--all-steps", help="Score every step, not only up to the first error.")]
AggregationOpt = Annotated[str | None, Opt(help="Solution score: min, product, mean or last [default: min].")]
JsonOpt = Annotated[bool, Opt("--json", help="Print one JSON object per solution.")]
OutputOpt = Annotated[Path | None, Opt("--output", "-o", help="Append JSONL results here as each solution "
                                          "finishes; a rerun skips solutions already there.")]
CritiquesOpt = Annotated[bool, Opt("--show-critiques", help="Print (or include in JSON) the critiques.")]
GpuOpt = Annotated[int | None, Opt("--n-gpu-layers", help="Layers to offload to CUDA/Metal; -1 for all.")]
ThreadsOpt = Annotated[int | None, Opt(help="CPU threads [default: all cores].")]
NCtxOpt = Annotated[int | None, Opt("--n-ctx", help="KV cache cap in tokens (prompt + K critiques).")]
AdaptiveOpt = Annotated[bool, Opt("--adaptive", help="Adaptive K: draw critiques in waves, up to --k, and stop a step "
                                   "once its verdict is settled with --confidence.")]
ConfidenceOpt = Annotated[float | None, Opt(help="Adaptive K: how sure the stopping rule must be, in (0.5, 1]; 1 "
                                             "never stops early [default: 0.8].")]
WaveOpt = Annotated[int | None, Opt(help="Adaptive K: critiques decoded together per wave [default: 2].")]
RuleOpt = Annotated[str | None, Opt("--adaptive-rule", help="Adaptive K: beta (posterior on the mean), betting "
                                     "(confidence sequence) or window (last critiques agree) [default: beta].")]
BandOpt = Annotated[str | None, Opt("--uncertain-band", metavar="LOW,HIGH", help="Verdict 'uncertain' for a "
                                    "score in [LOW, HIGH), which must hold the threshold; wrong below LOW.")]
CalibrationOpt = Annotated[Path | None, Opt(help="A calibration file from `rprm-lite calibrate` for this model: "
                                            "its threshold, and its map for the scores.")]
CacheOpt = Annotated[Path | None, Opt(help="Folder keeping step results across runs: unchanged steps of an "
                                      "edited solution are not scored again.")]


@app.command()
def score(file: FileArg, model: ModelOpt = None, k: KOpt = None, temperature: TemperatureOpt = None,
          top_p: TopPOpt = None, threshold: ThresholdOpt = None, max_tokens: MaxTokensOpt = None,
          seed: SeedOpt = None, all_steps: AllStepsOpt = False, prompt_style: StyleOpt = None,
          verdict: VerdictOpt = None, aggregation: AggregationOpt = None, json_out: JsonOpt = False,
          output: OutputOpt = None,
          show_critiques: CritiquesOpt = False, n_gpu_layers: GpuOpt = None, threads: ThreadsOpt = None,
          n_ctx: NCtxOpt = None, backend: BackendOpt = None, server_model: ServerModelOpt = None,
          api_key_env: ApiKeyEnvOpt = None, concurrency: ConcurrencyOpt = None, vocab: VocabOpt = None,
          adaptive: AdaptiveOpt = False, confidence: ConfidenceOpt = None, wave: WaveOpt = None,
          adaptive_rule: RuleOpt = None, uncertain_band: BandOpt = None, calibration: CalibrationOpt = None,
          cache: CacheOpt = None) -> None:
    """Score every step of one or more solutions and report the first wrong step."""
    from rprm_lite.remote.options import remote_from_options
    from rprm_lite.run import ScoreJob, run_score_job

    overrides = score_overrides(k=k, temperature=temperature, top_p=top_p, threshold=threshold,
                                max_tokens=max_tokens, seed=seed, all_steps=all_steps, prompt_style=prompt_style,
                                verdict=verdict, aggregation=aggregation, n_gpu_layers=n_gpu_layers, threads=threads,
                                n_ctx=n_ctx, adaptive=adaptive, confidence=confidence, wave=wave,
                                adaptive_rule=adaptive_rule, uncertain_band=uncertain_band, calibration=calibration)
    job = ScoreJob(source=file, model=model, overrides=overrides, json_out=json_out, output=output,
                   show_critiques=show_critiques, vocab=vocab, cache=cache,
                   remote=remote_from_options(backend, server_model=server_model, api_key_env=api_key_env,
                                              concurrency=concurrency, vocab=vocab))
    run_score_job(job)


@app.command()
def prompt(
    file: Annotated[str, typer.Argument(metavar="FILE", help="Solution file (its first solution unless --id).")],
    step: Annotated[int, typer.Option("--step", help="1-based step number.")],
    prompt_style: StyleOpt = None,
    solution_id: Annotated[str | None, typer.Option("--id", help="Which solution of a JSONL file.")] = None,
) -> None:
    """Print the exact prompt text for one step, byte for byte."""
    from rprm_lite.run import prompt_text

    sys.stdout.write(prompt_text(file, step=step, style=prompt_style or "r-prm-eval", solution_id=solution_id))


@app.command()
def info(model: ModelOpt = None) -> None:
    """Show the llama.cpp build, the model and the resolved default settings."""
    from rprm_lite.run import info_text

    sys.stdout.write(info_text(model))


def _given(**options: Any) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


def score_overrides(*, all_steps: bool = False, adaptive: bool = False, threshold: float | None = None,
                    uncertain_band: str | None = None, calibration: Path | None = None,
                    **options: Any) -> dict[str, Any]:
    """The `ScoreConfig` fields of the score options given (None and an unset flag: not given), as
    `score` and `serve` take them; `uncertain_band` as typed (LOW,HIGH)."""
    from rprm_lite.uncertain import parse_band

    if calibration is not None and threshold is not None:
        raise RprmError("--threshold and --calibration both set the threshold; the calibration file holds "
                        "its own (leave out --threshold)")
    return _given(**options, all_steps=all_steps or None, adaptive=adaptive or None, threshold=threshold,
                  uncertain_band=None if uncertain_band is None else parse_band(uncertain_band),
                  calibration=None if calibration is None else str(calibration))


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure is one `error: ...` line on stderr and a documented exit code."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="rprm-lite", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()  # `rprm-lite` alone prints the help
        sys.exit(2)
    except click_errors.UsageError as exc:  # option-parser errors: one line, not click's usage box
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _fail(exc.format_message() + where, 2)
    except click_errors.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except RprmError as exc:
        _fail(str(exc), exc.exit_code)
    except BrokenPipeError:  # `rprm-lite score ... | head`: the reader left, nothing to report
        sys.stderr.close()
        sys.exit(1)
    except OSError as exc:  # stdout or stderr on a full disk, and the like
        _fail(f"{exc.filename or 'output'}: {exc.strerror or exc}", 1)
    sys.exit(code if isinstance(code, int) else 0)  # Ctrl-C arrives here as 130, after run.py's note


def exit_on_error(*, interrupted: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator for the commands of the tool groups, which also run on their own (tests, `python -m`):
    a library error becomes one `error:` line on stderr and the error's exit code, never a traceback;
    with `interrupted`, Ctrl-C prints that line and exits 130."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except RprmError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                if interrupted is None:
                    raise
                typer.echo(interrupted, err=True)
                raise typer.Exit(130) from None
        return wrapper
    return decorate


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
