"""The one bounded JSON reader (`rprm_lite.jsonl.loads`), used by the runtime and the converter alike.

Hostile JSON is one clean error, whichever reader meets it: nesting (checked before parsing), integers
beyond CPython's own digit limit, NaN and Infinity, numbers too large for a float, text that is not
UTF-8, lone surrogates. Real files still read: a checkpoint's 31-digit `model_max_length`. Property tests
(hypothesis, fixed seed and example count) mutate valid inputs and check that each reader returns a
sane value or raises its own error type, nothing else.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rprm_lite.convert.errors import CheckpointError
from rprm_lite.convert.json_files import parse_json_object
from rprm_lite.errors import InputError
from rprm_lite.jsonl import loads, read_jsonl

BOUNDED = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
LIMIT = sys.get_int_max_str_digits() or 4300

# one class of hostile JSON each: (text, what the one error line says)
HOSTILE = {
    "nested 5000 deep": ("[" * 5000 + "]" * 5000, "expected JSON nested at most 64 levels deep, got 5000"),
    "nested 65 deep in an object": ('{"a": ' + "[" * 64 + "]" * 64 + "}", "nested at most 64 levels deep, got 65"),
    "a 5000-digit integer": ('{"n": ' + "7" * 5000 + "}", "expected integers of at most 4300 digits, got one of 5000"),
    "a negative 5000-digit integer": ('{"n": -' + "7" * 5000 + "}", "got one of 5000 digits"),
    "NaN": ('{"x": NaN}', "NaN is not a JSON number"),
    "Infinity": ('{"x": Infinity}', "Infinity is not a JSON number"),
    "-Infinity": ('{"x": [-Infinity]}', "-Infinity is not a JSON number"),
    "1e400": ('{"x": 1e400}', "the number 1e400 is too large for a float"),
    "-1e400 written as digits": ('{"x": -1' + "0" * 400 + ".0}", "is too large for a float"),
    "a lone surrogate": ('{"x": "a\\ud800"}', "the text holds a lone surrogate"),
    "a lone surrogate in a key": ('{"\\udfff": 1}', "the text holds a lone surrogate"),
}


@pytest.mark.parametrize("text", [text for text, _ in HOSTILE.values()], ids=HOSTILE.keys())
def test_runtime_reader_gives_one_clean_error(text):
    with pytest.raises(InputError, match="^where: "):
        loads(text, where="where")


@pytest.mark.parametrize("text, message", HOSTILE.values(), ids=HOSTILE.keys())
def test_its_messages_say_what_was_expected_and_what_was_found_in_both_readers(text, message):
    with pytest.raises(InputError, match="^config.json: .*" + message.replace("(", r"\(")) as runtime:
        loads(text, where="config.json")
    with pytest.raises(CheckpointError) as converter:
        parse_json_object(text.encode("utf-8", "surrogatepass"), source="config.json")
    assert str(converter.value) == str(runtime.value)


@pytest.mark.parametrize("text", [text for text, _ in HOSTILE.values()], ids=HOSTILE.keys())
def test_converter_reader_gives_one_clean_checkpoint_error(text):
    with pytest.raises(CheckpointError, match="^config.json: ") as caught:
        parse_json_object(text.encode("utf-8", "surrogatepass"), source="config.json")
    assert caught.value.exit_code == 3


REAL = {
    "transformers' model_max_length": ('{"model_max_length": 1000000000000000019884624838656}',
                                       {"model_max_length": 1000000000000000019884624838656}),
    "an integer at the digit limit": ('{"n": ' + "9" * LIMIT + "}", {"n": 10**LIMIT - 1}),
    "the largest float": ('{"x": 1.7976931348623157e308}', {"x": 1.7976931348623157e308}),
    "a tiny float": ('{"x": 1e-400}', {"x": 0.0}),
    "64 levels": ('{"a": ' + "[" * 63 + "]" * 63 + "}", {"a": json.loads("[" * 63 + "]" * 63)}),
    "brackets in strings do not nest": ('{"a": "' + "[" * 10_000 + '"}', {"a": "[" * 10_000}),
    "an escaped surrogate pair": ('{"x": "\\ud83d\\ude00"}', {"x": "\U0001f600"}),
}


@pytest.mark.parametrize("text, value", REAL.values(), ids=REAL.keys())
def test_real_values_read_the_same_in_both_readers(text, value):
    assert loads(text, where="w") == value
    assert parse_json_object(text.encode(), source="config.json") == value


def test_syntax_errors_stay_json_errors_for_the_caller_to_place_and_keys_may_be_unique():
    with pytest.raises(json.JSONDecodeError):
        loads('{"a": ', where="w")
    assert loads('{"a": 1, "a": 2}', where="w") == {"a": 2}  # JSON's own rule: the last one wins
    with pytest.raises(InputError, match="^w: expected each key once, got 'a' twice$"):
        loads('{"a": 1, "a": 2}', where="w", unique_keys=True)
    with pytest.raises(InputError, match="^w: expected UTF-8 JSON, got an invalid byte at 7$"):
        loads(b'{"a": "\xff"}', where="w")


@pytest.mark.parametrize("text", ['{"id": "a", "score": NaN}', '{"id": "a", "score": 1e400}',
                                  '{"id": ' + "1" * 5000 + "}", '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"],
                         ids=["NaN", "1e400", "5000 digits", "nested 100000 deep"])
def test_results_files_use_it(tmp_path, text):
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "ok"}\n' + text + "\n")
    with pytest.raises(InputError, match=f"^{path} line 2: "):
        list(read_jsonl(path))


# -- property tests: mutated inputs -------------------------------------------------------------
# a checkpoint-like object whose values sit in slots; a mutation puts hostile values in some slots and
# cuts, replaces or inserts pieces of text at random places
TEMPLATE = '{"model_max_length": %s, "vocab_size": %s, "rope_theta": %s, "layers": [[%s, 2], {"a": [%s, -3e-7]}], ' \
           '"name": "qwen%s"}'
ORIGINAL = ["1000000000000000019884624838656", "151936", "1000000.0", "1", "0.5", "\u00e9"]
VALUES = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 4301, "-" + "9" * 5000, "[" * 70 + "]" * 70,
          '{"a": ' * 66 + "1" + "}" * 66, '"\\ud800"', "1E+308", "0e0", "-0.0", "true", "null", '"x"']
PIECES = ["[", "]", "{", "}", '"', "\\ud800", "NaN", "Infinity", "-", "1e400", "9" * 4400, "[" * 70, "]" * 70,
          ",", ":", "\xff", "0.5", "null", "\\u0000", " "]


@st.composite
def mutated(draw) -> str:
    slots = [draw(st.sampled_from([original, *VALUES])) if draw(st.booleans()) else original for original in ORIGINAL]
    text = TEMPLATE % tuple(slots)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        text = text[:at] + draw(st.sampled_from(["", *PIECES])) + text[at + cut:]
    return text


def sane(value, depth: int = 1) -> None:
    """What every value the reader returns satisfies."""
    assert depth <= 64
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        assert len(str(abs(value))) <= LIMIT
    elif isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            sane(key, depth + 1)
            sane(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            sane(item, depth + 1)


@BOUNDED
@given(text=mutated())
def test_runtime_reader_returns_sane_values_or_raises_its_errors(text):
    try:
        value = loads(text.encode("utf-8", "surrogatepass"), where="w")
    except (InputError, json.JSONDecodeError):
        return
    sane(value)


@BOUNDED
@given(text=mutated())
def test_converter_reader_returns_sane_objects_or_raises_checkpoint_errors(text):
    try:
        value = parse_json_object(text.encode("utf-8", "surrogatepass"), source="config.json")
    except CheckpointError:
        return
    assert isinstance(value, dict)
    sane(value)


@BOUNDED
@given(lines=st.lists(mutated(), min_size=1, max_size=3))
def test_results_file_reader_returns_sane_records_or_raises_input_errors(tmp_path, lines):
    path = tmp_path / "results.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    try:
        records = list(read_jsonl(path, skip_torn_end=True))
    except InputError:
        return
    for _, record in records:
        sane(record)
