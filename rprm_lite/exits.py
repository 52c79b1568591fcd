"""The error-to-exit boundary of every program: a library error is one `error: ...` line on stderr and a
documented exit code, never a traceback (`run_command` for click programs, `run_program` for argparse ones and
the tool commands, `exit_on_error` for the commands of the tool groups). The CLI, the product commands beside it
and the tool packages' entry points all use it; `rprm_lite.cli` re-exports it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import typer

from rprm_lite.errors import RprmError

try:  # typer 0.29+ carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_errors  # type: ignore[no-redef]  # the same module, from click


def run_command(command: Any, argv: list[str] | None = None, *, prog_name: str) -> None:
    """The error-to-exit boundary of a click command run as a program (the CLI, `python -m` entry points)."""
    try:
        code = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()  # `rprm-lite` alone prints the help
        sys.exit(2)
    except click_errors.UsageError as exc:  # option-parser errors: one line, not click's usage box
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _fail(exc.format_message() + where, 2)
    except click_errors.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except RprmError as exc:
        _fail(str(exc), exc.exit_code)
    except BrokenPipeError:  # `rprm-lite score ... | head`: the reader left, nothing to report
        sys.stderr.close()
        sys.exit(1)
    except OSError as exc:  # stdout or stderr on a full disk, and the like
        _fail(f"{exc.filename or 'output'}: {exc.strerror or exc}", 1)
    sys.exit(code if isinstance(code, int) else 0)  # Ctrl-C arrives here as 130, after commands.py's note


def exit_on_error(*, interrupted: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator for the commands of the tool groups, which also run on their own (tests, `python -m`):
    what `run_program` makes of an error or of Ctrl-C, as the command's exit code."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            returned: list[Any] = []

            def body() -> int:
                returned.append(command(*args, **kwargs))
                return 0
            code = run_program(body, interrupted=interrupted)
            if code:
                raise typer.Exit(code)
            return returned[0]
        return wrapper
    return decorate


def run_program(body: Callable[[], int], *, interrupted: str | None = None) -> int:
    """The error-to-exit boundary of a program outside the typer CLI (an argparse `python -m` entry point,
    a tool command): `body`'s exit code; a library error is one `error:` line on stderr and its exit code,
    never a traceback; with `interrupted`, Ctrl-C prints that line and gives 130."""
    try:
        return body()
    except RprmError as exc:
        say_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        typer.echo(interrupted, err=True)
        return 130


def say_error(message: str) -> None:
    """The one form of every error a command reports: one `error: ...` line on stderr."""
    typer.echo(f"error: {message}", err=True)


def _fail(message: str, code: int) -> None:
    say_error(message)
    sys.exit(code)
