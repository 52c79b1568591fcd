"""`rprm-lite serve`: its options are ServeConfig's fields plus every score option, as request defaults
(--calibration, --cache and --prefix-cache are server-wide: a request cannot change them)."""

from __future__ import annotations

import sys
from typing import Any

import typer

from rprm_lite import cli as score_cli
from rprm_lite.commands import JOB_OPTIONS
from rprm_lite.config import SCORE_OPTIONS
from rprm_lite.options import command_options
from rprm_lite.serve.settings import SERVE_OPTIONS, ServeConfig

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command()
@command_options(server=SERVE_OPTIONS, settings=SCORE_OPTIONS, job=JOB_OPTIONS)
def serve(model: score_cli.ModelOpt = None, *, server: dict[str, Any], settings: dict[str, Any],
          job: dict[str, Any]) -> None:
    """Serve scoring over local HTTP/JSON (see the README's `rprm-lite serve` section)."""
    from rprm_lite.serve.server import serve as run

    cache = None if job.get("cache") is None else str(job["cache"])
    config = ServeConfig(**server, show_critiques=job["show_critiques"], cache=cache, prefix_cache=job["prefix_cache"])
    run(model, score_cli.score_overrides(settings), config, lora=job.get("lora", ()),
        on_ready=lambda url: print(f"rprm-lite serve: listening on {url}", file=sys.stderr, flush=True))
