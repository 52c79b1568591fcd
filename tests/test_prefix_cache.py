"""The prefix cache: the template's text and the question are decoded once, and results stay identical.

Each solution scored alone, by a fresh Scorer that decodes every prompt from its first token, is the
reference. A batch whose solutions share the template (and, two of them, a question) is scored with the
prefix states kept in memory, then by another process that reads the template's state from the disk cache
an earlier process wrote; every field of every result, critiques included, is compared as JSON bytes.
Critiques are sampled (temperature 0.95), so any other KV value would show as other critiques.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rprm_lite.config import ScoreConfig
from rprm_lite.engine import DecodeEntry, Engine
from rprm_lite.errors import InputError
from rprm_lite.output import to_json_line
from rprm_lite.prefix_cache import (
    MAGIC,
    MAX_HEADER_BYTES,
    MAX_STATE_BYTES,
    PrefixCache,
    make_prefix_cache,
    read_state_file,
    user_cache_folder,
)
from rprm_lite.prompt import head_part, render
from rprm_lite.scoring import Scorer
from rprm_lite.solution import Solution
from rprm_lite.step_cache import BadEntry, StepCache

APPLES = "Tom has 3 apples and buys 4 more. He eats 2. How many apples does he have?"
PENS = "A pen costs 2 dollars. How much do 5 pens cost?"
BATCH = [Solution.create(APPLES, ["3 + 4 = 7.", "7 - 2 = 5."], id="a1"),
         Solution.create(PENS, ["5 * 2 = 10.", "The answer is 10."], id="p1"),
         Solution.create(APPLES, ["3 + 4 = 8.", "8 - 2 = 6."], id="a2")]
CONFIG = ScoreConfig(k=2, max_tokens=8, seed=5, all_steps=True, threads=1)
MODES = [{}, {"verdict": "released"}, {"prompt_style": "chatml"},
         {"prompt_style": "chatml", "verdict": "released", "adaptive": True, "wave": 1}]
MODE_IDS = ["r-prm-eval-single-pass", "r-prm-eval-released", "chatml-single-pass", "chatml-released-adaptive"]
NO_STEP_CACHE = {"max_entries": 0}  # the step cache would hand back whole steps: only the prefix cache is tested


def lines(results, put_back: list | None = None) -> list[str]:
    """The JSON lines of `results` without `prefix_tokens`, the one field the prefix cache adds (appended to
    `put_back`, one list per solution)."""
    found = []
    for result in results:
        if put_back is not None:
            put_back.append([step.prefix_tokens for step in result.steps])
        found.append(to_json_line(replace(result, steps=tuple(replace(step, prefix_tokens=None)
                                                              for step in result.steps)), critiques=True))
    return found


def without_prefix_tokens(text: str | bytes) -> str:
    """Printed or served JSON without its `"prefix_tokens": N` fields, every other byte as it was."""
    return re.sub(r', "prefix_tokens": [1-9][0-9]*', "", text if isinstance(text, str) else text.decode())


def alone(model: Path, config: ScoreConfig) -> list[str]:
    """The reference: each solution by a fresh Scorer that decodes every prompt from its first token."""
    results = []
    for solution in BATCH:
        with Scorer(model, config, cache=StepCache(**NO_STEP_CACHE), prefix_cache=False) as scorer:
            results.append(scorer.score_solution(solution))
    return lines(results)


def score_in_another_process(model: Path, config: ScoreConfig, folder: Path) -> None:
    script = ("import sys; from rprm_lite.config import ScoreConfig; from rprm_lite.scoring import Scorer\n"
              "from rprm_lite.prefix_cache import PrefixCache; from rprm_lite.step_cache import StepCache\n"
              f"config = ScoreConfig(**{config.to_dict()!r})\n"
              f"with Scorer({str(model)!r}, config, cache=StepCache(max_entries=0), "
              f"prefix_cache=PrefixCache({str(folder)!r})) as s:\n"
              f"    s.score({PENS!r}, ['2 + 2 = 4.'])\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@pytest.mark.parametrize("changes", MODES, ids=MODE_IDS)
def test_a_batch_with_prefix_reuse_from_memory_and_from_disk_matches_each_solution_alone(small_bpe_gguf, tmp_path,
                                                                                          changes):
    config = CONFIG.replace(**changes)
    expected = alone(small_bpe_gguf, config)
    memory, put_back = PrefixCache(), []
    with Scorer(small_bpe_gguf, config, cache=StepCache(**NO_STEP_CACHE), prefix_cache=memory) as scorer:
        assert lines((scorer.score_solution(s) for s in BATCH), put_back) == expected
    # a1 decodes the template and its question; p1 takes the template's state; a2 takes a1's question state
    assert (memory.hits, memory.disk_hits) == (2, 0)
    template, question = put_back[1][0], put_back[2][0]
    assert put_back == [[None, None], [template, None], [question, None]] and 0 < template < question
    assert template + question == memory.saved_tokens
    score_in_another_process(small_bpe_gguf, config, tmp_path)
    assert len(list(tmp_path.glob("*/*.kv"))) == 1  # the template's state only: questions stay in memory
    disk, put_back = PrefixCache(tmp_path), []
    with Scorer(small_bpe_gguf, config, cache=StepCache(**NO_STEP_CACHE), prefix_cache=disk) as scorer:
        assert lines((scorer.score_solution(s) for s in BATCH), put_back) == expected
    assert (disk.disk_hits, disk.hits, disk.corrupt) == (1, 2, 0)
    assert put_back == [[template, None], [template, None], [question, None]]


def test_the_cache_folder_of_score_keeps_the_template_state_beside_the_steps(small_bpe_gguf, tmp_path):
    with Scorer(small_bpe_gguf, CONFIG, cache=tmp_path) as scorer:
        scorer.score_solution(BATCH[0])
        assert scorer.prefix_cache.directory == tmp_path / "kv"
    assert len(list((tmp_path / "kv").glob("*/*.kv"))) == 1


def test_a_bad_state_file_is_ignored_and_rewritten(small_bpe_gguf, tmp_path):
    expected = alone(small_bpe_gguf, CONFIG)[1:2]
    score_in_another_process(small_bpe_gguf, CONFIG, tmp_path)
    [path] = tmp_path.glob("*/*.kv")
    good = path.read_bytes()
    header, state = good.split(b"\n", 2)[1], good.split(b"\n", 2)[2]
    garbage = bytes(len(state))  # zeros with a header whose size and sha256 match: llama.cpp must refuse it
    import hashlib
    forged = json.loads(header) | {"sha256": hashlib.sha256(garbage).hexdigest()}
    for bad in (b"", good[:-1], good[:len(good) // 2], b"junk" + good, MAGIC + json.dumps(forged).encode() + b"\n"
                + garbage):
        path.write_bytes(bad)
        cache = PrefixCache(tmp_path)
        with Scorer(small_bpe_gguf, CONFIG, cache=StepCache(**NO_STEP_CACHE), prefix_cache=cache) as scorer:
            assert lines([scorer.score_solution(BATCH[1])]) == expected
        assert (cache.corrupt, cache.disk_hits) == (1, 1 if bad.endswith(garbage) else 0)
        assert path.read_bytes() == good  # rewritten: the same bytes as the first process wrote


def test_a_linked_state_file_is_not_followed(small_bpe_gguf, tmp_path):
    score_in_another_process(small_bpe_gguf, CONFIG, tmp_path / "cache")
    [path] = (tmp_path / "cache").glob("*/*.kv")
    target = tmp_path / "elsewhere.kv"
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)
    cache = PrefixCache(tmp_path / "cache")
    with Scorer(small_bpe_gguf, CONFIG, cache=StepCache(**NO_STEP_CACHE), prefix_cache=cache) as scorer:
        scorer.score_solution(BATCH[1])
    assert (cache.corrupt, cache.disk_hits) == (1, 0)
    assert not path.is_symlink() and target.read_bytes() == path.read_bytes()  # replaced, not written through


def test_a_state_file_must_name_the_key_and_the_token_count(tmp_path):
    state = b"\x01\x02\x03"
    import hashlib
    header = {"version": 1, "key": "k" * 64, "tokens": 7, "bytes": 3, "sha256": hashlib.sha256(state).hexdigest()}
    path = tmp_path / "state.kv"
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + state)
    assert read_state_file(tmp_path, path.name, "k" * 64, 7) == state
    for key, tokens in (("j" * 64, 7), ("k" * 64, 8)):
        with pytest.raises(BadEntry):
            read_state_file(tmp_path, path.name, key, tokens)
    for data in (MAGIC + b"x" * 5000,  # no header line within its bound
                 MAGIC + json.dumps(header | {"bytes": True}).encode() + b"\n" + state,
                 MAGIC + json.dumps(header | {"extra": 1}).encode() + b"\n" + state,
                 MAGIC + json.dumps(header).encode() + b"\n" + state + b"\0"):  # more than the header says
        path.write_bytes(data)
        with pytest.raises(BadEntry):
            read_state_file(tmp_path, path.name, "k" * 64, 7)


CAPPED = """import json, resource, sys
from rprm_lite.config import ScoreConfig; from rprm_lite.output import to_json_line
from rprm_lite.scoring import Scorer
from rprm_lite.prefix_cache import PrefixCache; from rprm_lite.step_cache import StepCache
model, folder, config, question, steps, headroom = json.loads(sys.argv[1])
cache = PrefixCache(folder)
with Scorer(model, ScoreConfig(**config), cache=StepCache(max_entries=0), prefix_cache=cache) as scorer:
    size = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:")) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, size + headroom))  # ulimit -v, with the model loaded
    sys.stdout.write(to_json_line(scorer.score(question, steps), critiques=True))
print(json.dumps({"corrupt": cache.corrupt, "disk_hits": cache.disk_hits, "misses": cache.misses}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the address space size from /proc")
def test_a_state_file_at_the_size_cap_with_a_bad_header_is_a_miss_read_no_further(small_bpe_gguf, tmp_path):
    """A sparse file just under the reader's cap whose header does not hold, read by a process whose address
    space (ulimit -v) has 512 MiB to spare: the header alone is read, the state is decoded, the file rewritten.
    (The reader used to read the whole file and copy it, ~2 GiB: a MemoryError traceback here.) A header that
    holds but a state there is not the memory to read is a miss too."""
    expected = alone(small_bpe_gguf, CONFIG)[1]
    score_in_another_process(small_bpe_gguf, CONFIG, tmp_path)
    [path] = tmp_path.glob("*/*.kv")
    good = path.read_bytes()
    header = json.loads(good.split(b"\n", 2)[1])
    cap = MAX_HEADER_BYTES + MAX_STATE_BYTES
    holds = MAGIC + json.dumps(header | {"bytes": MAX_STATE_BYTES, "sha256": "0" * 64}).encode() + b"\n"
    for line, size in [(MAGIC + bad.encode() + b"\n", cap) for bad in (
            "{not json", json.dumps(header | {"bytes": 5}), json.dumps(header | {"tokens": 1}),
            json.dumps(header | {"key": "0" * 64}), json.dumps(header | {"bytes": cap}))
    ] + [(holds, len(holds) + MAX_STATE_BYTES)]:  # a header that holds, but no memory to read the state
        path.write_bytes(line)
        with path.open("r+b") as handle:
            handle.truncate(size)  # sparse: no disk used
        argument = [str(small_bpe_gguf), str(tmp_path), CONFIG.to_dict(), PENS, list(BATCH[1].steps), 512 * 2**20]
        done = subprocess.run([sys.executable, "-c", CAPPED, json.dumps(argument)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert done.returncode == 0, (line, done.stderr[-3000:])
        printed, counts = done.stdout.splitlines()
        assert json.loads(printed)["steps"] == json.loads(expected)["steps"], line
        assert json.loads(counts) == {"corrupt": 1, "disk_hits": 0, "misses": 2}, line
        assert path.read_bytes() == good  # rewritten


def test_a_step_from_the_step_cache_says_no_prefix_tokens_and_no_entry_keeps_them(small_bpe_gguf, tmp_path):
    with Scorer(small_bpe_gguf, CONFIG, cache=tmp_path, prefix_cache="memory") as scorer:
        first = [scorer.score_solution(solution) for solution in BATCH[:2]]
        again = scorer.score_solution(BATCH[1])
    assert first[1].steps[0].prefix_tokens > 0  # p1's first prompt started from the template's state
    assert [step.prefix_tokens for step in again.steps] == [None, None]  # step-cache hits: nothing decoded
    assert lines([again]) == lines(first[1:])
    entries = list(tmp_path.glob("??/*.json"))
    assert len(entries) == 4 and not any(b"prefix_tokens" in entry.read_bytes() for entry in entries)


def test_the_memory_is_bounded_in_bytes():
    cache = PrefixCache(max_bytes=10)
    cache.put("a", b"12345", 1, persist=False)
    cache.put("b", b"12345", 1, persist=False)
    cache.put("c", b"123", 1, persist=False)  # "a" goes
    cache.put("d", b"x" * 11, 1, persist=False)  # larger than the budget: not kept
    assert ("a" in cache, "b" in cache, "c" in cache, "d" in cache) == (False, True, True, False)


def test_a_prompt_decoded_in_one_piece_differs_so_the_pieces_matter(small_bpe_gguf):
    """Why the marks exist: llama.cpp's values depend on how a prompt is cut into batches."""
    engine = Engine(small_bpe_gguf, threads=1)
    try:
        tokens = engine.tokenize_prompt(render(BATCH[0], 0))
        head = len(engine.tokenize_prompt(head_part("r-prm-eval"))) - 1
        engine.ensure_context(len(tokens) + 8, 1)
        rows = []
        for cuts in ([0, len(tokens)], [0, head, len(tokens)]):
            engine.clear()
            for begin, end in zip(cuts, cuts[1:], strict=False):
                row = list(engine.decode([DecodeEntry(tokens[p], p, 0, logits=p == len(tokens) - 1)
                                          for p in range(begin, end)]))
            rows.append([engine.logits(row[-1][1])[i] for i in range(0, engine.n_vocab, 7)])
        assert rows[0] != rows[1]
    finally:
        engine.close()


# -- where the states are kept: --prefix-cache auto (the default), memory, off -----------------------------------
@pytest.mark.parametrize(("environ", "platform", "expected"), [
    ({"RPRM_CACHE_DIR": "/data/rc", "XDG_CACHE_HOME": "/xdg"}, "linux", "/data/rc"),
    ({"XDG_CACHE_HOME": "/xdg"}, "linux", "/xdg/rprm-lite"),
    ({"XDG_CACHE_HOME": "relative"}, "linux", "HOME/.cache/rprm-lite"),  # the XDG spec ignores a relative path
    ({}, "linux", "HOME/.cache/rprm-lite"),
    ({"XDG_CACHE_HOME": "/xdg"}, "darwin", "HOME/Library/Caches/rprm-lite"),
    ({"LOCALAPPDATA": "/appdata"}, "win32", "/appdata/rprm-lite/Cache"),
])
def test_the_per_user_cache_folder_is_the_platforms_unless_rprm_cache_dir_names_one(monkeypatch, environ, platform,
                                                                                    expected):
    monkeypatch.setenv("HOME", "/home/u")
    assert user_cache_folder(environ, platform) == Path(expected.replace("HOME", "/home/u"))


def test_by_default_the_template_state_goes_to_the_per_user_cache_folder_and_is_read_back(small_bpe_gguf, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setenv("RPRM_CACHE_DIR", str(tmp_path / "user"))
    expected = alone(small_bpe_gguf, CONFIG)[:1]
    for disk_hits in (0, 1):
        with Scorer(small_bpe_gguf, CONFIG, cache=StepCache(**NO_STEP_CACHE)) as scorer:
            assert lines([scorer.score_solution(BATCH[0])]) == expected
            assert (scorer.prefix_cache.directory, scorer.prefix_cache.disk_hits) == (tmp_path / "user" / "kv",
                                                                                      disk_hits)
    assert len(list((tmp_path / "user" / "kv").glob("*/*.kv"))) == 1
    assert not [path for path in (tmp_path / "user").rglob("*") if path.suffix == ".json"]  # no step results


def test_memory_keeps_states_in_memory_only_and_off_keeps_none(small_bpe_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("RPRM_CACHE_DIR", str(tmp_path / "user"))
    assert make_prefix_cache("memory", tmp_path / "steps").directory is None
    assert make_prefix_cache("off", tmp_path / "steps") is None and make_prefix_cache(False, None) is None
    assert make_prefix_cache(True, tmp_path / "steps").directory == tmp_path / "steps" / "kv"
    with pytest.raises(InputError, match="--prefix-cache must be one of auto, memory, off, got 'disk'"):
        Scorer(small_bpe_gguf, CONFIG, prefix_cache="disk")
    with Scorer(small_bpe_gguf, CONFIG, prefix_cache="memory") as scorer:
        scorer.score_solution(BATCH[0])
    assert not (tmp_path / "user").exists()


def test_an_unwritable_cache_folder_scores_from_memory_and_counts_the_failed_write(small_bpe_gguf, tmp_path,
                                                                                   monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("RPRM_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # no folder can be made there
    with Scorer(small_bpe_gguf, CONFIG, cache=StepCache(**NO_STEP_CACHE)) as scorer:
        assert lines(scorer.score_solution(s) for s in BATCH) == alone(small_bpe_gguf, CONFIG)
        assert (scorer.prefix_cache.write_errors, scorer.prefix_cache.hits) == (1, 2)  # still reused in memory
        assert scorer.prefix_cache.last_write_error


def test_the_folder_is_bounded_and_drops_the_states_least_recently_used_first(tmp_path):
    keys = [f"{i:x}" * 64 for i in range(5)]
    cache = PrefixCache(tmp_path)
    for age, key in enumerate(keys[:3]):
        cache.put(key, bytes(100), 1, persist=True)
        os.utime(path_of(tmp_path, key), (1000 + age, 1000 + age))  # written in this order
    size = path_of(tmp_path, keys[0]).stat().st_size
    cache.max_disk_bytes = 3 * size
    PrefixCache(tmp_path).get(keys[0], 1)  # read from disk: now the most recently used
    cache.put(keys[3], bytes(100), 1, persist=True)  # four files do not fit: the oldest, keys[1], goes
    assert [path_of(tmp_path, key).exists() for key in keys[:4]] == [True, False, True, True]
    cache.put(keys[4], bytes(3 * size), 1, persist=True)  # larger than the whole bound: not written
    assert not path_of(tmp_path, keys[4]).exists() and cache.write_errors == 0


def test_the_bound_removes_only_state_files_and_follows_no_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ("a" * 64 + ".kv")).write_bytes(bytes(500))
    folder = tmp_path / "cache"
    (folder / "bb").mkdir(parents=True)
    (folder / "aa").symlink_to(outside)  # a subfolder that is a link: never listed, never emptied
    (folder / "bb" / "notes.txt").write_bytes(bytes(500))
    cache = PrefixCache(folder)
    cache.put("c" * 64, bytes(10), 1, persist=True)
    cache.max_disk_bytes = path_of(folder, "c" * 64).stat().st_size  # room for one state file
    cache.put("d" * 64, bytes(10), 1, persist=True)  # the two do not fit: the older one goes, nothing else
    assert (outside / ("a" * 64 + ".kv")).exists() and (folder / "bb" / "notes.txt").exists()
    assert [path_of(folder, key).exists() for key in ("c" * 64, "d" * 64)] == [False, True]


def path_of(folder: Path, key: str) -> Path:
    return folder / key[:2] / f"{key}.kv"


# -- the command line ----------------------------------------------------------------------------------------------
def score_cli(model: Path, source: Path, *extra: str, cache_folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", "score", str(source), "--model", str(model), "--k",
                           "2", "--max-tokens", "8", "--seed", "5", "--all-steps", "--threads", "1", "--json",
                           "--show-critiques", *extra], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RPRM_CACHE_DIR": str(cache_folder)})


def test_score_gives_the_same_json_bytes_with_prefix_reuse_off_in_memory_and_from_the_user_cache(small_bpe_gguf,
                                                                                                  tmp_path):
    source = tmp_path / "batch.jsonl"
    source.write_text("".join(json.dumps({"id": s.id, "question": s.question, "steps": list(s.steps)}) + "\n"
                              for s in BATCH))
    user = tmp_path / "user"
    off = score_cli(small_bpe_gguf, source, "--prefix-cache", "off", cache_folder=user)
    assert not user.exists()
    # the default (auto) writes the template's state into the user cache folder, the second run reads it
    runs = [score_cli(small_bpe_gguf, source, *extra, cache_folder=user)
            for extra in ((), (), ("--prefix-cache", "memory"))]
    assert [run.returncode for run in (off, *runs)] == [0] * 4, runs[-1].stderr
    assert len(off.stdout.splitlines()) == len(BATCH)
    # the same bytes but for prefix_tokens, which only a step whose prompt started from a kept state has
    assert [(without_prefix_tokens(run.stdout), run.stderr) for run in runs] == [(off.stdout, off.stderr)] * 3
    assert '"prefix_tokens"' not in off.stdout  # the prefix cache off: the bytes of before it existed
    put_back = [[[step.get("prefix_tokens") for step in json.loads(line)["steps"]] for line in run.stdout.splitlines()]
                for run in runs]
    template, question = put_back[0][1][0], put_back[0][2][0]
    assert put_back[0] == put_back[2] == [[None, None], [template, None], [question, None]]  # decoded, then kept
    assert put_back[1] == [[template, None], [template, None], [question, None]]  # the template from the disk
    assert len(list((user / "kv").glob("*/*.kv"))) == 1


def test_a_bad_prefix_cache_mode_is_one_error_line(small_bpe_gguf, tmp_path):
    source = tmp_path / "s.json"
    source.write_text(json.dumps({"question": APPLES, "steps": ["3 + 4 = 7."]}))
    result = score_cli(small_bpe_gguf, source, "--prefix-cache", "disk", cache_folder=tmp_path / "user")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "error: --prefix-cache must be one of auto, memory, off, got 'disk'\n"


def test_serve_answers_the_same_with_prefix_reuse_off_and_from_the_user_cache(small_bpe_gguf, tmp_path):
    pytest.importorskip("uvicorn", reason="the serve extra (pip install 'rprm-lite[serve]') is not installed")
    from serve_process import Server, call

    bodies = [{"id": s.id, "question": s.question, "steps": list(s.steps)} for s in BATCH]
    answers = {}
    for mode in ("off", "auto"):
        env = {**os.environ, "RPRM_CACHE_DIR": str(tmp_path / mode)}
        server = Server(small_bpe_gguf, "--port", 0, "--k", "2", "--max-tokens", "8", "--seed", "5", "--all-steps",
                        "--threads", "1", "--prefix-cache", mode, env=env).wait_listening()
        try:
            server.wait_healthy()
            answers[mode] = [call(server, "POST", "/v1/score", body)[2] for body in bodies]
            assert json.loads(call(server, "GET", "/v1/info")[2])["server"]["prefix_cache"] == mode
        finally:
            assert server.stop() == 0
    assert [without_prefix_tokens(answer) for answer in answers["auto"]] == [answer.decode() for answer in
                                                                              answers["off"]]
    assert len(answers["off"]) == len(BATCH) and not any(b'"prefix_tokens"' in answer for answer in answers["off"])
    put_back = [[step.get("prefix_tokens") for step in json.loads(answer)["steps"]] for answer in answers["auto"]]
    assert put_back[1][0] > 0 and put_back[2][0] > put_back[1][0]  # the template, then a1's question
    assert (len(list((tmp_path / "auto" / "kv").glob("*/*.kv"))), (tmp_path / "off").exists()) == (1, False)


def test_the_cache_note_of_score_says_how_many_prompts_started_from_a_kept_prefix(small_bpe_gguf, tmp_path):
    source = tmp_path / "batch.jsonl"
    source.write_text("".join(json.dumps({"id": s.id, "question": s.question, "steps": list(s.steps)}) + "\n"
                              for s in BATCH))
    with Scorer(small_bpe_gguf, CONFIG, cache=StepCache(**NO_STEP_CACHE), prefix_cache="memory") as scorer:
        for solution in BATCH:
            scorer.score_solution(solution)
        saved = scorer.prefix_cache.saved_tokens  # p1 takes the template's state, a2 a1's question's
    first = score_cli(small_bpe_gguf, source, "--cache", str(tmp_path / "c"), cache_folder=tmp_path / "user")
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[-1] == (f"cache {tmp_path / 'c'}: 0 of 6 scored step(s) reused; instructions put "
                                             f"back for 2 of 3 prompt(s) decoded from the start ({saved} tokens not "
                                             "decoded)")
    again = score_cli(small_bpe_gguf, source, "--cache", str(tmp_path / "c"), cache_folder=tmp_path / "user")
    assert again.stderr.splitlines()[-1] == f"cache {tmp_path / 'c'}: 6 of 6 scored step(s) reused"  # nothing decoded


def test_an_unwritable_user_cache_folder_is_one_note_and_the_same_results(small_bpe_gguf, tmp_path):
    source = tmp_path / "batch.jsonl"
    source.write_text("".join(json.dumps({"id": s.id, "question": s.question, "steps": list(s.steps)}) + "\n"
                              for s in BATCH))
    (tmp_path / "a-file").write_text("")
    plain = score_cli(small_bpe_gguf, source, "--prefix-cache", "memory", cache_folder=tmp_path / "user")
    blocked = score_cli(small_bpe_gguf, source, cache_folder=tmp_path / "a-file" / "cache")
    assert (blocked.returncode, blocked.stdout) == (0, plain.stdout)
    notes = blocked.stderr.removeprefix(plain.stderr).splitlines()
    assert len(notes) == 1 and notes[0].startswith(
        f"note: the prompt's prefix state could not be saved in {tmp_path / 'a-file' / 'cache' / 'kv'} (")
    assert notes[0].endswith("it is kept in memory for this run and the results are not affected (set "
                             "$RPRM_CACHE_DIR to a folder you can write, or pass --prefix-cache memory)")
