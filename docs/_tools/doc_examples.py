"""Runnable examples of the docs and the README: run them, check their shown output, or rewrite it.

An example is a fenced block right after a `<!-- runnable -->` comment (invisible on GitHub and in the site):
- `console`: lines starting with `$ ` are commands, run with bash (the venv's `rprm-lite` first on PATH,
  the demo model, COLUMNS=80), stdout and stderr together; the lines after a command are its shown output.
- `pycon`: `>>> ` and `... ` lines are Python, run in one fresh interpreter per block; the lines after them
  are the output, as in a doctest.
Each block runs in a fresh folder that holds `examples/` (the project's), so that it starts from what a
checkout has and leaves nothing behind. A command that an earlier block already ran from the same start
is not run again (the README repeats some of the docs' examples).

A shown output matches when it equals the real one, except that `...` stands for any text (several lines
too), and, with `<!-- runnable tolerance=0.02 -->`, that every decimal number may differ by that much (the
pattern for numbers that vary between CPUs). `exit=N` expects that exit status of a console block's last
command (default 0).

    python docs/_tools/doc_examples.py            # check every example; exit 1 on a mismatch
    python docs/_tools/doc_examples.py --update   # rewrite the shown outputs that no longer match

The demo model's outputs live in docs/_snippets/ (included by the pages) and in README.md, so a new demo
model means one `--update` and a review of the diff.
"""

from __future__ import annotations

import argparse
import dataclasses
import doctest
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- runnable(?P<options>(?: [a-z]+=[^ ]+)*) -->$")
FENCE = re.compile(r"^```(?P<lang>console|pycon)\s*$")
DECIMAL = re.compile(r"-?\d+\.\d+")
ELLIPSIS = "..."
TIMEOUT_S = 300


@dataclasses.dataclass
class Example:
    path: Path
    first_line: int  # 0-based index of the block's first line inside the fence
    lines: list[str]
    lang: str
    tolerance: float = 0.0
    exit_status: int = 0

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.first_line + 1}"


@dataclasses.dataclass
class Outcome:
    example: Example
    new_lines: list[str]  # the block with the real outputs in place of the shown ones
    problems: list[str]


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def find_examples(path: Path) -> Iterator[Example]:
    lines = path.read_text(encoding="utf-8").split("\n")
    for index, line in enumerate(lines[:-1]):
        marker, fence = MARKER.match(line.strip()), FENCE.match(lines[index + 1])
        if not marker:
            continue
        if not fence:
            raise ValueError(f"{path}:{index + 1}: a runnable marker must stand right before a ```console or "
                             f"```pycon fence, got {lines[index + 1]!r}")
        end = lines.index("```", index + 2)
        options = dict(item.split("=", 1) for item in marker["options"].split())
        yield Example(path, index + 2, lines[index + 2:end], fence["lang"],
                      tolerance=float(options.get("tolerance", 0)), exit_status=int(options.get("exit", 0)))


def matches(shown: str, real: str, tolerance: float) -> bool:
    """`shown` equals `real` but for `...` (any text) and decimals within `tolerance` of each other."""
    pattern, numbers = [], []
    for piece in re.split(r"(\.\.\.|-?\d+\.\d+)", shown):
        if piece == ELLIPSIS:
            pattern.append("(?:.*?)")
        elif DECIMAL.fullmatch(piece) and tolerance:
            pattern.append(r"(-?\d+(?:\.\d+)?)")
            numbers.append(float(piece))
        else:
            pattern.append(re.escape(piece))
    found = re.fullmatch("".join(pattern), real, flags=re.DOTALL)
    return bool(found) and all(abs(float(got) - want) <= tolerance + 1e-12
                               for got, want in zip(found.groups(), numbers, strict=True))


def _clean(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip("\n").split("\n"))


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPRM_MODEL")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(COLUMNS="80", PYTHONIOENCODING="utf-8", NO_COLOR="1", TERM="dumb")
    return env


def console_commands(lines: list[str]) -> list[tuple[int, str, list[str]]]:
    """(index of the command's first line, the command, its shown output lines) for each `$ ` line."""
    commands: list[tuple[int, str, list[str]]] = []
    index = 0
    while index < len(lines):
        if not lines[index].startswith("$ "):
            raise ValueError(f"expected a line starting with '$ ', got {lines[index]!r}")
        start, command = index, lines[index][2:]
        while command.endswith("\\") and index + 1 < len(lines):
            index += 1
            command = command[:-1] + "\n" + lines[index]
        index += 1
        shown_start = index
        while index < len(lines) and not lines[index].startswith("$ "):
            index += 1
        commands.append((start, command, lines[shown_start:index]))
    return commands


def checkout_folder() -> tempfile.TemporaryDirectory:
    folder = tempfile.TemporaryDirectory(prefix="rprm-docs-")
    (Path(folder.name) / "examples").symlink_to(ROOT / "examples")
    return folder


_RAN: dict[tuple[str, ...], Any] = {}  # the blocks run so far (commands or Python sources) -> their outputs


def run_commands(commands: tuple[str, ...]) -> list[tuple[int, str]]:
    """Run a block's commands in order, in a fresh folder (once per process for the same commands)."""
    if commands not in _RAN:
        with checkout_folder() as cwd:
            runs = [subprocess.run(["bash", "-c", command], cwd=cwd, env=environment(), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S) for command in commands]
        _RAN[commands] = [(done.returncode, _clean(done.stdout)) for done in runs]
    return _RAN[commands]


def run_console(example: Example) -> Outcome:
    new_lines, problems = [], []
    commands = console_commands(example.lines)
    ran = run_commands(tuple(command for _, command, _ in commands))
    for number, ((start, command, shown), (status, real)) in enumerate(zip(commands, ran, strict=True)):
        expected_status = example.exit_status if number == len(commands) - 1 else 0
        if status != expected_status:
            problems.append(f"`{command}` exited {status}, expected {expected_status}:\n{real}")
        matched = matches("\n".join(shown), real, example.tolerance)
        if not matched:
            problems.append(f"`{command}` printed:\n{real}\n--- the docs show:\n" + "\n".join(shown))
        end = start + 1 + command.count("\n")
        new_lines += example.lines[start:end] + (shown if matched else (real.split("\n") if real else []))
    return Outcome(example, new_lines, problems)


PYCON_DRIVER = """
import contextlib, io, json, sys, traceback
namespace = {"__name__": "__main__"}
outputs = []
for source in json.load(sys.stdin):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            exec(compile(source, "<docs>", "single"), namespace)
        except Exception as exc:
            out.write("Traceback (most recent call last):\\n  ...\\n")
            out.write("".join(traceback.format_exception_only(type(exc), exc)))
    outputs.append(out.getvalue())
print(json.dumps(outputs))
"""


def run_python(sources: tuple[str, ...]) -> list[str] | str:
    """Each source's output, run in one interpreter in a fresh folder; the error text if it could not run."""
    if sources not in _RAN:
        with checkout_folder() as cwd:
            done = subprocess.run([sys.executable, "-c", PYCON_DRIVER], cwd=cwd, env=environment(), text=True,
                                  input=json.dumps(sources), capture_output=True, timeout=TIMEOUT_S)
        _RAN[sources] = json.loads(done.stdout) if done.returncode == 0 else done.stderr
    return _RAN[sources]


def run_pycon(example: Example) -> Outcome:
    parsed = doctest.DocTestParser().get_examples("\n".join(example.lines) + "\n")
    outputs = run_python(tuple(item.source for item in parsed))
    if isinstance(outputs, str):
        return Outcome(example, example.lines, [f"the Python block failed to run:\n{outputs}"])
    new_lines, problems, line = [], [], 0
    for item, real in zip(parsed, outputs, strict=True):
        source_end = item.lineno + item.source.count("\n")
        want_end = source_end + (item.want.count("\n") if item.want else 0)
        new_lines += example.lines[line:source_end]
        if matches(_clean(item.want), _clean(real), example.tolerance):
            new_lines += example.lines[source_end:want_end]
        else:
            problems.append(f"`{item.source.strip()}` printed:\n{_clean(real)}\n--- the docs show:\n"
                            f"{_clean(item.want)}")
            new_lines += _clean(real).split("\n") if real.strip() else []
        line = want_end
    return Outcome(example, new_lines + example.lines[line:], problems)


def run(example: Example) -> Outcome:
    return run_console(example) if example.lang == "console" else run_pycon(example)


def rewrite(outcomes: list[Outcome]) -> None:
    """Put each failing block's real output into its file (blocks from the end, so indices stay right)."""
    for outcome in sorted(outcomes, key=lambda o: (str(o.example.path), -o.example.first_line)):
        example = outcome.example
        lines = example.path.read_text(encoding="utf-8").split("\n")
        lines[example.first_line:example.first_line + len(example.lines)] = outcome.new_lines
        example.path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--update", action="store_true", help="Rewrite the shown outputs that do not match.")
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md and docs/).")
    args = parser.parse_args(argv)
    examples = [ex for path in (args.files or markdown_files()) for ex in find_examples(path.resolve())]
    failed = [outcome for outcome in map(run, examples) if outcome.problems]
    for outcome in failed:
        print(f"{outcome.example.where}:\n" + "\n".join(outcome.problems) + "\n", file=sys.stderr)
    if args.update and failed:
        rewrite(failed)
        print(f"rewrote {len(failed)} of {len(examples)} examples; review the diff", file=sys.stderr)
        return 0
    print(f"{len(examples) - len(failed)} of {len(examples)} examples match", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
