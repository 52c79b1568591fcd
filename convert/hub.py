"""Where a checkpoint comes from: a local folder, or a Hugging Face repo id fetched with huggingface_hub."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConversionError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# what a conversion needs from a repo; weights in other formats are not downloaded
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt"]


def resolve_source(source: str | Path) -> Path:
    """A local checkpoint folder for `source`: the folder itself, or a fresh download of a repo id."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConversionError(f"{path}: expected a checkpoint folder (config.json, tokenizer.json, "
                                  "*.safetensors) or a Hugging Face repo id, got a file")
        return path
    if REPO_ID.match(str(source)):
        return download(str(source))
    raise ConversionError(f"{source}: no such folder; expected a checkpoint folder or a Hugging Face "
                          "repo id such as 'owner/name'")


def download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise ConversionError(f"{repo_id}: is not a local folder, and downloading it needs huggingface_hub: "
                              "pip install 'rprm-lite[convert]'") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=DOWNLOAD_PATTERNS))
    except GatedRepoError:
        raise ConversionError(f"{repo_id}: the Hugging Face repo is gated; accept its terms on the hub and "
                              "log in with `hf auth login`, or download it yourself and pass the "
                              "folder") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise ConversionError(f"{repo_id}: no such local folder, and no such Hugging Face repo (or it is "
                              "private); check the spelling or pass a local checkpoint folder") from None
    except LocalEntryNotFoundError:
        raise ConversionError(f"{repo_id}: no such local folder, and it cannot be downloaded: the Hugging "
                              "Face Hub is unreachable (offline, or HF_HUB_OFFLINE is set) and the repo is "
                              "not in the local cache; download it on a connected machine and pass the "
                              "folder") from None
    except OSError as exc:
        raise ConversionError(f"{repo_id}: downloading from the Hugging Face Hub failed ({exc}); "
                              "pass a local checkpoint folder instead") from None
