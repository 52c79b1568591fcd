"""Results of recently scored steps, reused when nothing that decides them has changed.

A student who fixes step 4 of 6 leaves steps 1-3 as they were; their prompts, and so their critiques,
are the same, and need not be sampled again. A step's result is keyed by everything that determines it
(`step_key`): the model file's sha256, every setting that changes a result, the step's index (the
samplers' seeds depend on it), the tokens of its prompt (which hold the question and every earlier
step), the critique budget of its solution, and the llama.cpp build and thread count. Decision-only
settings (threshold, uncertain band, calibration, aggregation, all_steps) are not in the key: a hit is
decided again under the settings of the call.

`StepCache` keeps a bounded number of results in memory (least recently used dropped first) and,
with a directory, on disk across runs: one JSON file per step, written under a temporary name and
renamed (atomic), so a killed run leaves no half-written entry.

An entry on disk is data, not trusted: anything may have been put in its place. Only a regular file
is read (opened without following links and without blocking, then checked with fstat, so a FIFO,
a device or a link is never read), in a subfolder that is itself a folder and not a link; its size
and nesting are bounded, it is parsed by the one bounded JSON reader, and every field is checked (types,
p_yes finite in [0, 1] with the score their mean, the step's index and prompt length those of the step
asked for, ...). A bad entry is a miss, counted in `corrupt`: the step is scored again and the entry
replaced (the rename replaces a FIFO or a link itself, never what a link points to). A write that fails
(full disk, read-only folder, a subfolder that is a link) is counted in `write_errors` with its reason,
never raised: the cache only ever saves time.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
import secrets
import stat
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rprm_lite.adaptive import REACHED_K, SETTLED
from rprm_lite.errors import InputError
from rprm_lite.jsonl import loads
from rprm_lite.results import StepResult, Verdict

FORMAT = "rprm-lite-step"
VERSION = 1
DEFAULT_MAX_ENTRIES = 256  # at K=10 and 4096-token critiques an entry is at most ~200 KB of text
MAX_ENTRY_BYTES = 64 * 2**20  # K=255 critiques of a 32k context, with room; a larger one is not cached
ENTRY_DEPTH = 3  # the record, its step, the step's lists
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
FOLDER_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

# the type of each StepResult field as stored in JSON (tuples are stored as lists)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "index": (int,), "score": (float, type(None)), "p_yes": (list,), "verdict": (str,), "fallbacks": (int,),
    "generated_tokens": (int,), "critiques": (list,), "prompt_tokens": (int,), "reused_tokens": (int,),
    "raw_score": (float, type(None)),
    "critiques_used": (int, type(None)), "stop_reason": (str, type(None)),  # adaptive K
    "calculated": (list, type(None)),  # the calculator's spans
}
# fields added after entries were first written: an entry without them was written with None there
ADDED_FIELDS = ("critiques_used", "stop_reason", "calculated")
# fields of the work of the run that scored a step, not of its result: never kept (a hit decodes nothing)
NOT_KEPT = ("prefix_tokens",)


def step_key(material: Mapping[str, Any]) -> str:
    """The sha256 of `material` as canonical JSON."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class BadEntry(Exception):
    """A cache entry that is not a well-formed result for the step asked for (a miss, never an error)."""


class StepCache:
    """Step results kept in memory (`max_entries`, least recently used dropped first; 0 keeps none) and,
    with `directory`, on disk across runs. `hits`, `misses`, `corrupt` and `write_errors` count what happened."""

    def __init__(self, directory: str | Path | None = None, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 0:
            raise InputError(f"the step cache size must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self.directory = None if directory is None else Path(directory)
        self._memory: collections.OrderedDict[str, StepResult] = collections.OrderedDict()
        self.hits = self.misses = self.corrupt = self.write_errors = 0
        self.last_write_error = ""  # why the last failed write failed, for the run's note
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"--cache {self.directory}: cannot use it as a cache folder "
                                 f"({exc.strerror or exc})") from None

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 or self.directory is not None

    def get(self, key: str, *, expect: Mapping[str, Any] | None = None) -> StepResult | None:
        """The result stored under `key`, or None. `expect`: fields the result must hold (the step's
        `index` and `prompt_tokens`); an entry that holds others is not the step asked for."""
        step = self._memory.get(key)
        if step is not None:
            self._memory.move_to_end(key)
        elif self.directory is not None:
            step = self._read(key, expect or {})
            if step is not None:
                self._remember(key, step)
        if step is not None and any(getattr(step, name) != value for name, value in (expect or {}).items()):
            step = None
        if step is None:
            self.misses += 1
        else:
            self.hits += 1
        return step

    def put(self, key: str, step: StepResult) -> None:
        if any(getattr(step, name) is not None for name in NOT_KEPT):
            dropped: dict[str, Any] = dict.fromkeys(NOT_KEPT)  # fields of several types: one None each
            step = dataclasses.replace(step, **dropped)
        self._remember(key, step)
        if self.directory is not None:
            self._write(key, step)

    def _remember(self, key: str, step: StepResult) -> None:
        if self.max_entries == 0:
            return
        self._memory[key] = step
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    # -- disk --------------------------------------------------------------------------------
    def _folder(self, key: str) -> Path:
        assert self.directory is not None, "only a cache with a folder reads or writes files"
        return self.directory / key[:2]

    def _read(self, key: str, expect: Mapping[str, Any]) -> StepResult | None:
        try:
            data = self._read_entry(key)
            return step_from_record(loads(data, where=key, max_depth=ENTRY_DEPTH), key, expect)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, InputError, BadEntry):  # a link, FIFO or device; unreadable; malformed
            self.corrupt += 1
            return None

    def _read_entry(self, key: str) -> bytes:
        return read_file_in(self._folder(key), f"{key}.json", MAX_ENTRY_BYTES)

    def _write(self, key: str, step: StepResult) -> None:
        fields = {name: value for name, value in dataclasses.asdict(step).items() if name not in NOT_KEPT}
        record = {"format": FORMAT, "version": VERSION, "key": key, "step": fields}
        try:
            data = json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")
            if len(data) > MAX_ENTRY_BYTES:
                return  # a reader would refuse it
            self._write_entry(key, data)
        except (OSError, ValueError) as exc:  # full disk, read-only folder, a linked subfolder; a NaN
            self.write_errors += 1
            self.last_write_error = getattr(exc, "strerror", None) or str(exc)

    def _write_entry(self, key: str, data: bytes) -> None:
        replace_file_in(self._folder(key), f"{key}.json", data)


def read_file_in(folder: Path, name: str, limit: int) -> bytes:
    """The bytes of the regular file `name` in `folder`, neither followed through a link: FileNotFoundError
    when it is absent, BadEntry when it is not a regular file or holds more than `limit` bytes, OSError when
    it cannot be read. The step cache's reader."""
    handle, size = open_file_in(folder, name)
    try:
        if size > limit:
            raise BadEntry(f"{size} bytes")
        return read_at_most(handle, limit)
    finally:
        os.close(handle)


def open_file_in(folder: Path, name: str) -> tuple[int, int]:
    """A handle on the regular file `name` in `folder` and its size, neither followed through a link:
    FileNotFoundError when it is absent, BadEntry when it is not a regular file. The step cache's and the
    prefix cache's (rprm_lite/prefix_cache.py) one way to open an entry."""
    handle_of_folder = os.open(folder, FOLDER_FLAGS)  # a subfolder that is a link: ELOOP or ENOTDIR
    try:
        handle = os.open(name, _READ_FLAGS, dir_fd=handle_of_folder)
    finally:
        os.close(handle_of_folder)
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise BadEntry("not a regular file")
    except BaseException:
        os.close(handle)
        raise
    return handle, info.st_size


def replace_file_in(folder: Path, name: str, data: bytes) -> None:
    """`data` under a temporary name in `folder` (made when missing), then renamed over `name` (atomic); every
    name is opened relative to the folder, which is opened without following a link."""
    try:
        folder.mkdir()
    except FileExistsError:
        pass
    try:
        handle_of_folder = os.open(folder, FOLDER_FLAGS)
    except OSError as exc:
        raise OSError(exc.errno, f"{folder} is not a plain folder (a link or a file? remove it)") from None
    temp = f".tmp-{name}-{secrets.token_hex(4)}"
    try:
        handle = os.open(temp, _CREATE_FLAGS, 0o644, dir_fd=handle_of_folder)
        try:
            write_all(handle, data)
        finally:
            os.close(handle)
        os.replace(temp, name, src_dir_fd=handle_of_folder, dst_dir_fd=handle_of_folder)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=handle_of_folder)
        except OSError:
            pass
        raise
    finally:
        os.close(handle_of_folder)


def read_at_most(handle: int, limit: int) -> bytes:
    """The rest of an open file, or BadEntry when it holds more than `limit` bytes."""
    chunks, size = [], 0
    while chunk := os.read(handle, min(1 << 20, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BadEntry(f"more than {limit} bytes")
    return b"".join(chunks)


def write_all(handle: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view):]


def step_from_record(record: Any, key: str, expect: Mapping[str, Any]) -> StepResult:
    """The StepResult an entry holds, or BadEntry when it is not a well-formed entry for `key`."""
    if (not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION
            or record.get("key") != key or not isinstance(record.get("step"), dict)):
        raise BadEntry("not an entry for this key")
    data = {**dict.fromkeys(ADDED_FIELDS), **record["step"]}
    if set(data) != set(FIELD_TYPES):
        raise BadEntry(f"fields {sorted(set(data) ^ set(FIELD_TYPES))} missing or unknown")
    for name, types in FIELD_TYPES.items():
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise BadEntry(f"{name} is {type(value).__name__}")
    problem = next(entry_problems(data), None) or next(
        (f"{name} {data[name]!r:.40}, expected {value!r}" for name, value in expect.items() if data[name] != value),
        None)
    if problem:
        raise BadEntry(problem)
    calculated = data["calculated"]
    return StepResult(**{**data, "p_yes": tuple(data["p_yes"]), "critiques": tuple(data["critiques"]),
                         "calculated": None if calculated is None else
                         tuple(tuple(tuple(span) for span in spans) for spans in calculated)})


def entry_problems(data: Mapping[str, Any]) -> Iterator[str]:
    """What is impossible in a scored step's fields (types already checked)."""
    p_yes, critiques = data["p_yes"], data["critiques"]
    if not p_yes or not all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in p_yes):  # NaN fails the range
        yield "p_yes must be numbers in [0, 1], one per critique"
    elif len(critiques) != len(p_yes) or not all(isinstance(c, str) for c in critiques):
        yield "one critique text per p_yes"
    elif (data["score"] if data["raw_score"] is None else data["raw_score"]) != sum(p_yes) / len(p_yes):
        yield "the score is not the mean of p_yes"
    if data["score"] is None or not 0.0 <= data["score"] <= 1.0 or not math.isfinite(data["score"]):
        yield f"score {data['score']!r} outside [0, 1]"
    if data["verdict"] not in typing.get_args(Verdict) or data["verdict"] == "not scored":
        yield f"verdict {data['verdict']!r:.40}"
    counts = ("index", "fallbacks", "generated_tokens", "prompt_tokens", "reused_tokens")
    if data["index"] < 1 or any(data[name] < 0 for name in counts) or data["fallbacks"] > len(p_yes):
        yield "a negative count or more fallbacks than critiques"
    if data["reused_tokens"] > data["prompt_tokens"]:
        yield "more reused tokens than prompt tokens"
    if data["calculated"] is not None and not _spans_fit(data["calculated"], critiques):
        yield "calculator spans that do not fit their critiques"
    adaptive = (data["critiques_used"], data["stop_reason"])
    if adaptive != (None, None) and (adaptive[0] != len(p_yes) or adaptive[1] not in (SETTLED, REACHED_K)):
        yield f"adaptive fields {adaptive!r:.60}"


def _spans_fit(calculated: list[Any], critiques: list[Any]) -> bool:
    """One list of [start, end] character spans per critique, in order, inside its text."""
    if len(calculated) != len(critiques):
        return False
    for spans, text in zip(calculated, critiques, strict=True):
        if not isinstance(spans, list):
            return False
        end = 0
        for span in spans:
            if (not isinstance(span, list) or len(span) != 2
                    or not all(type(n) is int for n in span) or not end <= span[0] < span[1] <= len(text)):
                return False
            end = span[1]
    return True
