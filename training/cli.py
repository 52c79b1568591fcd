"""The `rprm-lite data ...` and `rprm-lite train ...` commands (registered lazily by the main CLI).

Each command's options are generated from the fields of its config dataclass, so the CLI, the
Python API and the saved metadata can never disagree. Command bodies only call the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from rprm_lite.cli import exit_on_error
from rprm_lite.options import Options, command_options
from rprm_lite.progress import ProgressBar
from rprm_lite.training.jobconfig import JobConfig
from rprm_lite.training.pairs import PairsConfig
from rprm_lite.training.seed_critiques import SeedConfig
from rprm_lite.training.train_config import DPORunConfig, SFTRunConfig

data_app = typer.Typer(help="Build training data: seed critiques, preference pairs.", no_args_is_help=True,
                       add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
train_app = typer.Typer(help="Train an R-PRM: SFT and DPO.", no_args_is_help=True,
                        add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def config_command(app: typer.Typer, name: str, config_class: type[JobConfig],
                   run: Callable[[Any], str], help: str) -> None:
    """Register `run(config)` as command `name`, with one option per field of `config_class`."""

    @exit_on_error()
    @command_options(config=Options(config_class))
    def command(*, config: dict[str, Any]) -> None:
        typer.echo(run(config_class(**config)))

    app.command(name, help=help)(command)


def run_seed(config: SeedConfig) -> str:
    from rprm_lite.training.seed_critiques import build_seed_data

    with ProgressBar("critiques") as bar:
        report = build_seed_data(config, on_result=lambda r: bar.update(r.new, r.todo))
    return report.summary()


def run_pairs(config: PairsConfig) -> str:
    from rprm_lite.training.pairs import build_pairs

    with ProgressBar("steps") as bar:
        report = build_pairs(config, on_step=lambda r: bar.update(r.new_steps, r.todo))
    return report.summary()


def run_sft(config: SFTRunConfig) -> str:
    from rprm_lite.training.sft import train_sft

    return train_summary(train_sft(config))


def run_dpo(config: DPORunConfig) -> str:
    from rprm_lite.training.dpo import train_dpo

    return train_summary(train_dpo(config))


def train_summary(summary: Any) -> str:
    loss = "n/a" if summary.final_loss is None else f"{summary.final_loss:.4f}"
    rate = "n/a" if summary.tokens_per_second is None else f"{summary.tokens_per_second:,.0f}"
    return (f"trained {summary.steps} steps on {summary.examples} examples "
            f"({summary.skipped_too_long} skipped as too long); last loss {loss}; {rate} tokens/s; "
            f"checkpoint saved to {summary.out}")


config_command(data_app, "seed", SeedConfig, run_seed,
               "Ask a teacher to critique labelled steps; keep critiques whose verdict agrees with the label.")
config_command(data_app, "pairs", PairsConfig, run_pairs,
               "Sample K critiques per labelled step from a model; pair agreeing with disagreeing ones.")
config_command(train_app, "sft", SFTRunConfig, run_sft,
               "Fine-tune on seed critiques (the loss covers each critique and its end marker only).")
config_command(train_app, "dpo", DPORunConfig, run_dpo,
               "Prefer critiques that agree with the label, against the frozen SFT model (DPO).")
