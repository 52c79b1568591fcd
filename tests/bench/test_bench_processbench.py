"""ProcessBench: data loading, first-error prediction and the official F1, on hand-made cases."""

from __future__ import annotations

import json

import pytest

from rprm_lite.errors import InputError
from rprm_lite.labelled import processbench as pb
from rprm_lite.labelled.records import Prediction


def item(id: str, label: int, steps: int = 3, subset: str = "gsm8k") -> pb.ProcessBenchItem:
    return pb.ProcessBenchItem(id=id, subset=subset, problem="q", steps=tuple(f"s{i}" for i in range(steps)),
                               label=label)


def test_subset_scores_is_the_harmonic_mean_of_both_accuracies():
    scores = pb.subset_scores([True, False, True, False], [True, True, True, False])
    assert scores == {"error_acc": 50.0, "correct_acc": 75.0, "f1": 60.0, "error_items": 4, "correct_items": 4}


def test_subset_scores_edge_cases():
    assert pb.subset_scores([False], [False])["f1"] == 0.0  # R-PRM's rule where the official code gives nan
    assert pb.subset_scores([True], [])["f1"] is None  # no correct items: F1 is undefined


@pytest.mark.parametrize(("scores", "threshold", "expected"), [
    ((0.9, 0.4, 0.2), 0.5, 1),
    ((0.9, 0.6, 0.7), 0.5, -1),
    ((0.9, 0.5, 0.7), 0.5, -1),  # a score equal to the threshold is not below it
    ((0.9, 0.4, None), 0.6, 1),  # early stop: the first error is known at higher thresholds
    ((0.9, 0.4, None), 0.3, None),  # ... but not below the score that stopped the run
    ((0.9, 0.6), 0.5, None),  # fewer scores than steps and none below: unknown
])
def test_first_error(scores, threshold, expected):
    assert pb.first_error(Prediction(id="x", scores=scores), 3, threshold) == expected


def test_first_error_rejects_predictions_that_do_not_fit_the_item():
    with pytest.raises(InputError, match="4 step scores for an item with 3 steps"):
        pb.first_error(Prediction(id="x", scores=(0.9, 0.9, 0.9, 0.9)), 3, 0.5)
    with pytest.raises(InputError, match="'prediction' must be -1 or 0..2, got 3"):
        pb.first_error(Prediction(id="x", first_error=3), 3, 0.5)


def test_evaluate_per_subset_and_average():
    pairs = [
        (item("g0", 1), Prediction(id="g0", scores=(0.8, 0.3, 0.6))),  # right
        (item("g1", -1), Prediction(id="g1", scores=(0.9, 0.45, 0.9))),  # wrong: says step 1
        (item("g2", 0), Prediction(id="g2", first_error=0)),  # right, a bare prediction
        (item("m0", 2, subset="math"), Prediction(id="m0", scores=(0.9, 0.9, 0.1))),
        (item("m1", -1, subset="math"), Prediction(id="m1", scores=(0.9, 0.9, 0.9))),
    ]
    metrics = pb.evaluate(pairs, 0.5)
    assert metrics["subsets"]["gsm8k"] == {"error_acc": 100.0, "correct_acc": 0.0, "f1": 0.0,
                                           "error_items": 2, "correct_items": 1}
    assert metrics["subsets"]["math"]["f1"] == 100.0
    assert metrics["average_f1"] == 50.0
    assert pb.evaluate(pairs, 0.4)["average_f1"] == 100.0  # g1's 0.45 is no longer an error


def test_evaluate_names_items_that_early_stop_leaves_undetermined():
    pairs = [(item("g0", 1), Prediction(id="g0", scores=(0.8, 0.3, None)))]
    with pytest.raises(pb.UndeterminedError, match="1 item.*g0.*no step below 0.2.*--all-steps"):
        pb.evaluate(pairs, 0.2)


def test_parse_predictions_reads_all_three_formats_and_keeps_the_first_of_repeated_ids():
    records = [
        {"id": "a", "subset": "gsm8k", "steps": [{"score": 0.9, "p_yes": [1.0, 0.8]},
                                                 {"score": None, "p_yes": []}]},
        {"id": "b", "scores": [0.2, 0.9]},
        {"id": "c", "prediction": -1},
        {"id": "c", "prediction": 0},
    ]
    predictions, repeated = pb.parse_predictions(records, where="p.jsonl")
    assert repeated == 1
    assert predictions["a"] == Prediction(id="a", scores=(0.9, None), p_yes=((1.0, 0.8), ()), group="gsm8k")
    assert predictions["b"].scores == (0.2, 0.9)
    assert predictions["c"].first_error == -1


@pytest.mark.parametrize(("record", "message"), [
    ({"id": "a"}, "expected per-step 'scores'.*or an integer 'prediction'"),
    ({"id": "a", "scores": [0.5, 1.5]}, "step 2: expected a score between 0 and 1"),
    ({"id": "a", "scores": "0.5"}, "expected a list of step scores, got str"),
    ({"scores": [0.5]}, "expected an 'id'"),
])
def test_parse_predictions_rejects_bad_records(record, message):
    with pytest.raises(InputError, match=message):
        pb.parse_predictions([record], where="p.jsonl")


def test_select_checks_ids_against_the_data():
    items = [item("gsm8k-0", 1), item("gsm8k-1", -1)]
    with pytest.raises(InputError, match="1 prediction.*not in the data.*gsm8k-9"):
        pb.select(items, {"gsm8k-0": Prediction(id="gsm8k-0", first_error=1),
                          "gsm8k-9": Prediction(id="gsm8k-9", first_error=1)})
    only_first = {"gsm8k-0": Prediction(id="gsm8k-0", first_error=1)}
    with pytest.raises(InputError, match="1 of 2 items have no prediction.*--partial"):
        pb.select(items, only_first)
    assert [i.id for i, _ in pb.select(items, only_first, partial=True)] == ["gsm8k-0"]
    other_subset = {**only_first, "math-0": Prediction(id="math-0", first_error=1, group="math"),
                    "gsm8k-1": Prediction(id="gsm8k-1", first_error=-1)}
    assert len(pb.select(items, other_subset)) == 2  # predictions of unselected subsets are left out


def test_load_processbench_from_a_folder(processbench_dir):
    items = pb.load_processbench(processbench_dir, ["math"])
    assert [(i.id, i.subset, i.label, len(i.steps)) for i in items] == [("math-0", "math", 0, 2),
                                                                        ("math-1", "math", -1, 3)]
    assert items[0].bench_item().fields == {"subset": "math"}


def test_load_processbench_bad_input(tmp_path, processbench_dir):
    with pytest.raises(InputError, match="no such folder"):
        pb.load_processbench(tmp_path / "nowhere", ["gsm8k"])
    with pytest.raises(InputError, match="missing olympiadbench.json, omnimath.json"):
        pb.load_processbench(processbench_dir)
    (processbench_dir / "gsm8k.json").write_text(json.dumps([{"id": "g", "problem": "q", "steps": ["a"],
                                                              "label": 1}]))
    with pytest.raises(InputError, match=r"gsm8k.json item 1: 'label' must be -1 or a step index 0..0, got 1"):
        pb.load_processbench(processbench_dir, ["gsm8k"])
    with pytest.raises(InputError, match="unknown ProcessBench subset gsm9k"):
        pb.parse_subsets("gsm8k,gsm9k")


def test_hub_download_uses_the_pinned_revision(monkeypatch, processbench_dir):
    import huggingface_hub

    calls = []

    def fake_download(repo, filename, *, repo_type, revision):
        calls.append((repo, filename, repo_type, revision))
        return str(processbench_dir / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    items = pb.load_processbench("hub", ["gsm8k"])
    assert [i.id for i in items] == ["gsm8k-0", "gsm8k-1"]
    assert calls == [("Qwen/ProcessBench", "gsm8k.json", "dataset", pb.HUB_REVISION)]


def test_real_processbench_has_the_official_class_counts(shared_dir):
    items = pb.load_processbench(shared_dir / "data" / "processbench")
    counts = {s: (sum(i.label != -1 for i in items if i.subset == s), sum(i.label == -1 for i in items
                                                                          if i.subset == s))
              for s in pb.SUBSETS}
    # the error / correct numbers the official run_eval_prm_trl.py checks against
    assert counts == {"gsm8k": (207, 193), "math": (594, 406), "olympiadbench": (661, 339),
                      "omnimath": (759, 241)}
