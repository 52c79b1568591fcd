"""`rprm-lite convert`: one command, a thin client of `convert(ConvertConfig)`.

Errors are raised as RprmError subclasses; the main CLI prints them as one line and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .converter import ConvertConfig, ConvertResult, convert
from .gguf_file import OUTPUT_TYPES
from .quantize import QUANT_TYPES

app = typer.Typer(add_completion=False, help="Convert a Hugging Face checkpoint to a (quantized) GGUF.")


SourceArg = Annotated[str, typer.Argument(help="Checkpoint folder (config.json, tokenizer.json, *.safetensors) "
                                              "or a Hugging Face repo id.", show_default=False)]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="The GGUF file to write.", show_default=False)]
OuttypeOpt = Annotated[str, typer.Option("--outtype", help=f"Float type of the matrices: {', '.join(OUTPUT_TYPES)}.")]
QuantOpt = Annotated[str | None, typer.Option("--quant", help=f"Quantize with llama.cpp: {', '.join(QUANT_TYPES)}.")]
VerifyOpt = Annotated[bool, typer.Option("--verify", help="Compare logits with transformers (needs the verify "
                                                          "extra); keep the file only if within tolerance.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT if it exists.")]
StyleOpt = Annotated[str, typer.Option("--prompt-style", help="Prompt style recorded in the GGUF metadata.")]
DescriptionOpt = Annotated[str | None, typer.Option("--description", help="Free text recorded as rprm.description.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Threads for quantization and verification.")]


@app.command(name="convert")
def convert_command(source: SourceArg, output: OutputOpt, outtype: OuttypeOpt = "f16", quant: QuantOpt = None,
                    verify: VerifyOpt = False, force: ForceOpt = False, prompt_style: StyleOpt = "r-prm-eval",
                    description: DescriptionOpt = None, threads: ThreadsOpt = None) -> None:
    """Convert SOURCE to a GGUF that rprm-lite can score with."""
    config = ConvertConfig(source=source, output=output, outtype=outtype, quant=quant, verify=verify,
                           force=force, prompt_style=prompt_style, description=description, threads=threads)
    result = convert(config, progress=lambda message: typer.echo(message, err=True))
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
    import sys

    from rprm_lite.errors import RprmError

    try:
        app(standalone_mode=False)
    except RprmError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
