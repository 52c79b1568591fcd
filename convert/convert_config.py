"""One conversion's settings and result, and what they write into every GGUF (model or LoRA adapter).

The lowest module of the converter: `checkpoint` (a full checkpoint) and `adapter` (a peft LoRA folder) both write
from a `ConvertConfig` and return a `ConvertResult`, and `converter.convert` picks one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gguf

from rprm_lite import metadata
from rprm_lite.config import PROMPT_STYLES, ScoreConfig
from rprm_lite.options import option
from rprm_lite.prompt import template_hash

from .errors import ConversionError
from .gguf_file import OUTPUT_TYPES
from .quantize import QUANT_TYPES, normalize_quant

if TYPE_CHECKING:
    from .tokenizer import Vocabulary
    from .verify import VerificationReport


@dataclass(frozen=True)
class ConvertConfig:
    """Every setting of one conversion; the fields with a help text are the `rprm-lite convert` options."""

    source: str  # checkpoint folder or Hugging Face repo id (the command's argument)
    output: Path = option(help="The GGUF file to write.", flag="--output -o")
    outtype: str = option("f16", help=f"Float type of the matrices: {', '.join(OUTPUT_TYPES)}.")
    quant: str | None = option(None, help=f"Quantize with llama.cpp: {', '.join(QUANT_TYPES)}.")
    verify: bool = option(False, help="Compare logits with transformers (needs the verify extra); keep the file "
                          "only if within tolerance.", flag="--verify")
    force: bool = option(False, help="Overwrite OUTPUT if it exists.", flag="--force")
    prompt_style: str = option("r-prm-eval", help="Prompt style recorded in the GGUF metadata.")
    description: str | None = option(None, help="Free text recorded as rprm.description.")
    max_tokens: int | None = None  # written as rprm.max_tokens (the default critique length when scoring)
    k: int | None = None  # written as rprm.k (the default K when scoring)
    temperature: float | None = None  # written as rprm.temperature (0: greedy)
    calculator: str | None = None  # written as rprm.calculator ("on": critiques written with the calculator)
    # False for a model that writes solutions and never scores (the demo policy): no rprm.* scoring keys, so
    # the scorer does not take it for a judge; the description goes to general.description
    scoring: bool = True
    name: str | None = None  # written as general.name (default: the checkpoint folder's or repo's name)
    base: str | None = option(None, help="For a peft LoRA folder: the checkpoint folder (or repo id) it was trained "
                              "on (default: its adapter_config.json's base_model_name_or_path).")
    base_gguf: Path | None = option(None, help="For a peft LoRA folder: the base GGUF the adapter will run on; its "
                                    "sha256 is recorded (another base is refused) and --verify runs on it.")
    threads: int | None = option(None, help="Threads for quantization and verification.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Path(self.output))
        object.__setattr__(self, "quant", normalize_quant(self.quant))
        if self.outtype not in OUTPUT_TYPES:
            raise ConversionError(f"unknown --outtype {self.outtype!r}; valid types: "
                                  f"{', '.join(OUTPUT_TYPES)}")
        if self.prompt_style not in PROMPT_STYLES:
            raise ConversionError(f"unknown prompt style {self.prompt_style!r}; valid styles: "
                                  f"{', '.join(PROMPT_STYLES)}")
        if self.threads is not None and self.threads < 1:
            raise ConversionError(f"threads must be at least 1, got {self.threads}")
        if self.base_gguf is not None:
            object.__setattr__(self, "base_gguf", Path(self.base_gguf))


@dataclass
class ConvertResult:
    output: Path
    architecture: str
    outtype: str
    quant: str | None
    n_tensors: int
    file_bytes: int
    seconds: float
    verification: VerificationReport | None = None  # when --verify ran


Progress = Callable[[str], None]


def model_name(source: str, folder: Path) -> str:
    """A repo id's last part, or the checkpoint folder's name (hub downloads live in hash-named folders)."""
    if Path(source).expanduser().exists():
        return folder.resolve().name
    return str(source).rstrip("/").split("/")[-1]


def add_rprm_metadata(writer: gguf.GGUFWriter, vocab: Vocabulary, config: ConvertConfig) -> None:
    """The scorer's rprm.* keys (prompt, verdict tokens, defaults); a non-scoring file gets its description only."""
    if not config.scoring:
        if config.description:
            writer.add_description(config.description)
        return
    defaults = ScoreConfig(prompt_style=config.prompt_style,
                           **({"max_tokens": config.max_tokens} if config.max_tokens else {}),
                           **({"k": config.k} if config.k else {}),
                           **({"temperature": config.temperature} if config.temperature is not None else {}))
    writer.add_string(metadata.PROMPT_STYLE, config.prompt_style)
    writer.add_string(metadata.TEMPLATE_SHA256, template_hash(config.prompt_style))
    writer.add_uint32(metadata.YES_TOKEN_ID, vocab.yes_token_id)
    writer.add_uint32(metadata.NO_TOKEN_ID, vocab.no_token_id)
    writer.add_uint32(metadata.K, defaults.k)
    writer.add_float32(metadata.TEMPERATURE, defaults.temperature)
    writer.add_float32(metadata.TOP_P, defaults.top_p)
    writer.add_uint32(metadata.MAX_TOKENS, defaults.max_tokens)
    writer.add_float32(metadata.THRESHOLD, defaults.threshold)
    if config.description:
        writer.add_string(metadata.DESCRIPTION, config.description)
    if config.calculator is not None:
        writer.add_string(metadata.CALCULATOR, ScoreConfig(calculator=config.calculator).calculator)
