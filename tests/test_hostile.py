"""Hostile input, crafted model files, faults and concurrency: clean errors, never a crash, data kept.

Property tests (hypothesis, fixed seed and example count) check that the solution parser and the
GGUF pre-flight only ever return a result or raise RprmError; crafted files that used to kill
llama.cpp by a signal must give exit 3 with one error line.
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from gguf_craft import BASE_KV, HPARAM_KEYS, TOKENS, V, tensor_shapes, write_gguf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rprm_lite.bench.child_processes import start_child
from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError, ModelFileError, RprmError
from rprm_lite.model_file import inspect_model
from rprm_lite.solution import MAX_SOLUTION_CHARS, MAX_STEPS, read_solutions

BOUNDED = settings(max_examples=60, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NAN = float("nan")


def cli(*args, stdin=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(result, code):
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


# -- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"temperature": NAN}, "temperature must be a finite number, got nan"),
    ({"top_p": float("inf")}, "top_p must be a finite number, got inf"),
    ({"threshold": float("-inf")}, "threshold must be a finite number"),
    ({"threads": 100_000}, "threads must be at most"),
    ({"k": 1000}, "k must be at most 255"),
    ({"k": "3"}, "k must be an integer, got '3'"),
    ({"all_steps": 1}, "all_steps must be true or false"),
    ({"n_gpu_layers": -2}, "n_gpu_layers must be -1 (all)"),
])
def test_every_setting_is_checked_for_type_and_finite_range(changes, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScoreConfig(**changes)


# -- solution input ----------------------------------------------------------------------------
SOLUTION = '{"question": "Q", "steps": ["a", "b"]}'


@pytest.mark.parametrize("text, message", [
    ("[" * 5000 + "]" * 5000, "expected JSON nested at most 64 levels deep, got 5000"),
    ('{"question": "Q", "steps": ["a"], "x": ' + "[" * 70 + "]" * 70 + "}", "nested at most 64 levels deep, got 71"),
    ('{"question": "Q", "steps": ["a"], "id": ' + "7" * 5000 + "}",
     "expected integers of at most 4300 digits, got one of 5000 digits"),
    ('{"question": "Q\\ud800", "steps": ["a"]}', "in.json: the text holds a lone surrogate"),
    ('{"question": "Q", "steps": ["a\\udfff"]}', "the text holds a lone surrogate .*at character 1"),
    ('{"question": "Q", "steps": ["a"], "score": NaN}', "NaN is not a JSON number"),
    ('{"question": "Q", "steps": ["a"], "score": 1e999}', "too large for a float"),
    (json.dumps({"question": "Q", "steps": ["s"] * (MAX_STEPS + 1)}), f"a solution may have at most {MAX_STEPS:,}"),
    (json.dumps({"question": "Q", "steps": ["x" * (MAX_SOLUTION_CHARS + 1)]}), "a solution may have at most 1,000,000"),
])
def test_hostile_json_is_one_clear_input_error(tmp_path, text, message):
    path = tmp_path / "in.json"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_solutions(path)
    assert time.perf_counter() - started < 5  # sizes are checked before work


def test_a_bad_line_3_fails_before_anything_is_scored(tmp_path):
    lines = [json.dumps({"id": f"s{i}", "question": "Q", "steps": ["a"]}) for i in range(2)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([*lines, '{"id": "s2", "question": "Q", "steps": ["\\ud800"]}']) + "\n")
    with pytest.raises(InputError, match="line 3: the text holds a lone surrogate"):
        read_solutions(path)


def test_paths_too_long_and_special_files(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_solutions(tmp_path / ("x" * 5000))
    with pytest.raises(InputError, match="is a folder"):
        read_solutions(tmp_path)
    with pytest.raises(InputError, match="file is empty"):
        read_solutions("/dev/null")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=4), max_leaves=30)


@BOUNDED
@given(data=st.one_of(
    json_values.map(lambda v: json.dumps(v)),
    st.dictionaries(st.sampled_from(["question", "problem", "steps", "id", "idx", "x"]), json_values,
                    max_size=5).map(json.dumps),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="surrogateescape")),
    st.text(alphabet=st.sampled_from('{}[]",:\\ud800n1e9NaI\n'), max_size=80),
))
def test_the_solution_parser_only_returns_solutions_or_raises_input_errors(tmp_path, data):
    path = tmp_path / "in.json"
    path.write_bytes(data.encode("utf-8", errors="surrogateescape"))
    try:
        solutions = read_solutions(path)
    except InputError:
        return
    for solution in solutions:
        assert solution.steps and all(isinstance(step, str) and step.strip() for step in solution.steps)
        json.dumps([solution.question, list(solution.steps), solution.extra], allow_nan=False).encode("utf-8")


# -- model files -------------------------------------------------------------------------------
CRASHERS = {  # each of these killed the process inside llama.cpp (or gave NaN scores) before pre-flight
    "block_count 0": {"qwen2.block_count": (V.UINT32, 0)},
    "block_count 1000": {"qwen2.block_count": (V.UINT32, 1000)},
    "head_count_kv 0": {"qwen2.attention.head_count_kv": (V.UINT32, 0)},
    "rms epsilon NaN": {"qwen2.attention.layer_norm_rms_epsilon": (V.FLOAT32, NAN)},
    "rope base NaN": {"qwen2.rope.freq_base": (V.FLOAT32, NAN)},
    "rope scaling type": {"qwen2.rope.scaling.type": (V.STRING, "bogus")},
    "experts without count": {"qwen2.expert_used_count": (V.UINT32, 2)},
    "context 0": {"qwen2.context_length": (V.UINT32, 0)},
    "alignment 0": {"general.alignment": (V.UINT32, 0)},
    "rprm temperature NaN": {"rprm.temperature": (V.FLOAT32, NAN)},
    "rprm k a string": {"rprm.k": (V.STRING, "ten")},
}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crafted")
    files = {name: write_gguf(folder / f"{i}.gguf", overrides=o) for i, (name, o) in enumerate(CRASHERS.items())}
    files["duplicate tokens"] = write_gguf(folder / "dup.gguf", tokens=[*TOKENS[:-1], TOKENS[0]])
    files["tensor dimension 0"] = write_gguf(folder / "dim0.gguf",
                                             shapes={**tensor_shapes(), "output_norm.weight": (0,)})
    files["layers missing"] = write_gguf(folder / "layers.gguf", overrides={"qwen2.block_count": (V.UINT32, 2)})
    return files


def test_crafted_model_files_exit_3_with_one_line_naming_the_file(crafted, tmp_path):
    source = tmp_path / "in.json"
    source.write_text(SOLUTION)
    for name, path in crafted.items():
        result = cli("score", source, "--model", path, "--k", "1", "--max-tokens", "2")
        assert path.name in one_error_line(result, 3), name
        info = cli("info", "--model", path)
        assert info.returncode == 3 and path.name in info.stderr, name


def test_info_on_a_missing_model_exits_2():
    assert one_error_line(cli("info", "--model", "nowhere.gguf"), 2) == "error: nowhere.gguf: model file not found\n"


@pytest.fixture(scope="module")
def valid_gguf(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("valid") / "valid.gguf")


@BOUNDED
@given(key=st.sampled_from(HPARAM_KEYS),
       value=st.one_of(st.tuples(st.just(V.UINT32), st.sampled_from([0, 1, 3, 7, 64, 513, 2**31, 2**32 - 1])),
                       st.tuples(st.just(V.INT32), st.integers(-2**31, 2**31 - 1)),
                       st.tuples(st.just(V.FLOAT32), st.floats(width=32)),
                       st.tuples(st.just(V.STRING), st.text(max_size=5)),
                       st.tuples(st.just(V.BOOL), st.booleans())))
def test_random_header_values_give_a_model_or_a_model_file_error(tmp_path, key, value):
    path = write_gguf(tmp_path / "h.gguf", overrides={key: value})
    try:
        inspect_model(path)
    except ModelFileError as exc:
        assert str(exc).startswith(str(path))


@BOUNDED
@given(edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(8, 6000)))
def test_random_byte_mutations_give_a_model_or_a_model_file_error(tmp_path, valid_gguf, edits, cut):
    data = bytearray(valid_gguf.read_bytes())
    for position, byte in edits:
        data[position % len(data)] = byte
    path = tmp_path / "m.gguf"
    path.write_bytes(bytes(data[:cut]) if cut else bytes(data))
    try:
        inspect_model(path)
    except ModelFileError as exc:
        assert str(exc).startswith(str(path))


def test_what_passes_pre_flight_loads_without_a_signal(tmp_path, valid_gguf):
    """Mutated headers that pre-flight accepts are loaded by llama.cpp in a child process."""
    import random

    rng, accepted = random.Random(0), []
    base = valid_gguf.read_bytes()
    for number in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(0, 3000)] = rng.randrange(256)
        path = tmp_path / f"{number}.gguf"
        path.write_bytes(bytes(data))
        try:
            inspect_model(path)
            accepted.append(str(path))
        except ModelFileError:
            path.unlink()
    script = ("import sys\nfrom rprm_lite.engine import Engine\nfrom rprm_lite.errors import RprmError\n"
              "for path in sys.argv[1:]:\n    print(path, flush=True)\n    try:\n        Engine(path).close()\n"
              "    except RprmError:\n        pass\n")
    child = subprocess.run([sys.executable, "-c", script, *accepted], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, f"died at {child.stdout.splitlines()[-1:]} with {child.returncode}"
    assert len(accepted) > 10


# -- the Scorer's lifecycle --------------------------------------------------------------------
@pytest.fixture()
def scorer(small_bpe_gguf):
    from rprm_lite.scoring import Scorer

    return Scorer(small_bpe_gguf, ScoreConfig(k=2, max_tokens=64, all_steps=True))


def test_close_while_another_thread_scores_stops_it_then_frees(scorer):
    started, outcome = threading.Event(), {}

    def work():
        try:
            scorer.score("Q " * 50, ["step"] * 20, on_step=lambda *_: started.set())
            outcome["result"] = "finished"
        except RprmError as exc:
            outcome["result"] = str(exc)

    thread = threading.Thread(target=work)
    thread.start()
    assert started.wait(60)
    scorer.close()
    thread.join(60)
    assert outcome["result"] == "finished" or "closed" in outcome["result"]
    with pytest.raises(RprmError, match="is closed; create a new one"):
        scorer.score("Q", ["a"])
    scorer.close()  # twice is harmless


def test_calling_the_scorer_from_its_own_callback_is_an_error_not_a_deadlock(scorer):
    with pytest.raises(RprmError, match=r"Scorer.score\(\) was called from its own on_step callback"):
        scorer.score("Q", ["a"], on_step=lambda *_: scorer.score("Q", ["b"]))
    with pytest.raises(RprmError, match=r"Scorer.close\(\) was called from its own on_step callback"):
        scorer.score("Q", ["a"], on_step=lambda *_: scorer.close())
    assert scorer.score("Q", ["a"]).steps[0].score is not None  # still usable afterwards
    scorer.close()


# -- results files -----------------------------------------------------------------------------
def solutions(tmp_path, count):
    path = tmp_path / "solutions.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "question": f"What is {i} + 1?",
                                        "steps": [f"{i} + 1 = {i + 1}.", "Done."]}) + "\n" for i in range(count)))
    return path


FAST = ["--k", "2", "--max-tokens", "3", "--seed", "3"]


@pytest.mark.parametrize("content", [
    "my notes, no final newline",
    '{"question": "Q", "steps": ["a"]}\n',  # the input file given as --output by mistake
    "{}\n",
])
def test_an_output_that_is_not_a_results_file_is_refused_untouched(small_bpe_gguf, tmp_path, content):
    out = tmp_path / "out.jsonl"
    out.write_text(content)
    result = cli("score", solutions(tmp_path, 1), "--model", small_bpe_gguf, *FAST, "--output", out)
    one_error_line(result, 2)
    assert out.read_text() == content


def test_a_rerun_with_other_settings_refuses_and_names_them(small_bpe_gguf, tmp_path):
    source, out = solutions(tmp_path, 1), tmp_path / "out.jsonl"
    assert cli("score", source, "--model", small_bpe_gguf, *FAST, "--output", out).returncode == 0
    before = out.read_bytes()
    message = one_error_line(cli("score", source, "--model", small_bpe_gguf, *FAST, "--k", "3", "--output", out), 2)
    assert "holds results made with other settings (line 1: k: 2 before, 3 now)" in message
    assert out.read_bytes() == before


def test_a_full_disk_keeps_the_results_already_written(tmp_path, monkeypatch):
    from rprm_lite.output import ResultsFile

    out = tmp_path / "out.jsonl"
    results = ResultsFile(out, {})
    results.append('{"id": "s0", "steps": [], "first_error_step": null, "solution_score": null, "config": {}}\n')
    raw = results._writer._file
    real_write = raw.write

    def full_disk(data):
        real_write(bytes(data[:10]))  # part of the line reaches the disk, then it is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results._writer, "_file", type("Full", (), {
        "write": staticmethod(full_disk), "seek": raw.seek, "truncate": raw.truncate, "fileno": raw.fileno,
        "close": raw.close})())
    with pytest.raises(RprmError, match=r"\(No space left on device\); the 1 record\(s\) written before are kept"):
        results.append('{"id": "s1", "steps": [], "first_error_step": null, "solution_score": null, "config": {}}\n')
    results.close()
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["s0"]


def test_sigkill_mid_batch_then_resume_is_byte_identical(small_bpe_gguf, tmp_path):
    source = solutions(tmp_path, 12)
    args = ["score", source, "--model", small_bpe_gguf, "--k", "2", "--max-tokens", "48", "--seed", "1"]
    whole = tmp_path / "whole.jsonl"
    assert cli(*args, "--output", whole).returncode == 0
    killed = tmp_path / "killed.jsonl"
    child = start_child([sys.executable, "-m", "rprm_lite.cli", *map(str, args), "--output", str(killed)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not killed.exists() or killed.read_bytes().count(b"\n") < 2):
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert killed.read_bytes().count(b"\n") < 12 or child.returncode == 0
    assert cli(*args, "--output", killed).returncode == 0
    assert killed.read_bytes() == whole.read_bytes()


def test_json_output_never_holds_nan(small_bpe_gguf, tmp_path):
    result = cli("score", solutions(tmp_path, 1), "--model", small_bpe_gguf, *FAST, "--json", "--all-steps")
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))


def test_option_parser_errors_are_one_line():
    for args in (["score", "--k", "x", "f"], ["score"], ["score", "--bogus", "f"], ["info", "--model"]):
        one_error_line(cli(*args), 2)


def test_base_file_is_a_valid_model(valid_gguf):
    info = inspect_model(valid_gguf)
    assert info.architecture == BASE_KV["general.architecture"][1] and info.default_config().k == 10
