"""`rprm-lite serve`: its options are ServeConfig's fields plus every score option, as request defaults
(--calibration and --cache are server-wide: a request cannot change them)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rprm_lite import cli as score_cli
from rprm_lite.serve import settings

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
Opt = typer.Option


@app.command()
def serve(
    model: score_cli.ModelOpt = None,
    host: Annotated[str, Opt(help="Address to bind; any other than loopback needs --api-key-env.")] = "127.0.0.1",
    port: Annotated[int, Opt(help="Port; 0 picks a free one (the URL is printed).")] = 8080,
    max_queue: Annotated[int, Opt("--max-queue", help="Requests that may wait while one is scored; "
                                  "more get 503 with Retry-After.")] = settings.DEFAULT_MAX_QUEUE,
    max_body_bytes: Annotated[int, Opt("--max-body-bytes", help="Largest request body.")] = (
        settings.DEFAULT_MAX_BODY_BYTES),
    max_steps: Annotated[int, Opt("--max-steps", help="Most steps per solution.")] = settings.DEFAULT_MAX_STEPS,
    api_key_env: Annotated[str | None, Opt("--api-key-env", metavar="NAME", help="Environment variable holding "
                                           "the API key requests must send as 'Authorization: Bearer <key>'.")
                           ] = None,
    cors_origin: Annotated[list[str] | None, Opt("--cors-origin", metavar="ORIGIN", help="Origin allowed to call "
                                                 "from a browser (repeat for more); none by default.")] = None,
    k: score_cli.KOpt = None, temperature: score_cli.TemperatureOpt = None, top_p: score_cli.TopPOpt = None,
    threshold: score_cli.ThresholdOpt = None, max_tokens: score_cli.MaxTokensOpt = None,
    seed: score_cli.SeedOpt = None, all_steps: score_cli.AllStepsOpt = False, prompt_style: score_cli.StyleOpt = None,
    verdict: score_cli.VerdictOpt = None, aggregation: score_cli.AggregationOpt = None,
    n_gpu_layers: score_cli.GpuOpt = None, threads: score_cli.ThreadsOpt = None, n_ctx: score_cli.NCtxOpt = None,
    adaptive: score_cli.AdaptiveOpt = False, confidence: score_cli.ConfidenceOpt = None,
    wave: score_cli.WaveOpt = None, adaptive_rule: score_cli.RuleOpt = None,
    uncertain_band: score_cli.BandOpt = None, calibration: score_cli.CalibrationOpt = None,
    cache: score_cli.CacheOpt = None, show_critiques: score_cli.CritiquesOpt = False,
) -> None:
    """Serve scoring over local HTTP/JSON (see the README's `rprm-lite serve` section)."""
    from rprm_lite.serve.server import serve as run

    overrides = score_cli.score_overrides(
        k=k, temperature=temperature, top_p=top_p, threshold=threshold, max_tokens=max_tokens, seed=seed,
        all_steps=all_steps, prompt_style=prompt_style, verdict=verdict, aggregation=aggregation,
        n_gpu_layers=n_gpu_layers, threads=threads, n_ctx=n_ctx, adaptive=adaptive, confidence=confidence,
        wave=wave, adaptive_rule=adaptive_rule, uncertain_band=uncertain_band, calibration=calibration)
    config = settings.ServeConfig(host=host, port=port, max_queue=max_queue, max_body_bytes=max_body_bytes,
                                  max_steps=max_steps, api_key_env=api_key_env, cors_origins=tuple(cors_origin or ()),
                                  show_critiques=show_critiques, cache=None if cache is None else str(cache))
    run(model, overrides, config, on_ready=lambda url: print(f"rprm-lite serve: listening on {url}",
                                                             file=sys.stderr, flush=True))
