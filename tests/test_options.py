"""The one options machinery (rprm_lite/options.py): every command's options come from settings fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import typer
from typer.testing import CliRunner

from rprm_lite.cli import app
from rprm_lite.config import SCORE_OPTIONS, ScoreConfig, default_threads, max_threads
from rprm_lite.errors import InputError
from rprm_lite.options import Options, Settings, argument_parser, command_options, option
from rprm_lite.training.jobconfig import JobConfig

try:  # typer 0.29+ carries its own copy of click
    from typer._click import Context
except ImportError:  # pragma: no cover
    from click import Context

# The flags of each command, as they were when each command declared its options by hand: generating
# them from the fields must not add, drop or rename one (--lora of score and serve was added since, and
# convert's --base and --base-gguf, and --prefix-cache of score, serve and rerank).
FLAGS = {
    "score": "--adaptive --adaptive-rule --aggregation --all-steps --api-key-env --backend --cache --calculator "
             "--calibration --concurrency --confidence --draft --json --k --lora --max-tokens --model --n-ctx "
             "--n-gpu-layers --output --prefix-cache --prompt-style --seed --server-model --show-critiques "
             "--temperature --threads --threshold --top-p --uncertain-band --verdict --vocab --wave -m -o",
    "serve": "--adaptive --adaptive-rule --aggregation --all-steps --api-key-env --cache --calculator "
             "--calibration --confidence --cors-origin --draft --host --k --lora --max-body-bytes --max-connections "
             "--max-queue --max-request-k --max-request-tokens --max-steps --max-tokens --model --n-ctx "
             "--n-gpu-layers --port --prefix-cache --prompt-style --read-timeout --request-timeout --seed "
             "--show-critiques --temperature --threads --threshold --top-p --uncertain-band --verdict --wave -m",
    "bench processbench": "--adaptive --adaptive-rule --all-steps --api-key-env --backend --calculator "
                          "--concurrency --confidence --critiques --data --draft --early-stop --json --k --limit "
                          "--max-tokens --model --n-ctx --n-gpu-layers --no-critiques --out --prompt-style "
                          "--revision --seed --server-model --subsets --temperature --threads --threshold --top-p "
                          "--uncertain-band --verdict --vocab --wave -m",
    "bench prmbench": "--adaptive --adaptive-rule --api-key-env --backend --calculator --concurrency --confidence "
                      "--critiques --data --draft --json --k --limit --max-tokens --model --n-ctx --n-gpu-layers "
                      "--no-critiques --out --prompt-style --seed --server-model --subset400 --temperature "
                      "--threads --threshold --top-p --uncertain-band --verdict --vocab --wave -m",
    "bench bon": "--adaptive --adaptive-rule --calculator --confidence --draft --json --k --max-tokens --model --n-ctx "
                 "--n-gpu-layers --out --prompt-style --seed --temperature --threads --top-p --wave -m",
    "rerank": "--adaptive --adaptive-rule --aggregation --api-key-env --backend --calculator --concurrency "
              "--confidence --draft --json --k --max-tokens --model --n-ctx --n-gpu-layers --output --prefix-cache "
              "--prompt-style --seed --server-model --temperature --threads --top-p --vocab --wave -m -o",
    "bench metrics": "--data --json --no-partial --output --partial --predictions --subset400 --subsets --threshold "
                     "--uncertain-band",
    "convert": "--base --base-gguf --description --force --output --outtype --prompt-style --quant --threads "
               "--verify -o",
}


def command(path: str) -> Any:
    found = typer.main.get_command(app)
    for name in path.split():
        found = found.get_command(Context(found), name)
    return found


def options_of(path: str) -> dict[str, Any]:
    return {flag: param for param in command(path).params for flag in param.opts + param.secondary_opts
            if flag.startswith("-")}


@pytest.mark.parametrize("path", sorted(FLAGS))
def test_every_command_keeps_its_flags(path):
    assert sorted(options_of(path)) == FLAGS[path].split()


def test_score_options_state_the_fields_defaults_in_their_help():
    options = options_of("score")
    for spec in dataclasses.fields(ScoreConfig):
        if "help" not in spec.metadata:
            continue
        param = options["--" + spec.name.replace("_", "-")]
        assert param.default in (None, False)  # left out: not given, so the model file's default applies
        if spec.default not in (None, False):
            shown = spec.metadata["shown_default"] or spec.default
            assert f"[default: {shown}]" in param.help, spec.name
    assert options["--k"].help == "Critiques per step [default: 10]."
    assert options["--threads"].help == "CPU threads [default: all cores, or $RPRM_THREADS]."
    assert options_of("bench prmbench")["--threshold"].help == (
        "A step is labelled correct when its score is above this [default: 0.5].")


def test_processbench_gives_its_own_default_to_all_steps():
    param = options_of("bench processbench")["--all-steps"]
    assert param.default is True and param.secondary_opts == ["--early-stop"]


def demo_app(*groups: tuple[str, Options]) -> tuple[typer.Typer, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []
    demo = typer.Typer(rich_markup_mode=None, add_completion=False)

    @demo.command()
    @command_options(**dict(groups))
    def run(name: str = "x", **values: Any) -> None:
        received.append({"name": name, **values})

    return demo, received


def test_given_options_hold_only_what_was_given_parsed_into_the_fields_types():
    demo, received = demo_app(("settings", SCORE_OPTIONS))
    assert CliRunner().invoke(demo, []).exit_code == 0
    assert CliRunner().invoke(demo, ["--name", "y", "--k", "3", "--adaptive", "--uncertain-band", "0.3,0.7",
                                     "--calibration", "cal.json", "--threads", "2"]).exit_code == 0
    assert received == [{"name": "x", "settings": {}},
                        {"name": "y", "settings": {"k": 3, "adaptive": True, "uncertain_band": (0.3, 0.7),
                                                   "calibration": "cal.json", "threads": 2}}]
    ScoreConfig(**received[1]["settings"])  # exactly the fields and types ScoreConfig takes


def test_a_commands_changes_apply_to_that_command_only():
    changed = SCORE_OPTIONS.only("all_steps", "k", all_steps=dict(flag="--all-steps/--early-stop", cli_default=True))
    demo, received = demo_app(("settings", changed))
    assert CliRunner().invoke(demo, ["--early-stop"]).exit_code == 0
    assert CliRunner().invoke(demo, []).exit_code == 0
    assert [r["settings"] for r in received] == [{"all_steps": False}, {"all_steps": True}]
    assert sorted(flag for p in typer.main.get_command(demo).params for flag in p.opts + p.secondary_opts) == [
        "--all-steps", "--early-stop", "--k", "--name"]
    assert "all_steps" not in SCORE_OPTIONS.changes


@dataclass(frozen=True, kw_only=True)
class Job(JobConfig):
    data: str = option(help="Input file.")
    steps: int = option(10, help="Steps.")
    rate: float = option(0.5, help="Rate.")
    fast: bool = option(False, help="Go fast.")
    mode: Literal["a", "b"] = option("a", help="Mode.")
    tags: tuple[str, ...] = option((), help="Tag.", flag="--tag", cli_type=list[str] | None, cli_default=None,
                                   parse=tuple)
    out: Path | None = option(None, help="Output.", cli_type=Path | None, parse=str)

    def problems(self):
        yield from self.at_least(steps=1)


def test_plain_options_default_to_the_fields_and_required_fields_are_required():
    demo, received = demo_app(("job", Options(Job)))
    result = CliRunner().invoke(demo, [])
    assert result.exit_code == 2 and "Missing option '--data'" in result.output
    assert CliRunner().invoke(demo, ["--data", "d.json", "--fast", "--tag", "t1", "--tag", "t2",
                                     "--out", "o"]).exit_code == 0
    assert CliRunner().invoke(demo, ["--data", "d.json", "--no-fast"]).exit_code == 0
    first, second = (Job(**r["job"]) for r in received)
    assert first == Job(data="d.json", fast=True, tags=("t1", "t2"), out="o")
    assert second == Job(data="d.json")
    help_text = CliRunner().invoke(demo, ["--help"]).output
    assert "[default: 10]" in help_text and "--fast / --no-fast" in help_text


def test_settings_check_types_from_the_annotations_then_ranges_all_at_once():
    with pytest.raises(InputError) as error:
        Job(data="d", steps="3", rate=float("nan"), fast=1, mode="c")
    assert str(error.value) == ("invalid settings: steps must be an integer, got '3'; rate must be a finite number, "
                                "got nan; fast must be true or false, got 1; mode must be one of a, b, got 'c'")
    with pytest.raises(InputError, match=r"^invalid settings: steps must be at least 1, got 0$"):
        Job(data="d", steps=0)
    with pytest.raises(InputError, match="max_tokens must be at least 1"):  # ScoreConfig names fields as fields
        ScoreConfig(max_tokens=0)


def test_argument_parser_has_one_flag_per_field():
    parsed = argument_parser(Job, "job", "A job.").parse_args(["--data", "d", "--steps", "3", "--fast"])
    assert (parsed.data, parsed.steps, parsed.fast, parsed.rate) == ("d", 3, True, 0.5)


def test_a_settings_class_without_problems_accepts_its_defaults():
    @dataclass(frozen=True)
    class Plain(Settings):
        n: int | None = option(None, help="N.")

    assert Plain().n is None and Plain(n=2).n == 2
    with pytest.raises(InputError, match="n must be an integer"):
        Plain(n=2.5)


def test_engines_given_no_thread_count_take_rprm_threads_else_every_core(monkeypatch):
    monkeypatch.delenv("RPRM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert default_threads() == 6
    monkeypatch.setenv("RPRM_THREADS", " 2 ")
    assert default_threads() == 2
    for wrong in ["0", "two", "1.5", str(max_threads() + 1)]:
        monkeypatch.setenv("RPRM_THREADS", wrong)
        with pytest.raises(InputError, match=rf"^RPRM_THREADS must be a whole number from 1 to 24, got '{wrong}'$"):
            default_threads()
