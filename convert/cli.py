"""`rprm-lite convert`: one command, a thin client of `convert(ConvertConfig)`.

Errors are raised as RprmError subclasses; the main CLI prints them as one line and exits non-zero.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rprm_lite.options import Options, command_options

from .converter import ConvertConfig, ConvertResult, convert

app = typer.Typer(add_completion=False, help="Convert a Hugging Face checkpoint to a (quantized) GGUF.")


SourceArg = Annotated[str, typer.Argument(help="Checkpoint folder (config.json, tokenizer.json, *.safetensors) "
                                              "or a Hugging Face repo id.", show_default=False)]


@app.command(name="convert")
@command_options(options=Options(ConvertConfig))
def convert_command(source: SourceArg, *, options: dict[str, Any]) -> None:
    """Convert SOURCE to a GGUF that rprm-lite can score with."""
    result = convert(ConvertConfig(source=source, **options), progress=lambda message: typer.echo(message, err=True))
    _print_result(result)


def _print_result(result: ConvertResult) -> None:
    kind = result.quant or result.outtype
    typer.echo(f"wrote {result.output} ({result.architecture}, {kind}, {result.n_tensors} tensors, "
               f"{result.file_bytes / 1e6:.1f} MB) in {result.seconds:.1f} s")
    report = result.verification
    if report is not None:
        table = Table("verification", "value", "tolerance", title=f"GGUF vs transformers ({kind})")
        for row in report.rows():
            table.add_row(*row)
        Console(highlight=False).print(table)


def main() -> None:
    """`python -m rprm_lite.convert.cli SRC -o OUT ...` without the main CLI: errors as one line."""
    from rprm_lite.cli import run_command

    run_command(typer.main.get_command(app), prog_name="python -m rprm_lite.convert.cli")


if __name__ == "__main__":
    main()
