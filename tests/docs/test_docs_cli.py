"""The command-line reference is what the program prints, and every option it lists has its help text."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cli_reference
from conftest import ROOT

# Runs the program's entry point (what the `rprm-lite` script calls) for every command in one process, since
# a process per command would cost a second or two each; `rprm-lite --help` and `score --help` are also run
# as the installed script itself.
PRINT_ALL_HELP = """
import contextlib, io, json, sys
from rprm_lite.cli import main
sys.argv[0] = "rprm-lite"  # as the installed script has it
printed = {}
for path in json.load(sys.stdin):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([*path, "--help"])
        except SystemExit:
            pass
    printed[" ".join(path)] = out.getvalue()
print(json.dumps(printed))
"""


def plain(text: str) -> str:
    """Help text without trailing spaces and blank edges (rich pads its lines; Markdown drops the padding)."""
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def program_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": str(cli_reference.WIDTH), "NO_COLOR": "1", "TERM": "dumb"}


def page_blocks(built_site: Path) -> dict[str, str]:
    """Each command's help as the built page shows it: heading id -> the text of its code block."""
    page = (built_site / "reference" / "cli.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<h2 id="(rprm-lite[^"]*)".*?<pre[^>]*>.*?<code>(.*?)</code>', page, flags=re.DOTALL)
    return {anchor: html.unescape(re.sub(r"<[^>]+>", "", code)) for anchor, code in blocks}


def test_the_cli_page_holds_every_command_as_the_program_prints_it(built_site: Path) -> None:
    paths = list(cli_reference.command_paths())
    done = subprocess.run([sys.executable, "-c", PRINT_ALL_HELP], input=json.dumps(paths), capture_output=True,
                          text=True, env=program_env(), cwd=ROOT, timeout=120, check=True)
    printed = json.loads(done.stdout)
    shown = page_blocks(built_site)
    assert sorted(shown) == sorted(cli_reference.anchor(path) for path in paths)
    for path in paths:
        assert plain(shown[cli_reference.anchor(path)]) == plain(printed[" ".join(path)]), path


def test_the_installed_script_prints_the_same_help(built_site: Path) -> None:
    script = Path(sys.executable).parent / "rprm-lite"
    shown = page_blocks(built_site)
    for path in [(), ("score",)]:
        done = subprocess.run([str(script), *path, "--help"], capture_output=True, text=True, env=program_env(),
                              timeout=60, check=True)
        assert plain(shown[cli_reference.anchor(path)]) == plain(done.stdout)


def test_every_option_of_every_command_has_help() -> None:
    """An option added without a help text would reach the reference undocumented: it fails here instead."""
    root = cli_reference.root_command()
    undocumented = []
    for path in cli_reference.command_paths():
        command = root
        for name in path:
            command = command.get_command(command.make_context("rprm-lite", [], resilient_parsing=True), name)
        if not (command.help or command.short_help):
            undocumented.append(" ".join(path) or "rprm-lite")
        undocumented += [f"{' '.join(path)} {param.opts[0]}" for param in command.params
                         if getattr(param, "help", None) is not None and not param.help.strip()
                         or getattr(param, "help", "") is None and param.param_type_name == "option"]
    assert undocumented == []
