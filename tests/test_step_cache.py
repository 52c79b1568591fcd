"""The step cache: unchanged steps of an edited solution are reused, and results stay identical.

The prefix cache is off here: a step it started from a kept state says so (`prefix_tokens`), which depends on
what was scored before; that it changes nothing else is tests/test_prefix_cache.py's."""

import json

import pytest

from rprm_lite.config import ScoreConfig
from rprm_lite.results import StepResult
from rprm_lite.scoring import Scorer
from rprm_lite.step_cache import StepCache

QUESTION = "Tom has 3 apples and buys 4 more. He eats 2. How many apples does he have?"
ORIGINAL = ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7.", "He eats 2, so 7 - 2 = 4.",
            "The answer is 4."]
EDITED = ORIGINAL[:2] + ["He eats 2, so 7 - 2 = 5.", "The answer is 5."]  # the student fixed step 3
# sampled critiques (temperature 0.95), so a different KV state would show as other critiques
CONFIG = ScoreConfig(k=3, max_tokens=10, seed=3, all_steps=True)


@pytest.fixture(scope="module")
def uncached(small_bpe_gguf):
    with Scorer(small_bpe_gguf, CONFIG, cache=StepCache(max_entries=0), prefix_cache=False) as scorer:
        yield scorer


@pytest.fixture(scope="module")
def edited_uncached(uncached):
    return uncached.score(QUESTION, EDITED)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory, small_bpe_gguf):
    from rprm_lite.convert.random_model import build_random_gguf

    return build_random_gguf(tmp_path_factory.mktemp("other") / "other.gguf", tokenizer="small-bpe", seed=1)


@pytest.mark.parametrize("changes", [{}, {"verdict": "released"}, {"kv_reuse": False}],
                         ids=["default", "released", "no-kv-reuse"])
def test_an_edit_reuses_the_steps_before_it_and_later_steps_match_an_uncached_run(small_bpe_gguf, uncached,
                                                                                   edited_uncached, changes):
    config = CONFIG.replace(**changes)
    if changes:
        with Scorer(small_bpe_gguf, config, cache=StepCache(max_entries=0), prefix_cache=False) as scorer:
            edited_uncached = scorer.score(QUESTION, EDITED)
    cache = StepCache()
    with Scorer(small_bpe_gguf, config, cache=cache, prefix_cache=False) as scorer:
        scorer.score(QUESTION, ORIGINAL)
        assert (cache.hits, cache.misses) == (0, 4)
        edited = scorer.score(QUESTION, EDITED)
    assert (cache.hits, cache.misses) == (2, 6)  # steps 1-2 reused, steps 3-4 scored
    # every field of every step, critiques included, is the same as scoring the edit from scratch:
    # steps 3-4 were decoded on a KV cache refilled exactly as an uncached run fills it
    assert edited.steps == edited_uncached.steps
    assert edited.to_dict() == edited_uncached.to_dict()


def test_a_changed_setting_or_model_misses_and_a_decision_setting_hits(small_bpe_gguf, other_model, edited_uncached):
    cache = StepCache()
    with Scorer(small_bpe_gguf, CONFIG, cache=cache, prefix_cache=False) as scorer:
        scorer.score(QUESTION, EDITED)
    for changed in (CONFIG.replace(seed=4), CONFIG.replace(temperature=0.5), CONFIG.replace(kv_reuse=False)):
        with Scorer(small_bpe_gguf, changed, cache=cache, prefix_cache=False) as scorer:
            before = cache.hits
            scorer.score(QUESTION, EDITED)
            assert cache.hits == before, changed
    with Scorer(other_model, CONFIG, cache=cache, prefix_cache=False) as scorer:
        scorer.score(QUESTION, EDITED)
        assert cache.hits == 0
    # the threshold only decides verdicts: the steps are reused and decided again
    with Scorer(small_bpe_gguf, CONFIG.replace(threshold=1.0), cache=cache) as scorer:
        strict = scorer.score(QUESTION, EDITED)
    assert cache.hits == 4
    assert strict.scores == edited_uncached.scores
    assert [s.verdict for s in strict.steps] == ["wrong"] * 4 and strict.first_error_step == 1


def test_disk_cache_across_scorers_and_a_corrupt_entry_is_rescored_and_rewritten(small_bpe_gguf, tmp_path,
                                                                                  edited_uncached):
    with Scorer(small_bpe_gguf, CONFIG, cache=tmp_path, prefix_cache=False) as scorer:
        scorer.score(QUESTION, EDITED)
    entries = sorted(tmp_path.glob("*/*.json"))
    assert len(entries) == 4 and not list(tmp_path.glob("*/.tmp-*"))
    by_index = {json.loads(p.read_text())["step"]["index"]: p for p in entries}
    by_index[2].write_text('{"format": "rprm-lite-step", "version": 1, "ke')  # a torn write
    by_index[3].write_bytes(b"\xff\xfe not json")
    record = json.loads(by_index[4].read_text())
    record["key"] = "0" * 64  # a file that does not hold what its name says
    by_index[4].write_text(json.dumps(record))
    cache = StepCache(tmp_path)
    with Scorer(small_bpe_gguf, CONFIG, cache=cache, prefix_cache=False) as scorer:
        again = scorer.score(QUESTION, EDITED)
    assert (cache.hits, cache.misses, cache.corrupt) == (1, 3, 3)
    assert again.steps == edited_uncached.steps
    cache = StepCache(tmp_path)  # rewritten: a third run reuses every step
    with Scorer(small_bpe_gguf, CONFIG, cache=cache, prefix_cache=False) as scorer:
        assert scorer.score(QUESTION, EDITED).steps == edited_uncached.steps
    assert (cache.hits, cache.corrupt) == (4, 0)


def test_memory_cache_is_bounded_least_recently_used_first():
    cache = StepCache(max_entries=2)
    steps = {key: StepResult(index=1, score=0.5, p_yes=(0.5,), verdict="correct") for key in "abc"}
    cache.put("a", steps["a"])
    cache.put("b", steps["b"])
    assert cache.get("a") is steps["a"]  # now b is the least recently used
    cache.put("c", steps["c"])
    assert [cache.get(key) for key in "abc"] == [steps["a"], None, steps["c"]]
    assert (cache.hits, cache.misses) == (3, 1)
    off = StepCache(max_entries=0)
    off.put("a", steps["a"])
    assert off.get("a") is None and not off.enabled


def test_disk_entries_keep_adaptive_fields_and_older_entries_without_them_still_read(tmp_path):
    adaptive = StepResult(index=1, score=0.5, p_yes=(0.5,), verdict="correct", critiques=("c",), critiques_used=1,
                          stop_reason="settled")
    StepCache(tmp_path).put("a" * 64, adaptive)
    cache = StepCache(tmp_path)
    assert cache.get("a" * 64) == adaptive and cache.corrupt == 0
    path, = tmp_path.glob("*/*.json")
    record = json.loads(path.read_text())
    for name in ("critiques_used", "stop_reason"):  # as entries were written before adaptive K existed
        del record["step"][name]
    path.write_text(json.dumps(record))
    cache = StepCache(tmp_path)
    assert cache.get("a" * 64) == StepResult(index=1, score=0.5, p_yes=(0.5,), verdict="correct", critiques=("c",))
    assert cache.corrupt == 0


def test_a_cache_path_that_is_a_file_is_a_clear_error(tmp_path):
    from rprm_lite.errors import InputError

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(InputError, match="cannot use it as a cache folder"):
        StepCache(not_a_folder)


def test_score_cache_option_reuses_steps_across_runs_with_the_same_output(small_bpe_gguf, tmp_path):
    import subprocess
    import sys

    solution = tmp_path / "s.json"
    solution.write_text(json.dumps({"id": "s", "question": QUESTION, "steps": EDITED[:2]}))

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "rprm_lite.cli", "score", str(solution), "--model",
                               str(small_bpe_gguf), "--k", "2", "--max-tokens", "3", "--all-steps",
                               "--prefix-cache", "off", *extra],
                              capture_output=True, text=True, timeout=120)

    plain, first, second = run(), run("--cache", str(tmp_path / "c")), run("--cache", str(tmp_path / "c"))
    assert plain.returncode == first.returncode == second.returncode == 0, second.stderr
    assert plain.stdout == first.stdout == second.stdout and plain.stderr == ""
    assert first.stderr == f"cache {tmp_path / 'c'}: 0 of 2 scored step(s) reused\n"
    assert second.stderr == f"cache {tmp_path / 'c'}: 2 of 2 scored step(s) reused\n"


def test_the_disk_format_knows_every_field_of_a_step_result():
    # a StepResult field the cache does not know makes every disk entry unreadable (scored again each run)
    import dataclasses

    from rprm_lite.results import StepResult
    from rprm_lite.step_cache import FIELD_TYPES, NOT_KEPT

    assert set(FIELD_TYPES) | set(NOT_KEPT) == {f.name for f in dataclasses.fields(StepResult)}
