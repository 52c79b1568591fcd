"""KV states of prompt prefixes, decoded once per model instead of once per solution.

Every R-PRM prompt starts with the same template text (the released prompt's ~460 tokens of instructions,
before the question), and the first prompt of every solution of one question also shares the question.
The scorer decodes a prompt from an empty cache in pieces cut at marks that depend on that prompt alone
(`Scorer._marks`: the end of the template's text before the first user text, then the end of the
question), each piece in chunks of the batch size from its start. So the KV values before a mark are the
same bit for bit whatever was scored before, and llama.cpp's sequence state saved there can be put back
into an empty cache instead of decoding the piece again: results are identical with and without this
cache, from memory or from disk (tests/test_prefix_cache.py compares every field).

`PrefixCache` keeps states in memory (least recently used dropped first, bounded in bytes) and, with a
folder, the template's states on disk across runs: one file per state, written under a temporary name and
renamed (atomic). A state is keyed (`state_key`) by everything that decides its values: the model file's
and adapters' sha256 and scales, the prompt style and template sha256, the tokens before the mark, the
llama.cpp build, thread count, batch size, offloaded layers and weight buffers.

A file is data, not trusted: it is read as the step cache reads its entries (a regular file only, bounded,
through `read_file_in`), then its header must name the key asked for and the token count, and the state's
size and sha256 must match the header; llama.cpp then checks the state's layout, and the engine that the
sequence holds exactly the positions asked for (`Engine.load_sequence`). A bad file is a miss, counted in
`corrupt`: the prefix is decoded and the file replaced. A write that fails is counted in `write_errors`,
never raised: the cache only ever saves time.
"""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError
from rprm_lite.jsonl import loads
from rprm_lite.step_cache import BadEntry, read_file_in, replace_file_in, step_key

MAGIC = b"rprm-lite-kv\n"
VERSION = 1
MAX_HEADER_BYTES = 4096
MAX_STATE_BYTES = 2**30  # a 7B model's f16 KV of 4k tokens is ~0.5 GiB; a prefix is far smaller
DEFAULT_MEMORY_BYTES = 256 * 2**20  # R-PRM-7B's template state is ~26 MiB; a question's a little more
FOLDER = "kv"  # the subfolder of a --cache folder that holds the states (the step cache's are 2 hex digits)


def state_key(base: Mapping[str, Any], tokens: list[int]) -> str:
    """The key of the KV state of `tokens` decoded from an empty cache under `base` (what decides its values)."""
    return step_key({**base, "kind": "prefix-kv", "tokens": tokens})


class PrefixCache:
    """KV states in memory (`max_bytes`; 0 keeps none) and, with `directory`, on disk. `hits`, `disk_hits`,
    `misses`, `corrupt` and `write_errors` count what happened; `saved_tokens` the tokens not decoded."""

    def __init__(self, directory: str | Path | None = None, *, max_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        if max_bytes < 0:
            raise InputError(f"the prefix cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self.directory = None if directory is None else Path(directory)
        self._memory: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._bytes = 0
        self.hits = self.disk_hits = self.misses = self.corrupt = self.write_errors = self.saved_tokens = 0
        self.last_write_error = ""  # the folder is made at the first write: one that cannot be is counted there

    def __contains__(self, key: str) -> bool:
        return key in self._memory

    def get(self, key: str, n_tokens: int) -> bytes | None:
        """The state stored under `key` (from memory, else from a checked file), or None."""
        state = self._memory.get(key)
        if state is not None:
            self._memory.move_to_end(key)
            self.hits += 1
            return state
        state = self._read(key, n_tokens) if self.directory is not None else None
        if state is None:
            self.misses += 1
            return None
        self.disk_hits += 1
        self._remember(key, state)
        return state

    def put(self, key: str, state: bytes, n_tokens: int, *, persist: bool) -> None:
        """Keep a state in memory, and with `persist` in the folder too."""
        self._remember(key, state)
        if persist and self.directory is not None:
            self._write(key, state, n_tokens)

    def refused(self, key: str) -> None:
        """llama.cpp or the engine refused the state stored under `key`: forget it (a file is rewritten when
        the prefix has been decoded again)."""
        self.corrupt += 1
        self._bytes -= len(self._memory.pop(key, b""))

    def _remember(self, key: str, state: bytes) -> None:
        if len(state) > self.max_bytes:
            return
        self._bytes += len(state) - len(self._memory.pop(key, b""))
        self._memory[key] = state
        while self._bytes > self.max_bytes:
            self._bytes -= len(self._memory.popitem(last=False)[1])

    # -- disk --------------------------------------------------------------------------------
    def _folder(self, key: str) -> Path:
        return self.directory / key[:2]

    def _read(self, key: str, n_tokens: int) -> bytes | None:
        try:
            data = read_file_in(self._folder(key), f"{key}.kv", MAX_HEADER_BYTES + MAX_STATE_BYTES)
            return state_from_file(data, key, n_tokens)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, InputError, BadEntry):  # a link, FIFO or device; unreadable; malformed
            self.corrupt += 1
            return None

    def _write(self, key: str, state: bytes, n_tokens: int) -> None:
        header = {"version": VERSION, "key": key, "tokens": n_tokens, "bytes": len(state),
                  "sha256": hashlib.sha256(state).hexdigest()}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            replace_file_in(self._folder(key), f"{key}.kv",
                            MAGIC + json.dumps(header).encode("ascii") + b"\n" + state)
        except OSError as exc:  # full disk, read-only folder, a linked subfolder
            self.write_errors += 1
            self.last_write_error = exc.strerror or str(exc)


def state_from_file(data: bytes, key: str, n_tokens: int) -> bytes:
    """The state a file holds, or BadEntry when it is not a whole state of `n_tokens` tokens for `key`."""
    if not data.startswith(MAGIC):
        raise BadEntry("not a prefix state file")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER_BYTES)
    if end < 0:
        raise BadEntry("no header line")
    header = loads(data[len(MAGIC):end], where=key, max_depth=1)
    state = data[end + 1:]
    expected = {"version": VERSION, "key": key, "tokens": n_tokens, "bytes": len(state),
                "sha256": hashlib.sha256(state).hexdigest()}
    if header != expected:
        raise BadEntry("the header does not match the key, the token count or the state")
    return state
