"""Hugging Face checkpoint -> GGUF (f32/f16/bf16), optionally quantized and verified.

`convert(ConvertConfig(...))` is the whole job; the CLI's options are `ConvertConfig`'s fields.
Order of work: check every option and the whole checkpoint (config, tokenizer, every tensor's
presence and shape) before writing a byte; write under a temporary name; quantize and verify that
temporary file; rename it to the output name only when everything passed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gguf

from rprm_lite import metadata
from rprm_lite.config import PROMPT_STYLES, ScoreConfig
from rprm_lite.options import option
from rprm_lite.prompt import template_hash

from . import architectures as arch_table
from .adapter import PEFT_CONFIG, convert_adapter, is_peft_folder
from .errors import CheckpointError, ConversionError
from .gguf_file import (
    FILE_TYPES,
    OUTPUT_TYPES,
    PlannedTensor,
    atomic_output,
    check_free_space,
    output_type_for,
    partial_path,
    write_gguf,
)
from .hub import resolve_source
from .quantize import QUANT_TYPES, normalize_quant, quantize
from .safetensors_io import TensorRef, read_checkpoint_tensors
from .tokenizer import Vocabulary, read_vocabulary

if TYPE_CHECKING:
    from .verify import VerificationReport

RANDOM_WEIGHTS_DESCRIPTION = "random weights: for tests and demos only"


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


@dataclass(frozen=True)
class ConversionPlan:
    folder: Path
    hparams: arch_table.HParams
    vocab: Vocabulary
    tensors: list[PlannedTensor]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


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


def convert(config: ConvertConfig, *, progress: Progress | None = None) -> ConvertResult:
    """Run one conversion. Raises ConversionError (an RprmError) for anything the user can fix."""
    started = time.perf_counter()
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
    plan = plan_conversion(folder, config.outtype)
    hp = plan.hparams
    report(f"{hp.architecture.hf_name}: {hp.n_layer} layers, hidden {hp.hidden}, vocab {hp.vocab_size}, "
           f"{len(plan.tensors)} tensors -> {config.outtype}")
    check_free_space(config.output.parent, plan.nbytes * (2 if config.quant else 1))
    verification = None
    with atomic_output(config.output) as final_temp:
        if config.quant:
            with _removed_afterwards(partial_path(config.output, config.outtype)) as float_temp:
                _write(plan, config, float_temp, report)
                report(f"quantizing to {config.quant} with llama.cpp")
                quantize(float_temp, final_temp, config.quant, threads=config.threads)
        else:
            _write(plan, config, final_temp, report)
        if config.verify:
            from .verify import verify_conversion

            report("verifying against transformers")
            verification = verify_conversion(folder, final_temp, kind=config.quant or config.outtype,
                                             threads=config.threads)
    return ConvertResult(config.output, plan.hparams.architecture.hf_name, config.outtype, config.quant,
                         len(plan.tensors), config.output.stat().st_size, time.perf_counter() - started,
                         verification)


def check_output(output: Path, *, force: bool) -> None:
    if output.exists() and not force:
        raise ConversionError(f"{output} already exists; pass --force to overwrite it")
    if output.is_dir():
        raise ConversionError(f"{output} is a folder; expected a file name such as model.gguf")
    if not output.parent.is_dir():
        raise ConversionError(f"{output.parent}: no such folder for the output; create it first")


@contextlib.contextmanager
def _removed_afterwards(path: Path):
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def plan_conversion(folder: Path, outtype: str) -> ConversionPlan:
    """Check the whole checkpoint and decide every output tensor, before anything is written."""
    hparams = arch_table.read_hparams(arch_table.read_config(folder))
    refs = read_checkpoint_tensors(folder)
    arch_table.check_sizes_against_tensors(hparams, {name: ref.shape for name, ref in refs.items()})
    vocab = read_vocabulary(folder, hparams.vocab_size)
    tensors = plan_tensors(hparams, refs, outtype)
    return ConversionPlan(folder, hparams, vocab, tensors)


def plan_tensors(hp: arch_table.HParams, refs: dict[str, TensorRef], outtype: str) -> list[PlannedTensor]:
    expected = arch_table.expected_shapes(hp)
    missing = [name for name in expected if name not in refs]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"tensor {missing[0]}{more} is missing from the checkpoint; expected "
                              f"{len(expected)} tensors for {hp.architecture.hf_name} with the sizes in "
                              "config.json")
    _check_extra_tensors(hp, refs, expected)
    name_map = gguf.get_tensor_name_map(hp.architecture.gguf_arch, hp.n_layer)
    planned = []
    for name, shape in expected.items():
        ref = refs[name]
        if ref.shape != shape:
            raise CheckpointError(f"tensor {name} has shape {list(ref.shape)}; config.json implies "
                                  f"{list(shape)} (hidden_size {hp.hidden}, heads {hp.n_head}/"
                                  f"{hp.n_kv_head}, intermediate_size {hp.ffn}, vocab_size {hp.vocab_size})")
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise AssertionError(f"gguf has no name for {name} in {hp.architecture.gguf_arch.name}")
        planned.append(PlannedTensor(gguf_name, ref, output_type_for(outtype, len(shape)),
                                     arch_table.qk_head_count(hp, name)))
    return planned


def _check_extra_tensors(hp: arch_table.HParams, refs: dict[str, TensorRef], expected: dict) -> None:
    for name in refs:
        if name in expected or name.endswith(arch_table.IGNORED_SUFFIXES):
            continue
        if name == "lm_head.weight" and hp.tied:
            continue  # transformers ties it to the embedding and ignores the stored copy
        raise CheckpointError(f"unexpected tensor {name} in the checkpoint; {hp.architecture.hf_name} with "
                              f"this config.json has no such weight (n_layer {hp.n_layer}, tied "
                              f"{hp.tied}); is config.json from the same model?")


def _write(plan: ConversionPlan, config: ConvertConfig, path: Path, report: Progress) -> None:
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[plan.hparams.architecture.gguf_arch])
    add_metadata(writer, plan, config)

    def on_tensor(number: int, total: int, tensor: PlannedTensor) -> None:
        if number == total or number % 50 == 0:
            report(f"wrote {number}/{total} tensors")

    write_gguf(path, writer, plan.tensors, on_tensor)


def add_metadata(writer: gguf.GGUFWriter, plan: ConversionPlan, config: ConvertConfig) -> None:
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(config.name or model_name(config.source, plan.folder))
    arch_table.write_hparams(writer, plan.hparams)
    writer.add_file_type(FILE_TYPES[config.outtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    plan.vocab.write(writer, add_space_prefix=plan.hparams.architecture.write_add_space_prefix)
    add_rprm_metadata(writer, plan.vocab, config)


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
