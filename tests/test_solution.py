import io
import json

import pytest

from rprm_lite.errors import InputError
from rprm_lite.solution import Solution, read_solutions


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_a_solution_object_a_processbench_item_a_list_and_jsonl(tmp_path):
    single = read_solutions(write(tmp_path, "a.json", json.dumps({"question": "Q", "steps": ["s1", "s2"]})))
    assert [(s.question, s.steps) for s in single] == [("Q", ("s1", "s2"))]
    item = {"id": "gsm8k-0", "problem": "P", "steps": ["x"], "label": -1, "final_answer_correct": True}
    pb = read_solutions(write(tmp_path, "b.json", json.dumps(item)))
    assert pb[0].id == "gsm8k-0" and pb[0].question == "P" and pb[0].extra["label"] == -1
    listed = read_solutions(write(tmp_path, "c.json", json.dumps([item, {**item, "id": "gsm8k-1"}])))
    assert [s.id for s in listed] == ["gsm8k-0", "gsm8k-1"]
    lines = "\n".join(json.dumps({"question": f"Q{i}", "steps": ["s"]}) for i in range(3)) + "\n\n"
    jsonl = read_solutions(write(tmp_path, "d.jsonl", lines))
    assert [s.question for s in jsonl] == ["Q0", "Q1", "Q2"]
    assert len({s.id for s in jsonl}) == 3  # content ids when no id is given


def stdin_bytes(data: bytes):
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")


def test_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", stdin_bytes(json.dumps({"question": "Q", "steps": ["s"]}).encode()))
    assert read_solutions("-")[0].steps == ("s",)
    monkeypatch.setattr("sys.stdin", stdin_bytes(b'{"question": "Q\xff", "steps": ["s"]}'))
    with pytest.raises(InputError, match=r"^<stdin>: not UTF-8 text \(invalid start byte at byte 15\)$"):
        read_solutions("-")


def test_content_id_is_stable():
    assert Solution.create("Q", ["a"]).id == Solution.create("Q", ["a"]).id != Solution.create("Q", ["b"]).id


@pytest.mark.parametrize("text, message", [
    ("", "file is empty"),
    ('{"question": "Q", "steps": ["a"]}\n{"question": ', "line 2: invalid JSON"),
    ('{"steps": ["a"]}', "missing 'question' \\(or ProcessBench 'problem'\\)"),
    ('{"question": "Q"}', "missing 'steps'"),
    ('{"question": "Q", "steps": []}', "'steps' is empty"),
    ('{"question": "Q", "steps": "a"}', "'steps' must be a list of strings, got a string"),
    ('{"question": "Q", "steps": ["a", 3]}', "step 2 must be a string, got int"),
    ('{"question": "Q", "steps": ["a", "  "]}', "step 2 is empty"),
    ('{"question": "", "steps": ["a"]}', "'question' must be a non-empty string"),
    ('[{"id": 1, "question": "Q", "steps": ["a"]}, {"id": 1, "question": "R", "steps": ["a"]}]', "share the id '1'"),
    ("42", "expected a JSON object"),
])
def test_bad_input_names_the_problem(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_solutions(write(tmp_path, "bad.jsonl", text))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_solutions(tmp_path / "nope.json")
    with pytest.raises(InputError, match="is a folder"):
        read_solutions(tmp_path)


def test_jsonl_lines_split_on_newlines_only(tmp_path):
    text = json.dumps({"question": "Q\u2028still Q", "steps": ["a\x85b"]}, ensure_ascii=False) + "\n"
    solutions = read_solutions(write(tmp_path, "u.jsonl", text + text.replace("Q\u2028", "R\u2028")))
    assert [s.question for s in solutions] == ["Q\u2028still Q", "R\u2028still Q"]
