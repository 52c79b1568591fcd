"""Commands imported only when run: the groups of the heavier packages (convert, training, bench), and the
runtime's own `rerank`, `serve` and `calibrate`, which `score` need not load.

`rprm-lite score` must start fast and never import torch, so the groups below are registered by
name and help text; their module is imported only when the command itself is invoked.
"""

from __future__ import annotations

import importlib
from typing import Any

from typer.core import TyperGroup

from rprm_lite.errors import RprmError

# command name -> (module, attribute holding a typer.Typer, one-line help)
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "convert": ("rprm_lite.convert.cli", "app", "Convert a Hugging Face checkpoint to a (quantized) GGUF."),
    "data": ("rprm_lite.training.cli", "data_app", "Build training data: seed critiques, preference pairs."),
    "train": ("rprm_lite.training.cli", "train_app", "Train an R-PRM: SFT and DPO."),
    "bench": ("rprm_lite.bench.cli", "app", "Benchmarks: ProcessBench, PRMBench, best-of-N, speed."),
    "rerank": ("rprm_lite.rerank_command", "app", "Pick the best of N candidate solutions by PRM score."),
    "serve": ("rprm_lite.serve.cli", "app", "Serve scoring over local HTTP/JSON, for desktop apps."),
    "calibrate": ("rprm_lite.calibrate_command", "app", "Fit a calibration file (threshold, score map) on "
                  "labelled predictions."),
}


def load_lazy_command(name: str) -> Any:
    import typer.main

    module_name, attribute, _ = LAZY_COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RprmError(
            f"`rprm-lite {name}` needs optional dependencies that are not installed ({exc.name or exc}); "
            f"install them with: pip install 'rprm-lite[{_extra_for(name)}]'") from None
    command = typer.main.get_command(getattr(module, attribute))
    command.name = name
    return command


def _extra_for(name: str) -> str:
    return {"convert": "convert", "data": "train", "train": "train", "serve": "serve"}.get(name, "bench")


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *LAZY_COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in LAZY_COMMANDS:
            return load_lazy_command(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # Listing the lazy groups must not import them (that would import torch on --help).
        rows = []
        for name in super().list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(60)))
        rows += [(name, help_text) for name, (_, _, help_text) in LAZY_COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
