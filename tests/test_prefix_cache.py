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
import subprocess
import sys
from pathlib import Path

import pytest

from rprm_lite.config import ScoreConfig
from rprm_lite.engine import DecodeEntry, Engine
from rprm_lite.output import to_json_line
from rprm_lite.prefix_cache import MAGIC, PrefixCache, state_from_file
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


def lines(results) -> list[str]:
    return [to_json_line(result, critiques=True) for result in results]


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
    memory = PrefixCache()
    with Scorer(small_bpe_gguf, config, cache=StepCache(**NO_STEP_CACHE), prefix_cache=memory) as scorer:
        assert lines(scorer.score_solution(s) for s in BATCH) == expected
    # a1 decodes the template and its question; p1 takes the template's state; a2 takes a1's question state
    assert (memory.hits, memory.disk_hits) == (2, 0)
    score_in_another_process(small_bpe_gguf, config, tmp_path)
    assert len(list(tmp_path.glob("*/*.kv"))) == 1  # the template's state only: questions stay in memory
    disk = PrefixCache(tmp_path)
    with Scorer(small_bpe_gguf, config, cache=StepCache(**NO_STEP_CACHE), prefix_cache=disk) as scorer:
        assert lines(scorer.score_solution(s) for s in BATCH) == expected
    assert (disk.disk_hits, disk.hits, disk.corrupt) == (1, 2, 0)


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


def test_a_state_file_must_name_the_key_and_the_token_count():
    state = b"\x01\x02\x03"
    import hashlib
    header = {"version": 1, "key": "k" * 64, "tokens": 7, "bytes": 3, "sha256": hashlib.sha256(state).hexdigest()}
    data = MAGIC + json.dumps(header).encode() + b"\n" + state
    assert state_from_file(data, "k" * 64, 7) == state
    for key, tokens in (("j" * 64, 7), ("k" * 64, 8)):
        with pytest.raises(BadEntry):
            state_from_file(data, key, tokens)
    with pytest.raises(BadEntry):
        state_from_file(MAGIC + b"x" * 5000, "k" * 64, 7)  # no header line within its bound


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
