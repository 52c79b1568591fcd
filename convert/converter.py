"""Hugging Face checkpoint or peft LoRA folder -> GGUF, optionally quantized and verified.

`convert(ConvertConfig(...))` is the whole job; the CLI's options are `ConvertConfig`'s fields. It checks the
output and the options, then hands a full checkpoint to `checkpoint` and a peft LoRA folder to `adapter`: each
checks everything before writing a byte, writes under a temporary name and renames only when everything passed.
"""

from __future__ import annotations

from pathlib import Path

from .adapter import PEFT_CONFIG, convert_adapter, is_peft_folder
from .checkpoint import convert_checkpoint
from .convert_config import ConvertConfig, ConvertResult, Progress
from .errors import ConversionError
from .hub import resolve_source

__all__ = ["RANDOM_WEIGHTS_DESCRIPTION", "ConvertConfig", "ConvertResult", "Progress", "check_output", "convert"]

RANDOM_WEIGHTS_DESCRIPTION = "random weights: for tests and demos only"


def convert(config: ConvertConfig, *, progress: Progress | None = None) -> ConvertResult:
    """Run one conversion. Raises ConversionError (an RprmError) for anything the user can fix."""
    report = progress or (lambda message: None)
    check_output(config.output, force=config.force)
    if config.verify:
        from .verify import check_verify_dependencies

        check_verify_dependencies()  # before any work, not after writing gigabytes
    folder = resolve_source(config.source)
    if is_peft_folder(folder):
        return convert_adapter(config, folder, report)
    if config.base is not None or config.base_gguf is not None:
        raise ConversionError(f"--base and --base-gguf are for a peft LoRA folder (with {PEFT_CONFIG}); "
                              f"{folder} is a full checkpoint")
    return convert_checkpoint(config, folder, report)


def check_output(output: Path, *, force: bool) -> None:
    if output.exists() and not force:
        raise ConversionError(f"{output} already exists; pass --force to overwrite it")
    if output.is_dir():
        raise ConversionError(f"{output} is a folder; expected a file name such as model.gguf")
    if not output.parent.is_dir():
        raise ConversionError(f"{output.parent}: no such folder for the output; create it first")
