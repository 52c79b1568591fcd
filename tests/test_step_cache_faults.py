"""A step-cache entry is data from disk, not trusted: fault injection and mutated entries.

Whatever sits where an entry should be (a FIFO, a device, a link, a malformed or impossible result),
the cache never serves it, never hangs or crashes on it, and replaces it with the step scored again;
it never writes through a linked subfolder; a read-only or full disk is counted, never raised, and a
run's results are kept. Runs that could hang (FIFOs, devices) run in a subprocess with a timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rprm_lite.results import StepResult
from rprm_lite.step_cache import StepCache

KEY = "ab" + "c" * 62
STEP = StepResult(index=2, score=0.25, p_yes=(0.5, 0.0), verdict="wrong", fallbacks=1, generated_tokens=10,
                  critiques=("The step is right. Yes", "No"), prompt_tokens=30, reused_tokens=12)
BOUNDED = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def entry(folder: Path, key: str = KEY) -> Path:
    return folder / key[:2] / f"{key}.json"


def record(**step_changes) -> dict:
    return {"format": "rprm-lite-step", "version": 1, "key": KEY,
            "step": {**dataclasses.asdict(STEP), **step_changes}}


def written(folder: Path) -> Path:
    StepCache(folder).put(KEY, STEP)
    return entry(folder)


def assert_rescored_and_rewritten(folder: Path) -> None:
    """A fresh cache misses on the bad entry without raising; once put again, the entry is served."""
    cache = StepCache(folder)
    assert cache.get(KEY) is None and (cache.hits, cache.misses, cache.corrupt) == (0, 1, 1)
    cache.put(KEY, STEP)
    assert cache.write_errors == 0
    assert entry(folder).is_file() and not entry(folder).is_symlink()
    again = StepCache(folder)
    assert again.get(KEY) == STEP and again.corrupt == 0


# -- what an entry holds ------------------------------------------------------------------------
def text_with(old: str, new: str) -> str:
    text = json.dumps(record())
    assert old in text
    return text.replace(old, new, 1)


BAD_CONTENT = {
    "p_yes NaN": json.dumps(record(p_yes=[float("nan"), 0.0])),
    "score NaN": json.dumps(record(score=float("nan"))),
    "score Infinity": json.dumps(record(score=float("inf"))),
    "score 1e400": text_with('"score": 0.25', '"score": 1e400'),
    "nested 100000 deep": text_with('"critiques": [', '"critiques": ' + "[" * 100_000 + "]" * 100_000 + ', ['),
    "a 5000-digit index": text_with('"index": 2', '"index": ' + "2" * 5000),
    "score 1.5": json.dumps(record(score=1.5, p_yes=[1.5, 1.5])),
    "score -0.25": json.dumps(record(score=-0.25, p_yes=[-0.25, -0.25])),
    "score not the mean of p_yes": json.dumps(record(score=0.99)),
    "p_yes outside [0, 1]": json.dumps(record(p_yes=[2.0, -1.5])),
    "no p_yes": json.dumps(record(p_yes=[], critiques=[])),
    "negative fallbacks": json.dumps(record(fallbacks=-1)),
    "more fallbacks than critiques": json.dumps(record(fallbacks=3)),
    "critiques not one per p_yes": json.dumps(record(critiques=["only one"])),
    "a verdict that does not exist": json.dumps(record(verdict="maybe")),
    "an unknown stop reason": json.dumps(record(critiques_used=2, stop_reason="bored")),
    "index 0": json.dumps(record(index=0)),
    "a score as text": json.dumps(record(score="0.25")),
    "an index as a boolean": json.dumps(record(index=True)),
    "a lone surrogate": text_with('"No"', '"No\\ud800"'),
    "not UTF-8": text_with('"No"', '"No"').encode()[:-20] + b"\xff\xfe" + b"}" * 3,
    "an entry for another key": json.dumps({**record(), "key": "0" * 64}),
    "a torn write": json.dumps(record())[:50],
    "a list": "[1, 2, 3]",
}


@pytest.mark.parametrize("content", BAD_CONTENT.values(), ids=BAD_CONTENT.keys())
def test_a_malformed_or_impossible_entry_is_never_served_and_is_rewritten(tmp_path, content):
    path = written(tmp_path)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    assert_rescored_and_rewritten(tmp_path)


def test_an_entry_larger_than_the_bound_is_not_read(tmp_path):
    path = written(tmp_path)
    with path.open("r+b") as handle:  # sparse: 100 MB on paper, nothing on disk
        handle.truncate(100 * 2**20)
    assert_rescored_and_rewritten(tmp_path)


# -- what sits where an entry should be -------------------------------------------------------
PROBE = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))  # a read of an endless file fails, not the machine
from rprm_lite.results import StepResult
from rprm_lite.step_cache import StepCache
cache = StepCache(sys.argv[1])
found = cache.get(sys.argv[2])
step = json.loads(sys.argv[3])
cache.put(sys.argv[2], StepResult(**{**step, "p_yes": tuple(step["p_yes"]), "critiques": tuple(step["critiques"])}))
print(json.dumps({"served": found is not None, "corrupt": cache.corrupt, "write_errors": cache.write_errors}))
"""


def probe(folder: Path) -> dict:
    """get and put in a subprocess that must finish within 30 s (a FIFO once hung the run forever)."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, str(folder), KEY, json.dumps(dataclasses.asdict(STEP))],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("the step cache hung on the entry")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_a_fifo_in_place_of_an_entry_does_not_hang_and_is_replaced(tmp_path):
    path = written(tmp_path)
    path.unlink()
    os.mkfifo(path)
    assert probe(tmp_path) == {"served": False, "corrupt": 1, "write_errors": 0}
    assert StepCache(tmp_path).get(KEY) == STEP  # the FIFO was replaced by the entry


def test_a_device_in_place_of_an_entry_is_not_read_and_is_replaced(tmp_path):
    path = written(tmp_path)
    path.unlink()
    try:
        os.mknod(path, 0o600 | 0o020000, os.makedev(1, 5))  # a character device: /dev/zero, endless
    except PermissionError:
        pytest.skip("making a device node needs root (CAP_MKNOD)")
    assert probe(tmp_path) == {"served": False, "corrupt": 1, "write_errors": 0}
    assert StepCache(tmp_path).get(KEY) == STEP


def test_a_link_to_an_endless_file_is_not_followed(tmp_path):
    path = written(tmp_path)
    path.unlink()
    path.symlink_to("/dev/zero")
    assert probe(tmp_path) == {"served": False, "corrupt": 1, "write_errors": 0}
    assert not path.is_symlink() and StepCache(tmp_path).get(KEY) == STEP


def test_a_linked_entry_is_not_served_and_the_link_not_its_target_is_replaced(tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    path = written(tmp_path / "cache")
    elsewhere.write_bytes(path.read_bytes())  # a well-formed entry, but not one the cache wrote there
    path.unlink()
    path.symlink_to(elsewhere)
    before = elsewhere.read_bytes()
    assert_rescored_and_rewritten(tmp_path / "cache")
    assert elsewhere.read_bytes() == before


def test_a_linked_subfolder_is_neither_read_nor_written_through(tmp_path):
    cache_dir, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    path = written(cache_dir)
    shutil.move(path.parent, elsewhere)
    path.parent.symlink_to(elsewhere, target_is_directory=True)
    before = sorted(p.name for p in elsewhere.iterdir())
    cache = StepCache(cache_dir)
    assert cache.get(KEY) is None
    cache.put(KEY, STEP)
    cache.put(KEY[:2] + "d" * 62, STEP)
    assert sorted(p.name for p in elsewhere.iterdir()) == before  # nothing written through the link
    assert cache.write_errors == 2 and "not a plain folder" in cache.last_write_error


@pytest.mark.parametrize("kind", ["a folder", "a subfolder that is a file"])
def test_other_things_in_the_way_are_counted_not_raised(tmp_path, kind):
    path = written(tmp_path)
    if kind == "a folder":
        path.unlink()
        path.mkdir()
    else:
        shutil.rmtree(path.parent)
        path.parent.write_text("x")
    cache = StepCache(tmp_path)
    assert cache.get(KEY) is None and cache.corrupt == 1
    cache.put(KEY, STEP)
    assert cache.write_errors == 1


# -- a read-only or full disk -------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True) if shutil.which("mount") and os.geteuid() == 0 else None
    if done is None or done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() if done else 'needs root and mount'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def read_only_cache(tmp_path):
    """A cache folder holding one entry, where nothing can be written: a read-only tmpfs as root (root
    ignores modes), else a folder of mode 555."""
    folder = tmp_path / "ro"
    if os.geteuid() != 0:
        written(folder)
        for path in (folder / KEY[:2], folder):
            path.chmod(0o555)
        yield folder
        for path in (folder, folder / KEY[:2]):
            path.chmod(0o755)
        return
    with tmpfs(folder, "1m"):
        written(folder)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder


def test_a_read_only_folder_still_serves_and_counts_failed_writes(read_only_cache):
    cache = StepCache(read_only_cache)
    assert cache.get(KEY) == STEP
    other = KEY[:2] + "d" * 62
    cache.put(other, STEP)
    cache.put("ef" + "0" * 62, STEP)  # a subfolder that cannot be made
    assert cache.write_errors == 2 and cache.last_write_error
    assert cache.get(other) == STEP  # still in memory for this run


def test_a_full_disk_is_counted_and_leaves_no_partial_entry(tmp_path):
    with tmpfs(tmp_path / "full", "64k") as folder:
        written(folder)
        big = dataclasses.replace(STEP, critiques=("x" * 200_000, "y"))
        cache = StepCache(folder)
        cache.put(KEY[:2] + "d" * 62, big)
        assert cache.write_errors == 1 and "No space left" in cache.last_write_error
        assert sorted(p.name for p in entry(folder).parent.iterdir()) == [entry(folder).name]  # no temp left
        assert StepCache(folder).get(KEY) == STEP


def test_a_failed_write_of_any_kind_is_counted_not_raised(tmp_path, monkeypatch):
    # where no tmpfs can be mounted, ENOSPC is raised by the write itself
    import errno

    from rprm_lite import step_cache

    def full(handle, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(step_cache, "write_all", full)
    cache = StepCache(tmp_path)
    cache.put(KEY, STEP)
    assert cache.write_errors == 1 and cache.last_write_error == "No space left on device"
    assert list(entry(tmp_path).parent.iterdir()) == []  # the temporary file was removed


# -- property test: mutated entries ----------------------------------------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=10)
FIELDS = [*dataclasses.asdict(STEP), "format", "version", "key"]


@st.composite
def mutated_entry(draw) -> bytes:
    data = record()
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(FIELDS))
        holder = data if name in ("format", "version", "key") else data["step"]
        holder[name] = draw(json_values)
    text = json.dumps(data)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", "NaN", "[" * 80, "9" * 5000, '"', "}", "1e400"])) + text[at:]
    return text.encode("utf-8", "surrogatepass")


@BOUNDED
@given(content=mutated_entry())
def test_whatever_an_entry_holds_the_cache_serves_only_possible_results(tmp_path, content):
    folder = tmp_path / "cache"
    shutil.rmtree(folder, ignore_errors=True)
    written(folder).write_bytes(content)
    step = StepCache(folder).get(KEY)
    if step is None:
        return
    assert step.index >= 1 and len(step.critiques) == len(step.p_yes) >= 1
    assert all(isinstance(p, float) and math.isfinite(p) and 0 <= p <= 1 for p in step.p_yes)
    assert step.score == sum(step.p_yes) / len(step.p_yes) and 0 <= step.score <= 1
    assert step.verdict in ("correct", "wrong", "uncertain")


# -- through the scorer and the CLI, with a real tiny model ------------------------------------
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
STEPS = ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7.", "The answer is 7."]


@pytest.fixture(scope="module")
def uncached(small_bpe_gguf):
    from rprm_lite.config import ScoreConfig
    from rprm_lite.scoring import Scorer

    config = ScoreConfig(k=2, max_tokens=4, seed=3, all_steps=True)
    with Scorer(small_bpe_gguf, config, cache=StepCache(max_entries=0), prefix_cache=False) as scorer:
        return config, scorer.score(QUESTION, STEPS)


def by_index(folder: Path) -> dict[int, Path]:
    return {json.loads(p.read_text())["step"]["index"]: p for p in folder.glob("*/*.json")}


def test_another_steps_result_or_an_impossible_score_is_scored_again(small_bpe_gguf, uncached, tmp_path):
    from rprm_lite.scoring import Scorer

    config, expected = uncached
    with Scorer(small_bpe_gguf, config, cache=tmp_path, prefix_cache=False) as scorer:
        scorer.score(QUESTION, STEPS)
    entries = by_index(tmp_path)
    first, second = json.loads(entries[1].read_text()), json.loads(entries[2].read_text())
    entries[2].write_text(json.dumps({**first, "key": second["key"]}))  # step 1's result under step 2's name
    third = json.loads(entries[3].read_text())
    third["step"]["score"] = 0.999 if third["step"]["score"] < 0.5 else 0.001  # flips the verdict
    entries[3].write_text(json.dumps(third))
    cache = StepCache(tmp_path)
    with Scorer(small_bpe_gguf, config, cache=cache, prefix_cache=False) as scorer:
        again = scorer.score(QUESTION, STEPS)
    assert again.to_dict() == expected.to_dict()
    assert (cache.hits, cache.misses, cache.corrupt) == (1, 2, 2)
    assert by_index(tmp_path).keys() == {1, 2, 3}  # rewritten: each file holds its own step again


def score_cli(model: Path, solution: Path, *extra, timeout: int = 120):
    try:
        return subprocess.run([sys.executable, "-m", "rprm_lite.cli", "score", str(solution), "--model", str(model),
                               "--k", "2", "--max-tokens", "4", "--seed", "3", "--all-steps", "--json",
                               "--prefix-cache", "off",  # prefix_tokens would tell which run decoded the template
                               *map(str, extra)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("score hung on the cache")


def fill(folder: Path) -> None:
    """Take every free byte of the file system that holds `folder`."""
    with (folder / "filler").open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)


@pytest.mark.parametrize("fault", ["read-only", "full", "fifos"])
def test_score_keeps_its_results_whatever_the_cache_folder_does(small_bpe_gguf, tmp_path, fault):
    solution = tmp_path / "s.json"
    solution.write_text(json.dumps({"id": "s", "question": QUESTION, "steps": STEPS}))
    plain = score_cli(small_bpe_gguf, solution)
    assert plain.returncode == 0, plain.stderr
    cache = tmp_path / "cache"
    with contextlib.ExitStack() as stack:
        if fault == "fifos":  # every entry of a first run replaced by a FIFO
            assert score_cli(small_bpe_gguf, solution, "--cache", cache).returncode == 0
            for path in by_index(cache).values():
                path.unlink()
                os.mkfifo(path)
            note = "3 unreadable entries ignored and rewritten"
        else:
            stack.enter_context(tmpfs(cache, "64k"))
            fill(cache) if fault == "full" else subprocess.run(["mount", "-o", "remount,ro", str(cache)], check=True)
            note = "could not be written (" + ("No space left" if fault == "full" else "Read-only file system")
        result = score_cli(small_bpe_gguf, solution, "--cache", cache, "--output", tmp_path / "results.jsonl")
    assert result.returncode == 0, result.stderr
    assert result.stdout == plain.stdout and (tmp_path / "results.jsonl").read_text() == plain.stdout
    assert note in result.stderr and "Traceback" not in result.stderr
