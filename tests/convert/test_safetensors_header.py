"""The safetensors header reader: every hostile header is a CheckpointError (exit 3), never a traceback,
and whatever it accepts is sound (each tensor inside the data area, sized by its shape, none overlapping)."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from rprm_lite.convert.errors import CheckpointError
from rprm_lite.convert.safetensors_io import STORAGE_DTYPES, read_header, read_tensor_f32
from rprm_lite.errors import ModelFileError, RprmError

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


def write_raw(path, header, data: bytes) -> None:
    """A safetensors file from a header (dict, or raw bytes as they are) and a data area."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + data)


def split(path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + length]), raw[8 + length:]


@pytest.fixture
def valid_file(tmp_path):
    """Three tensors written by the official safetensors library."""
    path = tmp_path / "model.safetensors"
    save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, dtype=np.float16),
               "c": np.full((2, 2), 7, dtype=np.float32)}, str(path), metadata={"format": "pt"})
    return path


def assert_sound(path, refs) -> None:
    """What the reader accepted can be read without touching bytes outside the data area or shared bytes."""
    size = path.stat().st_size
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    spans = []
    for ref in refs.values():
        assert ref.nbytes == math.prod(ref.shape) * STORAGE_DTYPES[ref.dtype].itemsize
        assert 8 + length <= ref.offset and ref.offset + ref.nbytes <= size
        if ref.nbytes:
            spans.append((ref.offset, ref.offset + ref.nbytes))
    spans.sort()
    assert all(end <= next_begin for (_, end), (next_begin, _) in zip(spans, spans[1:], strict=False))


def test_a_valid_file_reads_back(valid_file):
    refs = read_header(valid_file)
    assert {name: (ref.dtype, ref.shape) for name, ref in refs.items()} == {
        "a": ("F32", (2, 3)), "b": ("F16", (4,)), "c": ("F32", (2, 2))}
    assert read_tensor_f32(refs["a"]).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert_sound(valid_file, refs)


def edit_entry(path, name, **changes) -> None:
    header, data = split(path)
    header[name].update(changes)
    write_raw(path, header, data)


def test_negative_offsets_are_refused(valid_file):
    """[-24, 0] has the right length for "a", but would read 24 bytes of the header as its values."""
    edit_entry(valid_file, "a", data_offsets=[-24, 0])
    with pytest.raises(CheckpointError) as caught:
        read_header(valid_file)
    assert str(caught.value) == (f"{valid_file}: tensor a: expected 'data_offsets' to be a list of 2 "
                                 "non-negative integers below 2**64, got [-24, 0]")


def test_tensors_sharing_bytes_are_refused(valid_file):
    header, _ = split(valid_file)
    begin = header["a"]["data_offsets"][0]
    edit_entry(valid_file, "c", data_offsets=[begin, begin + 16])  # "c" is 16 bytes, "a" 24
    with pytest.raises(CheckpointError, match=r"tensor (a|c) \(data_offsets \[\d+, \d+\]\) overlaps tensor (a|c) "):
        read_header(valid_file)


def test_partial_overlap_is_refused(valid_file):
    header, _ = split(valid_file)
    begin, end = header["b"]["data_offsets"]
    edit_entry(valid_file, "b", data_offsets=[begin - 2, end - 2])  # its first 2 bytes are another tensor's last
    with pytest.raises(CheckpointError, match="overlaps tensor .*; expected tensors that share no bytes"):
        read_header(valid_file)


def test_an_empty_tensor_overlaps_nothing(valid_file):
    edit_entry(valid_file, "b", shape=[0], data_offsets=[0, 0])
    assert read_header(valid_file)["b"].nbytes == 0


HOSTILE_ENTRIES = {
    "an entry that is not an object": ("oops", "tensor a: expected an object with dtype, shape and data_offsets, "
                                               "got a string"),
    "a dtype that is a list": ({"dtype": ["F32"]}, "tensor a has dtype ['F32']; expected one of F32, F16, BF16"),
    "no dtype": ({"dtype": None}, "tensor a has dtype None; expected one of"),
    "an unknown dtype": ({"dtype": "F64"}, "tensor a has dtype 'F64'; expected one of"),
    "a shape that is a number": ({"shape": 6}, "tensor a: expected 'shape' to be a list of non-negative integers "
                                               "below 2**64, got 6"),
    "negative dimensions": ({"shape": [-2, -3]}, "a list of non-negative integers below 2**64, got [-2, -3]"),
    "a dimension as text": ({"shape": ["6"]}, "got ['6']"),
    "a float dimension": ({"shape": [6.0]}, "got [6.0]"),
    "a boolean dimension": ({"shape": [True, 6]}, "got [True, 6]"),
    "a shape beyond int64": ({"shape": [2**32, 2**32], "data_offsets": [0, 0]},
                             "expected 73786976294838206464 bytes of data, got data_offsets [0, 0] (0 bytes)"),
    "no data_offsets": ({"data_offsets": None}, "expected 'data_offsets' to be a list of 2 non-negative integers "
                                                "below 2**64"),
    "a 4000-digit dimension": ({"shape": [10**3999]}, "a list of non-negative integers below 2**64, got [1000000"),
    "three data_offsets": ({"data_offsets": [0, 24, 24]}, "got [0, 24, 24]"),
    "data_offsets as text": ({"data_offsets": ["0", "24"]}, "got ['0', '24']"),
    "end before begin": ({"data_offsets": [24, 0]}, "expected 24 bytes of data, got data_offsets [24, 0] (-24 bytes)"),
    "a length that does not match the shape": ({"data_offsets": [0, 20]}, "expected 24 bytes of data, got "
                                                                          "data_offsets [0, 20] (20 bytes)"),
    "data past the end of the file": ({"data_offsets": [10**6, 10**6 + 24]}, "the shard is truncated"),
}


@pytest.mark.parametrize("changes, message", HOSTILE_ENTRIES.values(), ids=HOSTILE_ENTRIES.keys())
def test_hostile_entries_are_named_errors(valid_file, changes, message):
    header, data = split(valid_file)
    header["a"] = changes if not isinstance(changes, dict) else {**header["a"], **changes}
    write_raw(valid_file, header, data)
    with pytest.raises(CheckpointError) as caught:
        read_header(valid_file)
    assert message in str(caught.value) and "model.safetensors" in str(caught.value)
    assert isinstance(caught.value, ModelFileError) and caught.value.exit_code == 3


HOSTILE_HEADERS = {
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, "expected JSON nested at most 64 levels deep, got 100000"),
    "a 5000-digit integer": (b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}',
                             "expected integers of at most 4300 digits, got one of 5000 digits"),
    "not JSON": (b"{oops", "not valid JSON"),
    "invalid UTF-8": (b'{"\xff": 1}', "expected UTF-8 JSON, got an invalid byte at 2"),
    "an array": (b"[1, 2]", "expected a JSON object, got an array"),
    "a repeated tensor name": (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                               b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}',
                               "expected each key once, got 'a' twice"),
    "metadata that is not an object": (b'{"__metadata__": [1]}', "expected '__metadata__' to be an object, got an "
                                                                 "array"),
}


@pytest.mark.parametrize("header, message", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys())
def test_hostile_headers_are_named_errors(tmp_path, header, message):
    path = tmp_path / "model.safetensors"
    write_raw(path, header, b"\0" * 64)
    with pytest.raises(CheckpointError, match=message.replace("[", r"\[").replace("(", r"\(")):
        read_header(path)


@pytest.mark.parametrize("length", [2**63, 2**40, 10**9])
def test_absurd_header_lengths_are_refused_before_reading(valid_file, length):
    raw = valid_file.read_bytes()
    valid_file.write_bytes(struct.pack("<Q", length) + raw[8:])
    with pytest.raises(CheckpointError, match=f"got a length field of {length}; the file is corrupt"):
        read_header(valid_file)


def read_or_refuse(path):
    """The property every test below checks: a sound result, or an RprmError; nothing else escapes."""
    try:
        refs = read_header(path)
    except RprmError:
        return None
    assert_sound(path, refs)
    return refs


MUTATION = st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 10**6), st.integers(0, 255))


@PROPERTY_SETTINGS
@given(mutations=st.lists(MUTATION, min_size=1, max_size=6), cut=st.none() | st.integers(0, 10**6))
def test_random_byte_mutations_give_a_result_or_an_rprm_error(valid_file, mutations, cut):
    raw = bytearray(valid_file.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    for kind, where, value in mutations:
        position = where % (8 + length + 8)  # mostly the length field and the header, where parsing happens
        if kind == "replace":
            raw[position] = value
        elif kind == "insert":
            raw.insert(position, value)
        else:
            del raw[position]
    mutated = valid_file.with_name("mutated.safetensors")
    mutated.write_bytes(bytes(raw[:cut % (len(raw) + 1)] if cut is not None else raw))
    read_or_refuse(mutated)


@PROPERTY_SETTINGS
@given(digits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from("0123456789-")), min_size=1, max_size=4))
def test_random_digit_changes_give_a_result_or_an_rprm_error(valid_file, digits):
    """Changed digits keep the JSON valid but move offsets and shapes: the cases that overlap or escape."""
    header, data = split(valid_file)
    text = bytearray(json.dumps(header).encode())
    positions = [i for i, byte in enumerate(text) if chr(byte).isdigit()]
    for where, digit in digits:
        text[positions[where % len(positions)]] = ord(digit)
    mutated = valid_file.with_name("mutated.safetensors")
    write_raw(mutated, bytes(text), data)
    read_or_refuse(mutated)


JSON_JUNK = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                      max_size=3), max_leaves=6)
SMALL_INT = st.integers(-8, 80) | st.sampled_from([2**31, 2**63, 2**64 + 1])
ENTRY = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "F64", "I8", ""]) | JSON_JUNK,
    "shape": st.lists(SMALL_INT, max_size=3) | JSON_JUNK,
    "data_offsets": st.lists(st.integers(-16, 160), min_size=2, max_size=2) | st.lists(SMALL_INT, max_size=3)
    | JSON_JUNK,
}) | JSON_JUNK
HEADER = st.dictionaries(st.sampled_from(["a", "b", "c", "__metadata__"]) | st.text(max_size=3), ENTRY, max_size=4)


@PROPERTY_SETTINGS
@given(header=HEADER, data_bytes=st.integers(0, 160))
def test_random_header_values_give_a_result_or_an_rprm_error(tmp_path, header, data_bytes):
    path = tmp_path / "random.safetensors"
    write_raw(path, header, b"\x01" * data_bytes)
    read_or_refuse(path)
