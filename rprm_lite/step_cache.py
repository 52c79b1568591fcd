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
renamed (atomic), so a killed run leaves no half-written entry. An entry that cannot be read or does
not hold what its name says is ignored (a miss) and rewritten; a write that fails (full disk,
read-only folder) is counted, never raised: the cache only ever saves time.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError
from rprm_lite.results import StepResult

FORMAT = "rprm-lite-step"
VERSION = 1
DEFAULT_MAX_ENTRIES = 256  # at K=10 and 4096-token critiques an entry is at most ~200 KB of text

# the type of each StepResult field as stored in JSON (tuples are stored as lists)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "index": (int,), "score": (float, type(None)), "p_yes": (list,), "verdict": (str,), "fallbacks": (int,),
    "generated_tokens": (int,), "critiques": (list,), "prompt_tokens": (int,), "reused_tokens": (int,),
    "raw_score": (float, type(None)),
    "critiques_used": (int, type(None)), "stop_reason": (str, type(None)),  # adaptive K
}
# fields added after entries were first written: an entry without them was written with None there
ADDED_FIELDS = ("critiques_used", "stop_reason")


def step_key(material: Mapping[str, Any]) -> str:
    """The sha256 of `material` as canonical JSON."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class StepCache:
    def __init__(self, directory: str | Path | None = None, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 0:
            raise InputError(f"the step cache size must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self.directory = None if directory is None else Path(directory)
        self._memory: collections.OrderedDict[str, StepResult] = collections.OrderedDict()
        self.hits = self.misses = self.corrupt = self.write_errors = 0
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"--cache {self.directory}: cannot use it as a cache folder "
                                 f"({exc.strerror or exc})") from None

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 or self.directory is not None

    def get(self, key: str) -> StepResult | None:
        step = self._memory.get(key)
        if step is not None:
            self._memory.move_to_end(key)
        elif self.directory is not None:
            step = self._read(key)
            if step is not None:
                self._remember(key, step)
        if step is None:
            self.misses += 1
        else:
            self.hits += 1
        return step

    def put(self, key: str, step: StepResult) -> None:
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
    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def _read(self, key: str) -> StepResult | None:
        path = self._path(key)
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
            self.corrupt += 1
            return None
        step = _step_from_record(record, key)
        if step is None:
            self.corrupt += 1
        return step

    def _write(self, key: str, step: StepResult) -> None:
        path = self._path(key)
        record = {"format": FORMAT, "version": VERSION, "key": key, "step": dataclasses.asdict(step)}
        temp = None
        try:
            path.parent.mkdir(exist_ok=True)
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=".tmp-",
                                             suffix=".json", delete=False) as handle:
                temp = handle.name
                json.dump(record, handle, ensure_ascii=False, allow_nan=False)
            os.replace(temp, path)
            temp = None
        except (OSError, ValueError):
            self.write_errors += 1
        finally:
            if temp is not None:
                try:
                    os.unlink(temp)
                except OSError:
                    pass


def _step_from_record(record: Any, key: str) -> StepResult | None:
    """The StepResult an entry holds, or None when it is not a well-formed entry for `key`."""
    if (not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION
            or record.get("key") != key or not isinstance(record.get("step"), dict)):
        return None
    data = record["step"]
    data = {**dict.fromkeys(ADDED_FIELDS), **data}
    if set(data) != set(FIELD_TYPES):
        return None
    for name, types in FIELD_TYPES.items():
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, types):
            return None
    if not all(isinstance(p, float) for p in data["p_yes"]) or not all(isinstance(c, str) for c in data["critiques"]):
        return None
    return StepResult(**{**data, "p_yes": tuple(data["p_yes"]), "critiques": tuple(data["critiques"])})
