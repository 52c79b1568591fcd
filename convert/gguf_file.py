"""Writing the GGUF: metadata and tensor infos through gguf-py's writer, tensor data streamed block by block.

Each tensor is read from the memory-mapped safetensors in blocks of rows, converted to its output
type and appended, so peak memory is about one block plus the pages of the tensor being read, never
the whole model. The file is written under a temporary name beside the output and renamed only
when complete (see `atomic_output`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from .errors import DISK_FULL_ERRNOS, ConversionError
from .safetensors_io import MappedFile, TensorRef, f32_to_bf16_bits, iter_row_blocks, widen_to_f32

BLOCK_BYTES = 16 * 1024 * 1024  # float32 bytes converted at a time
OUTPUT_TYPES: dict[str, gguf.GGMLQuantizationType] = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "bf16": gguf.GGMLQuantizationType.BF16,
}
FILE_TYPES: dict[str, gguf.LlamaFileType] = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
}
NUMPY_TYPES = {gguf.GGMLQuantizationType.F32: np.dtype("<f4"), gguf.GGMLQuantizationType.F16: np.dtype("<f2"),
               gguf.GGMLQuantizationType.BF16: np.dtype("<u2")}


@dataclass(frozen=True)
class PlannedTensor:
    """One GGUF tensor: its name, where its data comes from, its output type and row order."""

    gguf_name: str
    source: TensorRef
    out_type: gguf.GGMLQuantizationType
    qk_heads: int | None = None  # rows permuted for llama.cpp's rope layout when set

    @property
    def shape(self) -> tuple[int, ...]:
        return self.source.shape

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * NUMPY_TYPES[self.out_type].itemsize

    def row_order(self) -> np.ndarray | None:
        """The reference converter's q/k permutation, expressed as a row gather."""
        if self.qk_heads is None:
            return None
        n_rows = self.shape[0]
        half = n_rows // self.qk_heads // 2
        return np.arange(n_rows).reshape(self.qk_heads, 2, half).swapaxes(1, 2).reshape(n_rows)


def output_type_for(outtype: str, n_dims: int) -> gguf.GGMLQuantizationType:
    """1-D tensors (norms, biases) stay f32 as llama.cpp expects; matrices take the requested type."""
    return gguf.GGMLQuantizationType.F32 if n_dims <= 1 else OUTPUT_TYPES[outtype]


def convert_block(raw: np.ndarray, source_dtype: str, out_type: gguf.GGMLQuantizationType,
                  tensor_name: str) -> np.ndarray:
    """A block of stored values as a new array of the output type."""
    if out_type == gguf.GGMLQuantizationType.BF16 and source_dtype == "BF16":
        return np.array(raw, copy=True)
    if out_type == gguf.GGMLQuantizationType.F16 and source_dtype == "F16":
        return np.array(raw, copy=True)
    values = widen_to_f32(raw, source_dtype)
    if out_type == gguf.GGMLQuantizationType.F32:
        return values
    if out_type == gguf.GGMLQuantizationType.BF16:
        return f32_to_bf16_bits(values)
    with np.errstate(over="ignore"):
        halves = values.astype(np.float16)
    if not np.isfinite(halves).all() and np.isfinite(values).all():
        raise ConversionError(f"tensor {tensor_name} has values up to {np.abs(values).max():.4g}, beyond "
                              "float16's range (65504); use --outtype bf16 or f32")
    return halves


def write_gguf(path: Path, writer: gguf.GGUFWriter, tensors: list[PlannedTensor],
               on_tensor: Callable[[int, int, PlannedTensor], None] | None = None) -> None:
    """Write header, metadata (already added to `writer`) and tensors to `path`, streaming tensor data."""
    for tensor in tensors:
        writer.add_tensor_info(tensor.gguf_name, tensor.shape, NUMPY_TYPES[tensor.out_type], tensor.nbytes,
                               raw_dtype=tensor.out_type)
    writer.add_size_label(gguf.size_label(*writer.get_total_parameter_count()))
    try:
        try:
            _write_file(path, writer, tensors, on_tensor)
        finally:
            writer.close()  # flushes the last buffered bytes: a full disk can surface here too
    except OSError as exc:
        raise _write_error(path, exc) from None


def _write_file(path: Path, writer: gguf.GGUFWriter, tensors: list[PlannedTensor],
                on_tensor: Callable[[int, int, PlannedTensor], None] | None) -> None:
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    assert writer.fout is not None and len(writer.fout) == 1
    out = writer.fout[0]
    for number, tensor in enumerate(tensors, start=1):
        writer.write_padding(out, out.tell())
        _write_tensor_data(out, tensor)
        writer.write_padding(out, tensor.nbytes)
        if on_tensor is not None:
            on_tensor(number, len(tensors), tensor)
    out.flush()
    os.fsync(out.fileno())


def _write_tensor_data(out, tensor: PlannedTensor) -> None:
    written = 0
    with MappedFile(tensor.source.file) as mapped:
        for raw in iter_row_blocks(tensor.source, mapped, block_bytes=BLOCK_BYTES, rows=tensor.row_order()):
            block = convert_block(raw, tensor.source.dtype, tensor.out_type, tensor.source.name)
            del raw
            # file.write, not ndarray.tofile: tofile reports a short write (the usual sign of a full disk)
            # as an OSError without errno, so the disk-full message could not be given
            out.write(memoryview(np.ascontiguousarray(block)).cast("B"))
            written += block.nbytes
            del block
    if written != tensor.nbytes:
        raise AssertionError(f"{tensor.gguf_name}: wrote {written} bytes, planned {tensor.nbytes}")


def _write_error(path: Path, exc: OSError) -> ConversionError:
    if exc.errno in DISK_FULL_ERRNOS:
        free = _free_bytes(path.parent)
        return ConversionError(f"disk full while writing {path.name} in {path.parent} ({exc.strerror}; "
                               f"{free / 1e9:.2f} GB free now); free some space or choose another output "
                               "folder. Nothing was kept")
    return ConversionError(f"cannot write {path}: {exc.strerror or exc}")


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def check_free_space(folder: Path, needed: int) -> None:
    free = _free_bytes(folder)
    if free and free < needed:
        raise ConversionError(f"not enough disk space in {folder}: expected about {needed / 1e9:.2f} GB for "
                              f"the output, got {free / 1e9:.2f} GB free; free some space or choose another "
                              "folder")


def partial_path(output: Path, label: str = "partial") -> Path:
    return output.with_name(f".{output.name}.{label}-{os.getpid()}")


@contextlib.contextmanager
def atomic_output(output: Path, *, label: str = "partial") -> Iterator[Path]:
    """A temporary path beside `output`; renamed to `output` only if the block finishes.

    On any error, Ctrl-C included, the temporary file is removed and `output` is left untouched.
    """
    temporary = partial_path(output, label)
    try:
        yield temporary
        os.replace(temporary, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


# GGUF value type -> struct format (8: string and 9: array are handled apart)
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                 12: "<d"}


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """Every key/value of a GGUF file's header. gguf-py's GGUFReader takes seconds on a 150k-token
    vocabulary; this plain parser takes a fraction of that."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _parse_metadata(path, data)


def _parse_metadata(path: Path, data: mmap.mmap) -> dict[str, Any]:
    if data[:4] != b"GGUF":
        raise ConversionError(f"{path}: expected a GGUF file (magic 'GGUF'), got {data[:4]!r}")
    n_kv = struct.unpack_from("<Q", data, 16)[0]
    position = 24

    def read(kind: int) -> Any:
        nonlocal position
        if kind == 8:
            (length,) = struct.unpack_from("<Q", data, position)
            position += 8 + length
            return data[position - length:position].decode("utf-8")
        if kind == 9:
            item_kind, count = struct.unpack_from("<IQ", data, position)
            position += 12
            return [read(item_kind) for _ in range(count)]
        fmt = _GGUF_SCALARS[kind]
        (value,) = struct.unpack_from(fmt, data, position)
        position += struct.calcsize(fmt)
        return value

    fields = {}
    for _ in range(n_kv):
        key = read(8)
        (kind,) = struct.unpack_from("<I", data, position)
        position += 4
        fields[key] = read(kind)
    return fields
