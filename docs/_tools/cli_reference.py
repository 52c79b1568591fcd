"""The command-line reference, generated from the typer app at build time: each command's `--help`.

Nothing here is written by hand: a command or option added to the app appears in the next build, and the
docs tests check that the page equals what `rprm-lite ... --help` prints.
"""

from __future__ import annotations

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
    """What `rprm-lite PATH --help` prints, formatted for an 80-column terminal."""
    from typer.testing import CliRunner

    from rprm_lite.cli import app

    result = CliRunner().invoke(app, [*path, "--help"], prog_name=PROG, env={"COLUMNS": str(WIDTH)},
                                terminal_width=WIDTH)
    if result.exit_code != 0:
        raise RuntimeError(f"`{PROG} {' '.join(path)} --help` exited {result.exit_code}: {result.output}")
    return result.output


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
                  help_text(path).rstrip("\n"), "```"]
    return "\n".join(parts) + "\n"
