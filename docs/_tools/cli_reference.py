"""The command-line reference, generated from the typer app at build time: each command's `--help`.

Nothing here is written by hand: a command or option added to the app appears in the next build, and the
docs tests check that the page equals what `rprm-lite ... --help` prints.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator

WIDTH = 80  # the terminal width the help is formatted for (COLUMNS=80 when the tests run the real program)
PROG = "rprm-lite"


def root_command():
    import typer.main

    from rprm_lite.cli import app

    return typer.main.get_command(app)


def command_paths(command=None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's path, parents before their subcommands, in the order `--help` lists them."""
    command = command or root_command()
    yield path
    if hasattr(command, "list_commands"):
        ctx = command.make_context(PROG, [], resilient_parsing=True)
        for name in command.list_commands(ctx):
            yield from command_paths(command.get_command(ctx, name), (*path, name))


def help_text(path: tuple[str, ...]) -> str:
    """What `rprm-lite PATH --help` prints in an 80-column terminal: the program's own entry point, run here."""
    from rprm_lite.cli import main

    out, columns, argv0 = io.StringIO(), os.environ.get("COLUMNS"), sys.argv[0]
    os.environ["COLUMNS"], sys.argv[0] = str(WIDTH), PROG  # argparse-based commands name themselves by argv[0]
    try:
        with contextlib.redirect_stdout(out):
            main([*path, "--help"])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"`{PROG} {' '.join(path)} --help` exited {exc.code}: {out.getvalue()}") from None
    finally:
        sys.argv[0] = argv0
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return out.getvalue()


def anchor(path: tuple[str, ...]) -> str:
    return "-".join((PROG, *path))


def page() -> str:
    paths = list(command_paths())
    parts = ["# Command line", "",
             "Every command and option of `rprm-lite`, as its `--help` prints it (generated from the program when "
             "the site is built). The [how-to guides](../how-to/index.md) show them at work.", ""]
    parts += [f"- [`{' '.join((PROG, *path))}`](#{anchor(path)})" for path in paths]
    for path in paths:
        parts += ["", f"## `{' '.join((PROG, *path))}` {{#{anchor(path)}}}", "", "```text",
                  "\n".join(line.rstrip() for line in help_text(path).split("\n")).strip("\n"), "```"]
    return "\n".join(parts) + "\n"
