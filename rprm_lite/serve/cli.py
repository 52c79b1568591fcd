"""`rprm-lite serve`: its options are ServeConfig's fields plus a `ScoreJob`'s (the model, its adapters, the caches,
--show-critiques) and every score option, as request defaults (--calibration, --cache and --prefix-cache are
server-wide: a request cannot change them)."""

from __future__ import annotations

import sys
from typing import Any

import typer

from rprm_lite.config import SCORE_OPTIONS
from rprm_lite.job import JOB_OPTIONS, ScoreJob
from rprm_lite.options import command_options
from rprm_lite.serve.settings import SERVE_OPTIONS, ServeConfig

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command()
@command_options(model=JOB_OPTIONS.only("model"), server=SERVE_OPTIONS, settings=SCORE_OPTIONS,
                 job=JOB_OPTIONS.only("show_critiques", "cache", "lora", "prefix_cache"))
def serve(*, model: dict[str, Any], server: dict[str, Any], settings: dict[str, Any], job: dict[str, Any]) -> None:
    """Serve scoring over local HTTP/JSON (see the README's `rprm-lite serve` section)."""
    from rprm_lite.serve.server import serve as run

    config = ServeConfig(**server)
    run(ScoreJob.of(None, job={**model, **job}, settings=settings), config,
        on_ready=lambda url: print(f"rprm-lite serve: listening on {url}", file=sys.stderr, flush=True))
