"""Calibration files are data, not trusted; `calibrate` never writes a file scoring would refuse.

A calibration file is read through the one bounded JSON reader and every field is checked: hostile
JSON (deep nesting, huge or non-finite numbers) is one clean InputError naming the file, and a map must
be non-decreasing whatever its kind. `calibrate` reads run.json the same way (a NaN there used to go
straight into calibration.json as `"k": NaN`) and refuses to write a decreasing map or a non-finite
number. A property test (hypothesis, fixed seed and example count) mutates a valid file.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rprm_lite.calibration import load_calibration
from rprm_lite.errors import InputError

SHA = "ab" * 32
BOUNDED = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def calibration_text(**changes) -> str:
    record = {"format": "rprm-lite-calibration", "version": 1, "model_sha256": SHA, "model": "m.gguf",
              "threshold": 0.4, "map": {"kind": "isotonic", "x": [0.1, 0.9], "y": [0.2, 0.8]},
              "settings": {"k": 10, "temperature": 0.95}}
    return json.dumps({**record, **changes})


def with_text(old: str, new: str) -> str:
    text = calibration_text()
    assert old in text
    return text.replace(old, new, 1)


HOSTILE = {
    "nested 100000 deep": with_text('"settings": {', '"deep": ' + "[" * 100_000 + "]" * 100_000 + ', "settings": {'),
    "nested 65 deep": with_text('"settings": {', '"deep": ' + "[" * 65 + "]" * 65 + ', "settings": {'),
    "a 5000-digit threshold": with_text('"threshold": 0.4', '"threshold": ' + "1" * 5000),
    "threshold NaN": with_text('"threshold": 0.4', '"threshold": NaN'),
    "threshold 1e400": with_text('"threshold": 0.4', '"threshold": 1e400'),
    "a NaN knot": with_text('"x": [0.1, 0.9]', '"x": [NaN, 0.9]'),
    "platt a Infinity": calibration_text(map={"kind": "platt", "a": 1.5, "b": 0.5}).replace("1.5", "Infinity"),
    "platt b -1e400": calibration_text(map={"kind": "platt", "a": 1.5, "b": 0.5}).replace("0.5", "-1e400"),
    "platt with a negative slope": calibration_text(map={"kind": "platt", "a": -30.0, "b": 10.0}),
    "a decreasing isotonic map": calibration_text(map={"kind": "isotonic", "x": [0.1, 0.9], "y": [0.8, 0.2]}),
    "settings k NaN": with_text('"k": 10', '"k": NaN'),
    "settings k as text": with_text('"k": 10', '"k": "ten"'),
    "settings temperature 1e400": with_text('"temperature": 0.95', '"temperature": 1e400'),
    "a sha256 that is not hex": calibration_text(model_sha256="zz" * 32),
    "a model name that is not text": calibration_text(model={"a": 1}),
    "a lone surrogate": with_text('"m.gguf"', '"m\\udc00.gguf"'),
    "not UTF-8": with_text('"m.gguf"', '"m.gguf"').replace("m.gguf", "m\udcff.gguf"),
}


HUGE = "9" * 400  # an integer of 400 digits: within the JSON reader's digit limit, far beyond a float's range
PLATT = calibration_text(map={"kind": "platt", "a": 1.5, "b": 0.5})
ADAPTED = calibration_text(lora=[{"file": "a.gguf", "sha256": SHA, "scale": 0.5}])
# every number a calibration file holds, as a huge integer: (text, what the one error line says)
HUGE_NUMBERS = {
    "threshold": (with_text('"threshold": 0.4', f'"threshold": {HUGE}'),
                  "'threshold' must be a number in [0, 1], got an integer of about 40"),
    "version": (with_text('"version": 1', f'"version": {HUGE}'), "calibration format version 9999"),
    "isotonic x": (with_text('"x": [0.1, 0.9]', f'"x": [0.1, {HUGE}]'), "an isotonic map needs lists 'x'"),
    "isotonic y": (with_text('"y": [0.2, 0.8]', f'"y": [-{HUGE}, 0.8]'), "an isotonic map needs lists 'x'"),
    "platt a": (PLATT.replace("1.5", HUGE), "a platt map needs finite numbers 'a' and 'b', got an integer of "
                                            "about 40"),
    "platt b": (PLATT.replace("0.5", "-" + HUGE), "a platt map needs finite numbers 'a' and 'b', got 1.5 and an "
                                                  "integer of about 40"),
    "settings k": (with_text('"k": 10', f'"k": {HUGE}'), "'settings': invalid settings: k must be"),
    "settings temperature": (with_text('"temperature": 0.95', f'"temperature": {HUGE}'),
                             "'settings': invalid settings: temperature must be a finite number, got an integer"),
    "settings top_p": (with_text('"temperature": 0.95', f'"temperature": 0.95, "top_p": -{HUGE}'),
                       "'settings': invalid settings: top_p must be a finite number, got an integer"),
    "lora scale": (ADAPTED.replace('"scale": 0.5', f'"scale": {HUGE}'),
                   "'lora' adapter 1 must be an object with 'file' (its name), 'sha256' (64 lowercase hex digits) "
                   "and 'scale' (a finite number), got"),
}


@pytest.mark.parametrize("text, message", HUGE_NUMBERS.values(), ids=HUGE_NUMBERS.keys())
def test_a_huge_integer_in_any_number_of_the_file_is_one_input_error_naming_it(tmp_path, text, message):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_calibration(path, model_sha256=SHA)
    assert str(caught.value).startswith(f"--calibration {path}: ") and message in str(caught.value)


@pytest.mark.parametrize("text, message", HUGE_NUMBERS.values(), ids=HUGE_NUMBERS.keys())
def test_score_says_which_number_is_too_large_in_one_line(small_bpe_gguf, tmp_path, text, message):
    solution = tmp_path / "s.json"
    solution.write_text(json.dumps({"question": "What is 1+1?", "steps": ["1+1=2."]}))
    path = tmp_path / "c.json"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "score", str(solution), "--model",
                             str(small_bpe_gguf), "--calibration", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr[-2000:]
    assert result.stderr.startswith(f"error: --calibration {path}: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_calibration_file_is_one_clean_input_error(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(InputError, match=f"^--calibration {path}: "):
        load_calibration(path, model_sha256=SHA)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(calibration_text())
    with path.open("r+b") as handle:
        handle.truncate(200 * 2**20)  # sparse
    with pytest.raises(InputError, match=r"expected a file of at most 67,108,864 bytes, got 209,715,200"):
        load_calibration(path)


def test_messages_name_the_field_and_the_rule(tmp_path):
    path = tmp_path / "c.json"
    for text, message in [
        (HOSTILE["platt with a negative slope"], "a platt map must be non-decreasing (slope 'a' >= 0), got a = -30.0"),
        (HOSTILE["nested 100000 deep"], "expected JSON nested at most 64 levels deep, got 100001"),
        (HOSTILE["settings k NaN"], "NaN is not a JSON number"),
        (HOSTILE["settings k as text"], "'settings': invalid settings: k must be an integer, got 'ten'"),
    ]:
        path.write_text(text)
        with pytest.raises(InputError) as caught:
            load_calibration(path)
        assert message in str(caught.value)


def test_a_flat_platt_map_is_non_decreasing_and_reads(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(calibration_text(map={"kind": "platt", "a": 0, "b": 1.0}))
    mapping = load_calibration(path).mapping
    assert mapping(0.0) == mapping(1.0) == pytest.approx(1 / (1 + math.exp(-1)))


def test_score_prints_one_error_line_for_a_hostile_calibration(small_bpe_gguf, tmp_path):
    solution = tmp_path / "s.json"
    solution.write_text(json.dumps({"question": "What is 1+1?", "steps": ["1+1=2."]}))
    for name in ("nested 100000 deep", "a 5000-digit threshold", "platt with a negative slope"):
        path = tmp_path / "c.json"
        path.write_text(HOSTILE[name])
        result = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "score", str(solution), "--model",
                                 str(small_bpe_gguf), "--calibration", str(path)], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2 and result.stdout == "", (name, result.stderr)
        assert result.stderr.startswith(f"error: --calibration {path}: ") and result.stderr.count("\n") == 1, name


# -- calibrate ----------------------------------------------------------------------------------
# item: (label, step scores). INVERTED: correct steps score low and wrong ones high, so a Platt fit
# has a negative slope
HAND_MADE = {"a": (-1, [0.9, 0.8]), "b": (1, [0.7, 0.3]), "c": (0, [0.2, 0.9]), "d": (-1, [0.6, 0.95])}
INVERTED = {"a": (-1, [0.1, 0.2]), "b": (1, [0.3, 0.9]), "c": (0, [0.95, 0.1]), "d": (-1, [0.15, 0.05])}


def calibrate_files(tmp_path, table=HAND_MADE, run: str | None = None):
    data = tmp_path / "data"
    data.mkdir()
    (data / "gsm8k.json").write_text(json.dumps([{"id": key, "problem": "q", "steps": ["s"] * len(scores),
                                                  "label": label} for key, (label, scores) in table.items()]))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": key, "scores": scores}) + "\n"
                                   for key, (_, scores) in table.items()))
    (tmp_path / "run.json").write_text(run if run is not None else json.dumps(
        {"benchmark": "processbench", "config": {"model_sha256": SHA, "model": "m.gguf", "k": 2}}))
    return data, predictions


def calibrate(tmp_path, data, predictions, *extra):
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", "calibrate", str(predictions), "--data", str(data),
                           "--out", str(tmp_path / "out"), "--subsets", "gsm8k", "--bootstrap", "10", *extra],
                          capture_output=True, text=True, timeout=120)


def run_json(settings: str) -> str:
    return '{"benchmark": "processbench", "config": {"model_sha256": "' + SHA + '", ' + settings + "}}"


RUN_FILES = {
    "k NaN": run_json('"k": NaN'),
    "temperature 1e400": run_json('"temperature": 1e400'),
    "k as text": run_json('"k": "ten"'),
    "nested 100000 deep": run_json('"x": ' + "[" * 100_000 + "]" * 100_000),
    "a sha256 that is a number": '{"config": {"model_sha256": 5}}',
}


@pytest.mark.parametrize("run", RUN_FILES.values(), ids=RUN_FILES.keys())
def test_calibrate_refuses_a_hostile_run_json_and_writes_nothing(tmp_path, run):
    data, predictions = calibrate_files(tmp_path, run=run)
    result = calibrate(tmp_path, data, predictions, "--map", "none")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'run.json'}: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "out" / "calibration.json").exists()


def test_calibrate_refuses_a_decreasing_platt_map_and_writes_nothing(tmp_path):
    data, predictions = calibrate_files(tmp_path, INVERTED)
    result = calibrate(tmp_path, data, predictions, "--map", "platt")
    assert result.returncode == 2, result.stderr
    assert "a platt map must be non-decreasing" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out" / "calibration.json").exists()


def test_calibrate_writes_only_finite_numbers_that_scoring_reads_back(tmp_path):
    data, predictions = calibrate_files(tmp_path)
    result = calibrate(tmp_path, data, predictions, "--map", "platt")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "out" / "calibration.json"
    json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} written"))
    calibration = load_calibration(path, model_sha256=SHA)
    assert calibration.settings == {"k": 2} and calibration.mapping.a > 0


def test_the_last_guard_refuses_any_non_finite_number():
    from rprm_lite.calibrate_command import calibration_text as text_of

    record = json.loads(calibration_text())
    record["fit"] = {"ece_raw": float("nan"), "reliability": [{"mean_score": 0.5}]}
    with pytest.raises(InputError, match=r"not written: the fit gave nan for 'fit.ece_raw' \(expected a finite"):
        text_of(record, "calibration.json")


# -- property test: mutated files ----------------------------------------------------------------
VALUES = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 5000, "9" * 400, "-" + "9" * 400,
          "[" * 70 + "]" * 70, "-1", "2", "0",
          "1", '"x"', "null", "true", "[]", "{}", "[0.9, 0.1]", "[0.1, 0.1]", '"platt"', '"isotonic"', "-30.5"]
TEMPLATE = ('{"format": "rprm-lite-calibration", "version": 1, "model_sha256": "' + SHA + '", "model": "m.gguf", '
            '"threshold": %s, "map": {"kind": %s, "x": %s, "y": %s, "a": %s, "b": %s}, '
            '"settings": {"k": %s, "top_p": %s}}')
ORIGINAL = ["0.4", '"isotonic"', "[0.1, 0.9]", "[0.2, 0.8]", "1.0", "0.0", "10", "1.0"]


@st.composite
def mutated(draw) -> str:
    slots = [draw(st.sampled_from([original, *VALUES])) if draw(st.booleans()) else original for original in ORIGINAL]
    text = TEMPLATE % tuple(slots)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", "[", "}", '"', ",", "NaN", "\\ud800"])) + text[at:]
    return text


@BOUNDED
@given(text=mutated())
def test_whatever_a_file_holds_scoring_gets_a_sane_calibration_or_an_input_error(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        calibration = load_calibration(path)
    except InputError:
        return
    assert 0 <= calibration.threshold <= 1
    if calibration.mapping is not None:
        mapped = [calibration.score(i / 20) for i in range(21)]
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in mapped)
        assert mapped == sorted(mapped)  # non-decreasing, whatever the kind
