"""A full Hugging Face checkpoint -> a model GGUF (f32/f16/bf16), optionally quantized and verified.

Every tensor's presence and shape is checked against config.json before a byte is written; the file is written
under a temporary name, quantized and verified there, and renamed only when everything passed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import gguf

from . import architectures as arch_table
from .convert_config import ConvertConfig, ConvertResult, Progress, add_rprm_metadata, model_name
from .errors import CheckpointError
from .gguf_file import (
    FILE_TYPES,
    PlannedTensor,
    atomic_output,
    check_free_space,
    output_type_for,
    partial_path,
    write_gguf,
)
from .quantize import quantize
from .safetensors_io import TensorRef, read_checkpoint_tensors
from .tokenizer import Vocabulary, read_vocabulary


@dataclass(frozen=True)
class ConversionPlan:
    folder: Path
    hparams: arch_table.HParams
    vocab: Vocabulary
    tensors: list[PlannedTensor]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def convert_checkpoint(config: ConvertConfig, folder: Path, report: Progress) -> ConvertResult:
    """The model GGUF of the full checkpoint `folder`: planned and checked whole, written under a temporary name,
    quantized and verified there, then renamed."""
    started = time.perf_counter()
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


