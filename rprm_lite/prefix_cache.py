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
renamed (atomic). The folder is bounded too (`max_disk_bytes`): after each write the files least recently
written or read from disk are removed until the rest fit. `make_prefix_cache` picks the folder of a mode:
`auto` keeps states in the `--cache` folder's `kv/`, else in the per-user cache folder's (`user_cache_folder`:
$RPRM_CACHE_DIR, else the platform's); `memory` keeps them in memory only; `off` keeps none.
A state is keyed (`state_key`) by everything that decides its values: the model file's and adapters' sha256
and scales, the prompt style and template sha256, the tokens before the mark, the llama.cpp build, thread
count, batch size, offloaded layers and weight buffers.

A file is data, not trusted: it is opened as the step cache opens its entries (a regular file only, through
`open_file_in`), and its header is read first (`read_state_file`): it must name the key asked for and the
token count, and the state size it gives must be the rest of the file and at most MAX_STATE_BYTES, before
one byte of the state is read (so a bad file costs a few kilobytes, whatever its size); the state is then
read once, into the one bytes object that is kept, and its sha256 must match the header. llama.cpp then
checks the state's layout, and the engine that the sequence holds exactly the positions asked for
(`Engine.load_sequence`). A file that fails any check, or that there is not the memory to read, is a miss,
counted in `corrupt`: the prefix is decoded and the file replaced. A write that fails is counted in
`write_errors`, never raised: the cache only ever saves time.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from rprm_lite.errors import InputError
from rprm_lite.jsonl import loads
from rprm_lite.options import shown
from rprm_lite.step_cache import FOLDER_FLAGS, BadEntry, open_file_in, replace_file_in, step_key

MAGIC = b"rprm-lite-kv\n"
VERSION = 1
MAX_HEADER_BYTES = 4096
MAX_STATE_BYTES = 2**30  # a 7B model's f16 KV of 4k tokens is ~0.5 GiB; a prefix is far smaller
DEFAULT_MEMORY_BYTES = 256 * 2**20  # R-PRM-7B's template state is ~26 MiB; a question's a little more
DEFAULT_DISK_BYTES = 256 * 2**20  # on disk: about nine of R-PRM-7B's template states (one per model, style, threads)
FOLDER = "kv"  # the subfolder of a --cache folder that holds the states (the step cache's are 2 hex digits)
ENV_VAR = "RPRM_CACHE_DIR"  # the per-user cache folder, instead of the platform's
APP = "rprm-lite"
MODES = ("auto", "memory", "off")
Mode = Literal["auto", "memory", "off"]
_STATE_FILE = re.compile(r"[0-9a-f]{64}\.kv")
_SUBFOLDER = re.compile(r"[0-9a-f]{2}")


def state_key(base: Mapping[str, Any], tokens: list[int]) -> str:
    """The key of the KV state of `tokens` decoded from an empty cache under `base` (what decides its values)."""
    return step_key({**base, "kind": "prefix-kv", "tokens": tokens})


class PrefixCache:
    """KV states in memory (`max_bytes`; 0 keeps none) and, with `directory`, on disk (`max_disk_bytes`). `hits`,
    `disk_hits`, `misses`, `corrupt` and `write_errors` count what happened; the scorer counts in `lookups` the
    prompts it decoded from their first token, in `restored` those that started from a kept state, and in
    `saved_tokens` the tokens that were not decoded."""

    def __init__(self, directory: str | Path | None = None, *, max_bytes: int = DEFAULT_MEMORY_BYTES,
                 max_disk_bytes: int = DEFAULT_DISK_BYTES) -> None:
        if min(max_bytes, max_disk_bytes) < 0:
            raise InputError(f"the prefix cache sizes must be >= 0 bytes, got {max_bytes} and {max_disk_bytes}")
        self.max_bytes, self.max_disk_bytes = max_bytes, max_disk_bytes
        self.directory = None if directory is None else Path(directory)
        self._memory: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._bytes = 0
        self.hits = self.disk_hits = self.misses = self.corrupt = self.write_errors = 0
        self.lookups = self.restored = self.saved_tokens = 0
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
        self._touch(key)
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
        return self._disk() / key[:2]

    def _disk(self) -> Path:
        assert self.directory is not None, "only a cache with a folder reads or writes files"
        return self.directory

    def _read(self, key: str, n_tokens: int) -> bytes | None:
        try:
            return read_state_file(self._folder(key), f"{key}.kv", key, n_tokens)
        except FileNotFoundError:
            return None
        # a link, FIFO or device; unreadable; malformed; a state there is not the memory to hold
        except (OSError, ValueError, InputError, BadEntry, MemoryError):
            self.corrupt += 1
            return None

    def _write(self, key: str, state: bytes, n_tokens: int) -> None:
        header = {"version": VERSION, "key": key, "tokens": n_tokens, "bytes": len(state),
                  "sha256": hashlib.sha256(state).hexdigest()}
        data = MAGIC + json.dumps(header).encode("ascii") + b"\n" + state
        if len(data) > self.max_disk_bytes:
            return  # it would be removed at once
        try:
            self._disk().mkdir(parents=True, exist_ok=True)
            replace_file_in(self._folder(key), f"{key}.kv", data)
            self._evict(keep=f"{key}.kv")
        except OSError as exc:  # full disk, read-only folder, a linked subfolder, a file in the folder's place
            self.write_errors += 1
            self.last_write_error = exc.strerror or str(exc)

    def _touch(self, key: str) -> None:
        """Mark a state file as just used, so that the bound removes others first (best effort)."""
        if os.utime in os.supports_follow_symlinks:
            try:
                os.utime(self._folder(key) / f"{key}.kv", follow_symlinks=False)
            except OSError:  # a read-only folder: the file is still read, only its rank is older
                pass

    def _evict(self, keep: str) -> None:
        """Remove the state files least recently written or read from disk until the folder's states fit
        `max_disk_bytes`; `keep` (the one just written) stays. Only state files are removed, by name within
        their subfolder opened without following a link, so nothing outside the folder is ever touched."""
        files = sorted(state_files(self._disk()))
        total = sum(size for _, size, _, _ in files)
        for _, size, subfolder, name in files:
            if total <= self.max_disk_bytes:
                return
            if name == keep:
                continue
            try:
                handle = os.open(self._disk() / subfolder, FOLDER_FLAGS)
                try:
                    os.unlink(name, dir_fd=handle)
                finally:
                    os.close(handle)
            except FileNotFoundError:  # another process removed it first
                pass
            total -= size


def state_files(folder: Path) -> list[tuple[float, int, str, str]]:
    """(mtime, size, subfolder, name) of each state file in `folder`: regular files named as states, in
    subfolders that are folders (a link is not followed)."""
    found = []
    with os.scandir(folder) as subfolders:
        for sub in subfolders:
            if not (_SUBFOLDER.fullmatch(sub.name) and sub.is_dir(follow_symlinks=False)):
                continue
            with os.scandir(sub.path) as entries:
                for entry in entries:
                    if _STATE_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        found.append((info.st_mtime, info.st_size, sub.name, entry.name))
    return found


def user_cache_folder(environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> Path | None:
    """rprm-lite's per-user cache folder: $RPRM_CACHE_DIR, else %LOCALAPPDATA%\\rprm-lite\\Cache on Windows,
    ~/Library/Caches/rprm-lite on macOS, $XDG_CACHE_HOME/rprm-lite (default ~/.cache/rprm-lite) elsewhere;
    None when there is no home folder to put it in."""
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR]).expanduser()
    if platform == "win32" and environ.get("LOCALAPPDATA"):
        return Path(environ["LOCALAPPDATA"]) / APP / "Cache"
    xdg = environ.get("XDG_CACHE_HOME", "")
    if platform not in ("win32", "darwin") and os.path.isabs(xdg):  # the spec ignores a relative path
        return Path(xdg) / APP
    try:
        home = Path.home()
    except RuntimeError:  # no $HOME and no password entry
        return None
    return home / ("Library/Caches" if platform == "darwin" else "AppData/Local" if platform == "win32"
                   else ".cache") / APP


def checked_mode(mode: str) -> Mode:
    """`mode` when it is one of MODES, else InputError (the option's one message)."""
    if mode not in MODES:
        raise InputError(f"--prefix-cache must be one of {', '.join(MODES)}, got {shown(mode)}")
    return cast(Mode, mode)  # one of MODES, checked above


def make_prefix_cache(mode: Mode | bool | PrefixCache, folder: Path | None) -> PrefixCache | None:
    """The prefix cache of `--prefix-cache MODE` (True is auto, False off; a `PrefixCache` is used as it is):
    auto keeps states in memory and in `folder`'s `kv/` (the --cache folder), else in the per-user cache
    folder's; memory in memory only; off nowhere (None)."""
    if isinstance(mode, PrefixCache):
        return mode
    mode = checked_mode("auto" if mode is True else "off" if mode is False else mode)
    if mode == "off":
        return None
    root = (folder if folder is not None else user_cache_folder()) if mode == "auto" else None
    return PrefixCache(None if root is None else root / FOLDER)


def read_state_file(folder: Path, name: str, key: str, n_tokens: int) -> bytes:
    """The state the file `name` in `folder` holds, or BadEntry when it is not a whole state of `n_tokens`
    tokens for `key`. The header is read and checked, and the state's size against the file's, before the
    state is read: once, with no second copy."""
    handle, size = open_file_in(folder, name)
    try:
        head = os.read(handle, len(MAGIC) + MAX_HEADER_BYTES + 1)
        header, start = header_from_file(head, key, n_tokens)
        if header["bytes"] > MAX_STATE_BYTES or start + header["bytes"] != size:
            raise BadEntry(f"the header gives {header['bytes']} bytes of state, the file holds {size - start}")
        os.lseek(handle, start, os.SEEK_SET)
        state = read_exactly(handle, header["bytes"])
    finally:
        os.close(handle)
    if hashlib.sha256(state).hexdigest() != header["sha256"]:
        raise BadEntry("the state does not match the header's sha256")
    return state


def header_from_file(head: bytes, key: str, n_tokens: int) -> tuple[dict[str, Any], int]:
    """The header at the start of a state file (`head`: its first bytes) and where the state starts, or BadEntry
    when it is not a header of a state of `n_tokens` tokens for `key`."""
    if not head.startswith(MAGIC):
        raise BadEntry("not a prefix state file")
    end = head.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER_BYTES)
    if end < 0:
        raise BadEntry("no header line")
    header = loads(head[len(MAGIC):end], where=key, max_depth=1)
    if not isinstance(header, dict) or set(header) != {"version", "key", "tokens", "bytes", "sha256"}:
        raise BadEntry("not a prefix state header")
    expected, size = {"version": VERSION, "key": key, "tokens": n_tokens}, header["bytes"]
    if (any(header[name] != value for name, value in expected.items()) or isinstance(size, bool)
            or not isinstance(size, int) or size < 0 or not isinstance(header["sha256"], str)):
        raise BadEntry("the header does not match the key or the token count")
    return header, end + 1


def read_exactly(handle: int, size: int) -> bytes:
    """The next `size` bytes of an open file in one bytes object, or BadEntry when the file ends first."""
    data = os.read(handle, size)
    if len(data) < size:  # a read the system cut short: the rest in pieces (a copy, but only then)
        pieces, got = [data], len(data)
        while got < size and (piece := os.read(handle, size - got)):
            pieces.append(piece)
            got += len(piece)
        data = b"".join(pieces)
    if len(data) != size:
        raise BadEntry(f"the file ends after {len(data)} of {size} bytes of state")
    return data
