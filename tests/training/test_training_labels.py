"""Which steps of a training solution are labelled, and the errors for bad labels."""

from __future__ import annotations

import json

import pytest

from rprm_lite.errors import InputError
from rprm_lite.solution import solution_from_dict
from rprm_lite.training.labels import labelled_steps, read_labelled_steps


def steps_of(item: dict) -> list[tuple[int, str]]:
    solution = solution_from_dict({"question": "q", "steps": ["a", "b", "c", "d"], **item}, where="test")
    return [(step.number, step.label) for step in labelled_steps(solution)]


def test_processbench_first_error_labels_exclude_the_steps_after_it():
    assert steps_of({"label": 2}) == [(1, "correct"), (2, "correct"), (3, "wrong")]
    assert steps_of({"label": 0}) == [(1, "wrong")]
    assert steps_of({"label": -1}) == [(1, "correct"), (2, "correct"), (3, "correct"), (4, "correct")]


def test_per_step_labels_keep_labelled_steps_even_after_an_error():
    assert steps_of({"labels": [True, False, None, 1]}) == [(1, "correct"), (2, "wrong"), (4, "correct")]
    assert steps_of({"labels": ["+", "-", 0, None]}) == [(1, "correct"), (2, "wrong"), (3, "wrong")]


@pytest.mark.parametrize(("item", "message"), [
    ({}, "no step labels"),
    ({"label": 4}, "'label' is 4 but the solution has 4 steps"),
    ({"label": -2}, "'label' is -2"),
    ({"label": "1"}, "must be an integer"),
    ({"label": True}, "must be an integer"),
    ({"labels": [True, False]}, "'labels' has 2 entries but the solution has 4 steps"),
    ({"labels": [True, 2, None, None]}, "label of step 2 is 2"),
    ({"labels": [1.0, None, None, None]}, "label of step 1 is 1.0"),
    ({"labels": [None, None, None, None]}, "every entry of 'labels' is null"),
    ({"labels": "+-"}, "'labels' must be a list"),
])
def test_bad_labels_are_named(item, message):
    with pytest.raises(InputError, match=message):
        steps_of(item)


def test_a_file_is_checked_whole_before_any_work(tmp_path):
    path = tmp_path / "solutions.jsonl"
    lines = [{"id": "ok", "question": "q", "steps": ["a"], "label": -1},
             {"id": "bad", "question": "q", "steps": ["a"], "label": 3}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(InputError, match=r"solution 'bad': 'label' is 3 but the solution has 1 steps"):
        read_labelled_steps(path)


def test_processbench_items_are_read_as_they_are(tmp_path):
    item = {"id": "gsm8k-0", "generator": "x", "problem": "q", "steps": ["a", "b", "c"],
            "final_answer_correct": False, "label": 1}
    path = tmp_path / "pb.json"
    path.write_text(json.dumps([item]))
    assert [(s.solution.id, s.number, s.correct) for s in read_labelled_steps(path)] == [
        ("gsm8k-0", 1, True), ("gsm8k-0", 2, False)]
