"""Safetensors read and write with numpy only (no torch), tensor by tensor.

Reading maps each shard into memory and hands out row blocks; after a block is used its pages
are dropped again (madvise), so resident memory stays near one block instead of growing with the
model. bf16 has no numpy dtype: it is read as uint16 and widened to float32 by a 16-bit shift.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import CheckpointError
from .json_files import json_type, parse_json_object, read_json_file, short_repr

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
        return math.prod(self.shape[1:])


def read_header(path: Path) -> dict[str, TensorRef]:
    """Parse and check one .safetensors header: every entry well formed, every tensor's bytes inside the
    file's data area, and no two tensors sharing bytes. Any violation is a CheckpointError."""
    size = _file_size(path)
    header, data_start = _read_header_object(path, size)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: expected '__metadata__' to be an object, got {json_type(metadata)}")
    refs = {name: _tensor_ref(path, name, entry, data_start, size) for name, entry in header.items()}
    _check_no_overlap(path, refs.values(), data_start)
    return refs


def _read_header_object(path: Path, size: int) -> tuple[dict, int]:
    """The header's JSON object and the file offset where the data area starts."""
    with open(path, "rb") as f:
        raw_length = f.read(8)
        if len(raw_length) < 8:
            raise CheckpointError(f"{path}: expected a safetensors file, got {size} bytes (too short for "
                                  "a header)")
        (header_length,) = struct.unpack("<Q", raw_length)
        if header_length > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path}: expected a safetensors header of at most "
                                  f"{min(MAX_HEADER_BYTES, size - 8)} bytes, got a length field of "
                                  f"{header_length}; the file is corrupt or not safetensors")
        raw_header = f.read(header_length)
    header = parse_json_object(raw_header, source=f"{path} (safetensors header)", unique_keys=True)
    return header, 8 + header_length


def _tensor_ref(path: Path, name: str, entry: object, data_start: int, size: int) -> TensorRef:
    if not isinstance(entry, dict):
        raise CheckpointError(f"{path}: tensor {name}: expected an object with dtype, shape and data_offsets, "
                              f"got {json_type(entry)}")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in STORAGE_DTYPES:
        raise CheckpointError(f"{path.name}: tensor {name} has dtype {short_repr(dtype)}; expected one of "
                              f"{', '.join(STORAGE_DTYPES)}. Convert the checkpoint to bf16 or f16 first "
                              "(e.g. load and save_pretrained with dtype=bfloat16)")
    shape = _natural_numbers(path, name, entry, "shape")
    begin, end = _natural_numbers(path, name, entry, "data_offsets", length=2)
    expected = math.prod(shape) * STORAGE_DTYPES[dtype].itemsize
    if end - begin != expected:
        raise CheckpointError(f"{path.name}: tensor {name} has shape {short_repr(list(shape))} in {dtype}: expected "
                              f"{expected} bytes of data, got data_offsets [{begin}, {end}] ({end - begin} "
                              "bytes); the file is corrupt")
    if data_start + end > size:
        raise CheckpointError(f"{path}: tensor {name} ends at byte {data_start + end} but the file has "
                              f"{size} bytes; the shard is truncated, download it again")
    return TensorRef(name, path, dtype, shape, data_start + begin, expected)


def _natural_numbers(path: Path, name: str, entry: dict, key: str, *,
                     length: int | None = None) -> tuple[int, ...]:
    """entry[key] as a tuple of non-negative integers (of `length` of them, when given)."""
    value = entry.get(key)
    valid = (isinstance(value, list) and (length is None or len(value) == length)
             and all(type(n) is int and 0 <= n < 2**64 for n in value))  # the format's numbers are u64
    if not valid:
        count = f"{length} " if length else ""
        raise CheckpointError(f"{path}: tensor {name}: expected '{key}' to be a list of {count}non-negative "
                              f"integers below 2**64, got {short_repr(value)}")
    return tuple(value)


def _check_no_overlap(path: Path, refs: Iterable[TensorRef], data_start: int) -> None:
    """No byte belongs to two tensors (else a GGUF would silently hold one tensor's values twice)."""
    placed = sorted((ref for ref in refs if ref.nbytes), key=lambda ref: ref.offset)
    for before, after in zip(placed, placed[1:], strict=False):
        if after.offset < before.offset + before.nbytes:
            raise CheckpointError(f"{path}: tensor {after.name} (data_offsets {_span(after, data_start)}) "
                                  f"overlaps tensor {before.name} ({_span(before, data_start)}); expected "
                                  "tensors that share no bytes; the file is corrupt")


def _span(ref: TensorRef, data_start: int) -> str:
    begin = ref.offset - data_start
    return f"[{begin}, {begin + ref.nbytes}]"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None


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
        raise CheckpointError(f"{folder}: found {len(found)} .safetensors files but no {INDEX_FILE}; "
                              "expected the index that says which shard holds which tensor")
    other = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf"))
    hint = (f" (found {', '.join(other)}; only safetensors are read: re-save the model with "
            "save_pretrained(..., safe_serialization=True))") if other else ""
    raise CheckpointError(f"{folder}: expected {SINGLE_FILE} or {INDEX_FILE}, found no safetensors{hint}")


def _read_sharded(folder: Path, index_path: Path) -> dict[str, TensorRef]:
    weight_map = read_weight_map(index_path)
    by_shard = {shard: read_header(_shard_path(folder, shard, weight_map))
                for shard in sorted(set(weight_map.values()))}
    refs: dict[str, TensorRef] = {}
    for shard, shard_refs in by_shard.items():
        for name, ref in shard_refs.items():
            if name in refs:
                raise CheckpointError(f"tensor {name} is in both {refs[name].file.name} and {shard}; expected "
                                      "each tensor in one shard")
            refs[name] = ref
    for name, shard in weight_map.items():
        if name not in by_shard[shard]:
            raise CheckpointError(f"tensor {name} is missing: {INDEX_FILE} places it in {shard}, "
                                  "which does not contain it; the checkpoint is incomplete")
    return refs


def read_weight_map(index_path: Path) -> dict[str, str]:
    """The index's tensor name -> shard file name map, each shard a relative path inside the folder."""
    weight_map = read_json_file(index_path).get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index_path}: expected a 'weight_map' object, got {json_type(weight_map)}")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not _is_inside(shard):
            raise CheckpointError(f"{index_path}: tensor {name}: expected a shard file name inside the "
                                  f"checkpoint folder, got {short_repr(shard)}")
    return weight_map


def _is_inside(shard: str) -> bool:
    relative = PurePosixPath(shard)
    return bool(shard) and not relative.is_absolute() and ".." not in relative.parts


def _shard_path(folder: Path, shard: str, weight_map: dict[str, str]) -> Path:
    shard_path = folder / shard
    if not shard_path.is_file():
        names = sorted(n for n, s in weight_map.items() if s == shard)
        raise CheckpointError(f"shard {shard} is missing from {folder} ({INDEX_FILE} lists {len(names)} "
                              f"tensors in it, e.g. {names[0]}); download it again")
    return shard_path


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
