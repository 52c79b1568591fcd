"""The `rprm-lite` command line: a thin client of the library.

Options are validated once here (through `ScoreConfig`); library errors become one-line
messages on stderr with a non-zero exit, never tracebacks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rprm_lite.errors import RprmError
from rprm_lite.lazy_cli import LazyGroup

app = typer.Typer(cls=LazyGroup, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Step-by-step verdicts on math solutions with R-PRM, offline, on llama.cpp.")

ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="GGUF model (default: $RPRM_MODEL, "
                                                  "else the bundled model).", show_default=False)]
StyleOpt = Annotated[Optional[str], typer.Option("--prompt-style",
                                                 help="r-prm-eval (released evaluation prompt) or chatml.")]


@app.command()
def score(
    file: Annotated[str, typer.Argument(metavar="FILE", help="Solution JSON, ProcessBench item, JSONL (one per line), or - for stdin.")],
    model: ModelOpt = None,
    k: Annotated[Optional[int], typer.Option("--k", help="Critiques per step [default: 10].")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature; 0 is greedy [default: 0.95].")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling [default: 0.95].")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="A step scoring below this is wrong [default: 0.5].")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Max tokens per critique [default: 4096].")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for every sampled critique [default: 0].")] = None,
    all_steps: Annotated[bool, typer.Option("--all-steps", help="Score every step, not only up to the first error.")] = False,
    prompt_style: StyleOpt = None,
    aggregation: Annotated[Optional[str], typer.Option(help="Solution score: min, product, mean or last [default: min].")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object per solution.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Append JSONL results here as each "
                                                   "solution finishes; a rerun skips solutions already there.")] = None,
    show_critiques: Annotated[bool, typer.Option("--show-critiques", help="Print (or include in JSON) the critiques.")] = False,
    n_gpu_layers: Annotated[Optional[int], typer.Option("--n-gpu-layers", help="Layers to offload to CUDA/Metal; -1 for all.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads [default: all cores].")] = None,
    n_ctx: Annotated[Optional[int], typer.Option("--n-ctx", help="Context size cap [default: the model's].")] = None,
) -> None:
    """Score every step of one or more solutions and report the first wrong step."""
    from rprm_lite.run import ScoreJob, run_score_job

    overrides = _given(k=k, temperature=temperature, top_p=top_p, threshold=threshold, max_tokens=max_tokens,
                       seed=seed, all_steps=all_steps or None, prompt_style=prompt_style,
                       aggregation=aggregation, n_gpu_layers=n_gpu_layers, threads=threads, n_ctx=n_ctx)
    job = ScoreJob(source=file, model=model, overrides=overrides, json_out=json_out, output=output,
                   show_critiques=show_critiques)
    run_score_job(job)


@app.command()
def prompt(
    file: Annotated[str, typer.Argument(metavar="FILE", help="Solution file (the first solution is used unless --id is given).")],
    step: Annotated[int, typer.Option("--step", help="1-based step number.")],
    prompt_style: StyleOpt = None,
    solution_id: Annotated[Optional[str], typer.Option("--id", help="Which solution of a JSONL file.")] = None,
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


def main(argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="rprm-lite")
    except RprmError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
