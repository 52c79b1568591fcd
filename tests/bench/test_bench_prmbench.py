"""PRMBench: PRMScore as the official evaluation code computes it, on hand-made cases and real scores."""

from __future__ import annotations

import pytest

from rprm_lite.errors import InputError
from rprm_lite.labelled import prmbench as pb
from rprm_lite.labelled.records import Prediction, read_records


def item(classification: str, error_steps=(2,), steps: int = 3, idx: str = "p0") -> pb.PRMBenchItem:
    return pb.PRMBenchItem(id=f"{classification}_{idx}", classification=classification, question="q",
                           steps=tuple(f"s{i}" for i in range(steps)), error_steps=frozenset(error_steps))


def labelled(it: pb.PRMBenchItem, labels) -> tuple[pb.PRMBenchItem, Prediction]:
    return it, Prediction(id=it.id, labels=tuple(labels))


def test_counts_follow_the_official_confusion_matrix():
    counts = pb.Counts()
    counts.add(frozenset({2, 3}), [True, True, False, False])
    # step 1 right+correct: TP; step 2 wrong+correct: FP; step 3 wrong+wrong: TN; step 4 right+wrong: FN
    assert counts.scores() == {"prm_score": 50.0, "f1": 50.0, "negative_f1": 50.0,
                               "tp": 1, "fp": 1, "tn": 1, "fn": 1, "items": 1}


def test_step_count_mismatch_is_counted_over_the_predictions_labels():
    pairs = [labelled(item("circular", steps=3), [True, False, True, True, False]),  # 2 extra labels
             labelled(item("counterfactual", steps=3), [True])]  # 2 labels missing
    metrics = pb.evaluate(pairs)
    # extra steps count as correct steps (TP, FN); missing steps are not counted
    counts = {name: [c[key] for key in ("tp", "fp", "tn", "fn")] for name, c in metrics["categories"].items()}
    assert counts == {"circular": [3, 0, 1, 1], "counterfactual": [1, 0, 0, 0]}
    assert metrics["step_count_mismatches"] == {"count": 2, "ids": ["circular_p0", "counterfactual_p0"]}


def test_dimensions_average_categories_and_overall_pools_every_step():
    perfect = [True, False, True]
    pairs = [labelled(item(name), perfect) for name in pb.CATEGORIES if name not in ("redundency",
                                                                                    "multi_solutions")]
    pairs.append(labelled(item("redundency"), [True, True, True]))  # misses its wrong step
    pairs.append(labelled(item("multi_solutions", error_steps=()), [True, True, True]))
    metrics = pb.evaluate(pairs)
    # redundency: TP 2, FP 1 -> F1 80, negative F1 0 -> PRMScore 40
    assert metrics["categories"]["redundency"]["prm_score"] == 40.0
    assert metrics["categories"]["multi_solutions"]["prm_score"] == 100.0  # positive F1 only
    assert metrics["categories"]["multi_solutions"]["negative_f1"] is None
    assert metrics["dimensions"] == {"simplicity": 70.0, "soundness": 100.0, "sensitivity": 100.0}
    # pooled: TP 19, FP 1, TN 7, FN 0 -> F1 38/39, negative F1 14/15
    assert metrics["overall"]["prm_score"] == pytest.approx(50 * 38 / 39 + 50 * 14 / 15)
    assert metrics["overall"]["items"] == 9


def test_a_missing_category_leaves_its_dimension_undefined():
    metrics = pb.evaluate([labelled(item("circular"), [True, False, True])])
    assert metrics["dimensions"]["simplicity"] is None
    assert metrics["overall"]["prm_score"] == 100.0


def test_labels_from_scores_use_score_above_threshold():
    prediction = Prediction(id="circular_p0", scores=(0.9, 0.5, 0.51), labels=(False, False, False))
    assert pb.step_labels(prediction, None) == (False, False, False)  # labels as given
    assert pb.step_labels(prediction, 0.5) == (True, False, True)
    with pytest.raises(InputError, match="step 2 was not scored"):
        pb.step_labels(Prediction(id="x", scores=(0.9, None)), 0.5)


def test_parse_predictions_in_the_official_result_format():
    records = [
        {"idx": "circular_p0", "scores": {"step_level_validity_scores": [0.9, 0.1],
                                          "step_level_validity_labels": [True, False]}},
        {"idx": "circular_p0", "scores": {"step_level_validity_labels": [False, False]}},  # repeat: ignored
        {"idx": "redundency_p0", "scores": {"step_level_validity_labels": [True, True],
                                            "step_level_redundancy_labels": [False, True]}},
        {"idx": "confidence_p0", "validity": False, "scores": {"step_level_validity_labels": [True]}},
    ]
    predictions, repeated = pb.parse_predictions(records, where="r.jsonl")
    assert repeated == 1
    assert predictions["circular_p0"].labels == (True, False)
    assert predictions["redundency_p0"].labels == (True, False)  # redundancy labels, inverted
    assert predictions["confidence_p0"].valid is False


def test_invalid_results_are_skipped():
    pairs = [labelled(item("circular"), [True, False, True]),
             (item("confidence"), Prediction(id="confidence_p0", labels=(False,), valid=False))]
    metrics = pb.evaluate(pairs)
    assert metrics["invalid_skipped"] == 1
    assert "confidence" not in metrics["categories"]


@pytest.mark.parametrize(("record", "message"), [
    ({"idx": "circular_p0"}, "expected our 'steps' or PRMBench's 'scores' object"),
    ({"idx": "circular_p0", "scores": {}}, "neither 'step_level_validity_scores' nor"),
    ({"idx": "circular_p0", "scores": {"step_level_validity_labels": [0.7]}}, "list of true/false"),
])
def test_parse_predictions_rejects_bad_records(record, message):
    with pytest.raises(InputError, match=message):
        pb.parse_predictions([record], where="r.jsonl")


def test_select_tolerates_four_missing_items_like_the_official_assert():
    items = [item("circular", idx=f"p{i}") for i in range(6)]
    predictions = {it.id: Prediction(id=it.id, labels=(True,)) for it in items}
    for i in range(4):
        del predictions[f"circular_p{i}"]
    assert len(pb.select(items, predictions)) == 2
    del predictions["circular_p4"]
    with pytest.raises(InputError, match="5 of 6 items have no prediction.*tolerates 4.*--partial"):
        pb.select(items, predictions)


def test_select_rejects_unknown_ids_but_ignores_official_correct_samples():
    items = [item("circular")]
    ok = {"circular_p0": Prediction(id="circular_p0", labels=(True,)),
          "correct_p0": Prediction(id="correct_p0", labels=(True,))}
    assert len(pb.select(items, ok)) == 1
    with pytest.raises(InputError, match="1 prediction.*not in the data.*prm_test_p1_0"):
        pb.select(items, {**ok, "prm_test_p1_0": Prediction(id="prm_test_p1_0", labels=(True,))})


def test_load_prmbench_keys_items_by_classification_and_keeps_the_first_repeat(prmbench_dir):
    items = pb.load_prmbench(prmbench_dir)
    assert [(i.id, len(i.steps), sorted(i.error_steps)) for i in items] == [
        ("circular_p0", 3, [2]), ("multi_solutions_p0", 2, [])]
    assert [i.id for i in pb.load_prmbench(prmbench_dir, subset400=True)] == ["circular_p0"]


def test_load_prmbench_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        pb.load_prmbench(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no .jsonl files"):
        pb.load_prmbench(tmp_path)
    with pytest.raises(InputError, match="missing subset400_target_data.jsonl"):
        pb.load_prmbench(tmp_path, subset400=True)
    (tmp_path / "x.jsonl").write_text('{"idx": "p0", "classification": "circular"}\n')
    with pytest.raises(InputError, match="x.jsonl line 1: expected a PRMBench item with"):
        pb.load_prmbench(tmp_path)


def test_released_rprm_scores_on_real_prmbench(shared_dir):
    items = pb.load_prmbench(shared_dir / "data" / "prmbench")
    records = read_records(shared_dir / "reference" / "prmbench-rprm-scores.jsonl")
    predictions, repeated = pb.parse_predictions(records, where="released")
    assert (len(items), len(records), repeated) == (6211, 6216, 5)  # five repeated multi_solutions ids
    metrics = pb.evaluate(pb.select(items, predictions))  # the authors' labels (score >= 0.61)
    assert round(metrics["overall"]["prm_score"], 2) == 64.92
    assert {k: round(v, 2) for k, v in metrics["dimensions"].items()} == {
        "simplicity": 58.67, "soundness": 66.44, "sensitivity": 75.71}
    assert {c["abbreviation"]: round(c["prm_score"], 1) for c in metrics["categories"].values()} == {
        "NR": 52.7, "NCL": 64.7, "ES": 70.1, "SC": 62.7, "DC": 63.4, "CI": 69.5, "PS": 61.4, "DR": 67.4,
        "MS": 98.3}
    assert metrics["step_count_mismatches"]["count"] == 0
    assert round(pb.evaluate(pb.select(items, predictions), 0.5)["overall"]["prm_score"], 2) == 65.96


def test_empty_steps_in_real_prmbench_are_kept_so_step_numbers_match(shared_dir):
    items = {i.id: i for i in pb.load_prmbench(shared_dir / "data" / "prmbench")}
    solution = items["deception_prm_test_p1_87"].bench_item().solution
    assert (len(solution.steps), solution.steps[15]) == (17, "")  # step 16 of 17 is empty
