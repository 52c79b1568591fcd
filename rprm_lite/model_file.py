"""GGUF pre-flight: find the model file and check it before llama.cpp touches it.

llama.cpp aborts the whole process on some malformed files, so magic, version, header and
tensor extents are checked here first, with messages that say what is wrong.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from rprm_lite import metadata
from rprm_lite.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MODEL_ENV = "RPRM_MODEL"
BUNDLED_MODEL = "rprm-demo.gguf"


def bundled_model_path() -> Path:
    return Path(str(resources.files("rprm_lite").joinpath("models", BUNDLED_MODEL)))


def resolve_model_path(model: str | Path | None) -> Path:
    """--model, else $RPRM_MODEL, else the model bundled with the package."""
    if model:
        return Path(model)
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    bundled = bundled_model_path()
    if bundled.exists():
        return bundled
    raise ModelFileError(f"no model given: pass --model PATH.gguf or set {MODEL_ENV} "
                         f"(this installation has no bundled model at {bundled})")


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

    @cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        return digest.hexdigest()

    @property
    def yes_token_id(self) -> int | None:
        return self.rprm.get(metadata.YES_TOKEN_ID)

    @property
    def no_token_id(self) -> int | None:
        return self.rprm.get(metadata.NO_TOKEN_ID)

    @property
    def description(self) -> str | None:
        return self.rprm.get(metadata.DESCRIPTION)

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
        """ScoreConfig fields the model file sets (rprm.* metadata)."""
        return {name: _plain(self.rprm[key]) for key, name in metadata.CONFIG_FIELDS.items() if key in self.rprm}


def _plain(value: Any) -> Any:
    # float32 metadata such as 0.95 reads back as 0.949999988; keep the value that was meant
    return float(f"{value:.7g}") if isinstance(value, float) else value


def inspect_model(path: str | Path) -> ModelInfo:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder; expected a .gguf file "
                             "(convert a Hugging Face checkpoint with `rprm-lite convert`)")
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelFileError(f"{path}: not a GGUF file (expected magic b'GGUF', got {head[:4]!r})")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(f"{path}: GGUF version {version} is not supported (expected 2 or 3)")
    reader = _read(path)
    _check_extents(path, reader, size)
    fields = {name: _field_value(f) for name, f in reader.fields.items()}
    arch = fields.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelFileError(f"{path}: GGUF has no general.architecture; is it a vocabulary-only file?")
    if not reader.tensors:
        raise ModelFileError(f"{path}: GGUF holds no tensors (a vocabulary-only file?); expected model weights")
    return ModelInfo(path=path, size=size, version=version, architecture=arch,
                     name=fields.get("general.name"), file_type=fields.get("general.file_type"),
                     context_length=fields.get(f"{arch}.context_length"), n_tensors=len(reader.tensors),
                     rprm={k: v for k, v in fields.items() if k.startswith("rprm.")})


def _read(path: Path):
    from gguf import GGUFReader

    try:
        return GGUFReader(path, "r")
    except Exception as exc:  # the reader raises many kinds on corrupt headers
        raise ModelFileError(f"{path}: corrupt or truncated GGUF header ({type(exc).__name__}: {exc})") from None


def _check_extents(path: Path, reader, size: int) -> None:
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size:
            raise ModelFileError(f"{path}: truncated: tensor {tensor.name} ends at byte {end:,} but the file "
                                 f"has {size:,} bytes (an interrupted download or copy?)")


def _field_value(field) -> Any:
    from gguf import GGUFValueType

    if not field.types:
        return None
    kind = field.types[0]
    if kind == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    if kind == GGUFValueType.ARRAY:
        return None  # arrays (vocabularies) are large and not needed here
    value = field.parts[field.data[0]][0]
    return value.item() if hasattr(value, "item") else value
