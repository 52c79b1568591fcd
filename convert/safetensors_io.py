"""Safetensors read and write with numpy only (no torch), tensor by tensor.

Reading maps each shard into memory and hands out row blocks; after a block is used its pages
are dropped again (madvise), so resident memory stays near one block instead of growing with the
model. bf16 has no numpy dtype: it is read as uint16 and widened to float32 by a 16-bit shift.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConversionError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# safetensors dtype name -> numpy dtype of the stored bytes
STORAGE_DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor's bytes live: file, byte offset of the data, dtype name and shape."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def n_rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_elements(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1


def read_header(path: Path) -> dict[str, TensorRef]:
    """Parse one .safetensors file's header, checking that every tensor lies inside the file."""
    size = _file_size(path)
    with open(path, "rb") as f:
        raw_length = f.read(8)
        if len(raw_length) < 8:
            raise ConversionError(f"{path}: expected a safetensors file, got {size} bytes (too short for "
                                  "a header)")
        (header_length,) = struct.unpack("<Q", raw_length)
        if header_length > min(MAX_HEADER_BYTES, size - 8):
            raise ConversionError(f"{path}: expected a safetensors header of at most {size - 8} bytes, "
                                  f"got a length field of {header_length}; the file is corrupt or not "
                                  "safetensors")
        try:
            header = json.loads(f.read(header_length))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConversionError(f"{path}: the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ConversionError(f"{path}: expected a JSON object as the safetensors header, got {type(header).__name__}")
    data_start = 8 + header_length
    refs = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        refs[name] = _tensor_ref(path, name, entry, data_start, size)
    return refs


def _tensor_ref(path: Path, name: str, entry: dict, data_start: int, size: int) -> TensorRef:
    dtype = entry.get("dtype")
    shape = tuple(int(d) for d in entry.get("shape", ()))
    begin, end = entry.get("data_offsets", (0, 0))
    if dtype not in STORAGE_DTYPES:
        raise ConversionError(f"{path.name}: tensor {name} has dtype {dtype}; expected one of "
                              f"{', '.join(STORAGE_DTYPES)}. Convert the checkpoint to bf16 or f16 first "
                              "(e.g. load and save_pretrained with dtype=bfloat16)")
    expected = int(np.prod(shape, dtype=np.int64)) * STORAGE_DTYPES[dtype].itemsize
    if end - begin != expected:
        raise ConversionError(f"{path.name}: tensor {name} has shape {list(shape)} in {dtype} "
                              f"({expected} bytes) but {end - begin} bytes of data; the file is corrupt")
    if data_start + end > size:
        raise ConversionError(f"{path}: tensor {name} ends at byte {data_start + end} but the file has "
                              f"{size} bytes; the shard is truncated, download it again")
    return TensorRef(name, path, dtype, shape, data_start + begin, expected)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read ({exc.strerror})") from None


def read_checkpoint_tensors(folder: Path) -> dict[str, TensorRef]:
    """Every tensor of a checkpoint folder: one model.safetensors, or shards listed by the index."""
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        return _read_sharded(folder, index_path)
    single = folder / SINGLE_FILE
    if single.is_file():
        return read_header(single)
    found = sorted(p.name for p in folder.glob("*.safetensors"))
    if len(found) == 1:
        return read_header(folder / found[0])
    if found:
        raise ConversionError(f"{folder}: found {len(found)} .safetensors files but no {INDEX_FILE}; "
                              "expected the index that says which shard holds which tensor")
    other = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf"))
    hint = (f" (found {', '.join(other)}; only safetensors are read: re-save the model with "
            "save_pretrained(..., safe_serialization=True))") if other else ""
    raise ConversionError(f"{folder}: expected {SINGLE_FILE} or {INDEX_FILE}, found no safetensors{hint}")


def _read_sharded(folder: Path, index_path: Path) -> dict[str, TensorRef]:
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConversionError(f"{index_path}: expected JSON with a 'weight_map' object ({exc})") from None
    refs: dict[str, TensorRef] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = folder / shard
        if not shard_path.is_file():
            names = sorted(n for n, s in weight_map.items() if s == shard)
            raise ConversionError(f"shard {shard} is missing from {folder} ({INDEX_FILE} lists {len(names)} "
                                  f"tensors in it, e.g. {names[0]}); download it again")
        refs.update(read_header(shard_path))
    for name, shard in weight_map.items():
        if name not in refs:
            raise ConversionError(f"tensor {name} is missing: {INDEX_FILE} places it in {shard}, "
                                  "which does not contain it; the checkpoint is incomplete")
    return refs


class MappedFile:
    """A read-only memory map of one file that hands out numpy views and drops pages after use."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def view(self, offset: int, dtype: np.dtype, count: int) -> np.ndarray:
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=offset)

    def release(self, offset: int, nbytes: int) -> None:
        """Drop the pages of a byte range from this process's resident memory (they stay in the file)."""
        if not hasattr(self._map, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = offset - offset % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, start, offset + nbytes - start)

    def close(self) -> None:
        try:
            self._map.close()
        except BufferError:
            pass  # a view is still referenced (e.g. by an exception's traceback); unmapped once it is freed

    def __enter__(self) -> MappedFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def widen_to_f32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values (F32, F16 or BF16-as-uint16) as a new float32 array."""
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)  # always a copy, never a view into the map


def read_tensor_f32(ref: TensorRef) -> np.ndarray:
    """A whole tensor as float32 (for checks and comparisons; conversion streams with iter_row_blocks)."""
    storage = STORAGE_DTYPES[ref.dtype]
    with MappedFile(ref.file) as mapped:
        raw = mapped.view(ref.offset, storage, ref.nbytes // storage.itemsize)
        values = widen_to_f32(raw, ref.dtype).reshape(ref.shape)
        del raw
    return values


def iter_row_blocks(ref: TensorRef, mapped: MappedFile, *, block_bytes: int,
                    rows: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The tensor's stored values in blocks of whole rows (2-D views), dropping each block's pages after use.

    `rows` optionally reorders the rows (a permutation of range(n_rows)); blocks follow that order.
    """
    storage = STORAGE_DTYPES[ref.dtype]
    n_rows, row_elements = ref.n_rows, ref.row_elements
    whole = mapped.view(ref.offset, storage, n_rows * row_elements).reshape(n_rows, row_elements)
    rows_per_block = max(1, block_bytes // max(1, row_elements * 4))
    for start in range(0, n_rows, rows_per_block):
        stop = min(n_rows, start + rows_per_block)
        yield whole[start:stop] if rows is None else whole[rows[start:stop]]
        if rows is None:
            mapped.release(ref.offset + start * row_elements * storage.itemsize,
                           (stop - start) * row_elements * storage.itemsize)
    del whole
    if rows is not None:
        mapped.release(ref.offset, ref.nbytes)


@dataclass(frozen=True)
class TensorToWrite:
    """A tensor for `write_safetensors`: stored dtype name, shape, and a function yielding its row blocks."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    blocks: Callable[[], Iterable[np.ndarray]]  # arrays of STORAGE_DTYPES[dtype], rows in order

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * STORAGE_DTYPES[self.dtype].itemsize


def write_safetensors(path: Path, tensors: Sequence[TensorToWrite],
                      metadata: dict[str, str] | None = None) -> int:
    """Write one safetensors file, computing each tensor only when its bytes are due. Returns data bytes."""
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for tensor in tensors:
        header[tensor.name] = {"dtype": tensor.dtype, "shape": list(tensor.shape),
                               "data_offsets": [offset, offset + tensor.nbytes]}
        offset += tensor.nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for tensor in tensors:
            written = 0
            for block in tensor.blocks():
                block = np.ascontiguousarray(block, dtype=STORAGE_DTYPES[tensor.dtype])
                block.tofile(f)
                written += block.nbytes
            if written != tensor.nbytes:
                raise ValueError(f"{tensor.name}: expected {tensor.nbytes} bytes of data, got {written}")
        f.flush()
        os.fsync(f.fileno())
    return offset


def f32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), rounding to nearest even like torch and gguf-py."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    quiet_nan = ((bits >> 16) & 0xFFFF) | 0x0040
    return np.where(is_nan, quiet_nan, rounded).astype(np.uint16)
