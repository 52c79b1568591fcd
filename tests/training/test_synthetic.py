"""Synthetic arithmetic problems and their programmatic teacher.

Labels are recomputed here from the step text alone (a regex for "a op b = c") and the question's
numbers, never from the generator's own arithmetic, so a generator bug cannot hide behind itself.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter

import pytest

from rprm_lite.bench.processbench import load_processbench
from rprm_lite.errors import InputError
from rprm_lite.solution import read_solutions
from rprm_lite.training.labels import labelled_steps, read_labelled_steps
from rprm_lite.training.seed import SeedConfig, build_seed_data, dropped_path
from rprm_lite.training.synthetic import SPLITS, SyntheticConfig, generate_split, main, split_of
from rprm_lite.training.synthetic_problems import ERROR_KINDS, Problem, read_problems
from rprm_lite.training.synthetic_teacher import (
    ARITHMETIC,
    OP_NOUNS,
    OPERATION,
    OP_VERBS,
    SECTION_HEADERS,
    SyntheticTeacher,
    contrast_records,
    critique,
    source_words,
    verdict_of,
)
from rprm_lite.training.teacher import Task
from shared_paths import QWEN2_VOCAB

EXPRESSION = re.compile(r"(\d+) ([-+×÷]) (\d+) = (\d+)")
ANSWER = re.compile(r"The answer is (\d+)\.$")
NUMBER = re.compile(r"\d+")
CALCULATE = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "×": lambda a, b: a * b,
             "÷": lambda a, b: a / b}
RECORD_OPS = {"+": "+", "-": "-", "*": "×", "/": "÷"}
FAULT_MARKERS = ("not the same", "contradicts", "does not divide", "below zero")
VERDICT_LINE = re.compile(r"\nVerification: Is the step correct \(Yes/No\)\? (Yes|No)\Z")


@pytest.fixture(scope="module")
def train() -> list[Problem]:
    return generate_split("train", 400, seed=3)


def parse(text: str) -> tuple[int, str, int, int]:
    found = EXPRESSION.findall(text)
    assert len(found) == 1, f"expected one 'a op b = c' in {text!r}, found {found}"
    left, symbol, right, result = found[0]
    return int(left), symbol, int(right), int(result)


def recomputed_labels(problem: Problem) -> list[bool]:
    """Each step checked from its text: operands from their sources, the needed operation, the arithmetic."""
    numbers = [int(n) for n in NUMBER.findall(problem.question)]
    assert numbers == list(problem.quantities.values()), "the question's numbers, in order, are its quantities"
    written = [parse(step.text) for step in problem.steps]
    verdicts = []
    for step, (left, symbol, right, result) in zip(problem.steps, written, strict=True):
        expected = [problem.quantities[key] if kind == "question" else written[int(key)][3]
                    for kind, _, key in (source.partition(":") for source in step.sources)]
        verdicts.append([left, right] == expected and symbol == RECORD_OPS[step.intended_op]
                        and CALCULATE[symbol](left, right) == result)
    return verdicts


def right_answer(problem: Problem) -> int:
    values: list[int] = []
    for step in problem.steps:
        operands = [problem.quantities[key] if kind == "question" else values[int(key)]
                    for kind, _, key in (source.partition(":") for source in step.sources)]
        values.append(int(CALCULATE[RECORD_OPS[step.intended_op]](*operands)))
    return values[-1]


# -- the generator -------------------------------------------------------------------------------
def test_labels_recompute_from_the_step_text(train):
    for problem in train:
        verdicts = recomputed_labels(problem)
        # the first wrong step is the label, and every later step follows correctly from the wrong value
        assert problem.label == (verdicts.index(False) if False in verdicts else -1), problem.item()
        assert verdicts.count(False) == (problem.label != -1), problem.item()
        assert problem.step_labels()[:problem.label + 1 or None] == verdicts[:problem.label + 1 or None]
        # the record holds exactly what the text says
        assert [parse(s.text) for s in problem.steps] == [(s.left, RECORD_OPS[s.op], s.right, s.result)
                                                          for s in problem.steps]
        final = int(ANSWER.search(problem.steps[-1].text).group(1))
        assert final == problem.steps[-1].result
        assert problem.answer == right_answer(problem)
        assert problem.final_answer_correct == (final == problem.answer)


def test_correct_solutions_stay_small_and_exact(train):
    for problem in train:
        if problem.label == -1:
            assert all(1 <= s.left <= 99 and 1 <= s.right <= 99 and 2 <= s.result <= 99 for s in problem.steps)
            assert problem.final_answer_correct


def test_each_error_kind_is_what_its_name_says(train):
    for problem in (p for p in train if p.error):
        step = problem.steps[problem.label]
        sources = [problem.quantities[key] if kind == "question" else problem.steps[int(key)].result
                   for kind, _, key in (s.partition(":") for s in step.sources)]
        operands_right = [step.left, step.right] == sources
        arithmetic_right = CALCULATE[RECORD_OPS[step.op]](step.left, step.right) == step.result
        kind = problem.error["kind"]
        if kind == "arithmetic":
            assert operands_right and step.op == step.intended_op and not arithmetic_right
        elif kind == "operation":
            assert operands_right and step.op != step.intended_op and arithmetic_right
        else:
            operand = problem.error["operand"]
            used = (step.left, step.right)[operand]
            assert used != sources[operand] and (step.left, step.right)[1 - operand] == sources[1 - operand]
            assert step.op == step.intended_op and arithmetic_right
            kind_of_source, _, key = step.sources[operand].partition(":")
            earlier = problem.steps[int(key)] if kind_of_source == "step" else None
            # a contradiction uses the value an earlier add/take-away step started from; a copy never does
            went_back = earlier is not None and earlier.intended_op in "+-" and used == earlier.left
            assert went_back == (kind == "contradiction"), problem.item()


def test_error_share_kinds_and_positions_are_balanced(train):
    with_error = [p for p in train if p.error]
    assert len(with_error) == 200
    assert Counter(p.error["kind"] for p in with_error) == dict.fromkeys(ERROR_KINDS, 50)
    assert {p.label for p in with_error} == {0, 1, 2, 3, 4}
    assert {p.template for p in train} == {"shopping", "baking", "travel", "sharing", "savings", "farm", "class"}
    few = generate_split("dev", 30, seed=1, error_share=0.2, error_kinds=("copy", "operation"))
    assert Counter(p.error["kind"] for p in few if p.error) == {"copy": 3, "operation": 3}


def test_same_seed_same_problems_and_other_seed_other_problems():
    first = [p.item() for p in generate_split("test", 50, seed=7)]
    assert first == [p.item() for p in generate_split("test", 50, seed=7)]
    other = [p.item() for p in generate_split("test", 50, seed=8)]
    assert {p["problem"] for p in first}.isdisjoint(p["problem"] for p in other)


def test_splits_never_share_a_problem_text_or_an_id(train):
    splits = {"train": train, "dev": generate_split("dev", 100, seed=3), "test": generate_split("test", 100, seed=3)}
    for name, problems in splits.items():
        assert all(split_of(p.question) == name and p.id.startswith(f"synth-{name}-") for p in problems)
        assert len({p.question for p in problems}) == len(problems)
    texts = [{p.question for p in problems} for problems in splits.values()]
    assert all(a.isdisjoint(b) for i, a in enumerate(texts) for b in texts[i + 1:])
    assert sorted(SPLITS) == sorted(splits)


def test_command_writes_splits_every_reader_accepts(tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert main(["--out", str(out), "--train", "24", "--dev", "10", "--test", "12", "--seed", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"train: {out / 'train.jsonl'} (24 problems, 12 with an error)",
        f"dev: {out / 'dev' / 'gsm8k.json'} (10 problems, 5 with an error)",
        f"test: {out / 'test' / 'gsm8k.json'} (12 problems, 6 with an error)",
        f"manifest: {out / 'manifest.json'}"]
    expected = generate_split("test", 12, seed=5)
    bench_items = load_processbench(out / "test", ["gsm8k"])
    assert [(i.id, i.problem, list(i.steps), i.label) for i in bench_items] == [
        (p.id, p.question, [s.text for s in p.steps], p.label) for p in expected]
    raw = json.loads((out / "test" / "gsm8k.json").read_text(encoding="utf-8"))
    assert set(raw[0]) >= {"id", "generator", "problem", "steps", "final_answer_correct", "label"}
    assert [s.id for s in read_solutions(out / "dev" / "gsm8k.json")] == [f"synth-dev-{i:05d}" for i in range(10)]
    assert read_problems(out / "test" / "gsm8k.json") == expected
    # training reads the per-step labels: everything up to and including the first error
    train_problems = generate_split("train", 24, seed=5)
    steps = read_labelled_steps(out / "train.jsonl")
    assert [(s.solution.id, s.index, s.correct) for s in steps] == [
        (p.id, i, label) for p in train_problems for i, label in enumerate(p.step_labels()) if label is not None]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["splits"]["train"]["labelled_steps"] == len(steps)
    before = {path: path.read_bytes() for path in out.rglob("*.json*")}
    assert main(["--out", str(out), "--train", "24", "--dev", "10", "--test", "12", "--seed", "5"]) == 0
    assert {path: path.read_bytes() for path in out.rglob("*.json*")} == before


def test_training_kinds_can_be_weighted_without_touching_dev_and_test(tmp_path):
    out = tmp_path / "weighted"
    main(["--out", str(out), "--train", "60", "--dev", "8", "--test", "8", "--seed", "5", "--train-error-share", "1",
          "--train-error-kinds", "arithmetic,arithmetic,arithmetic,copy"])
    train = read_problems(out / "train.jsonl")
    assert Counter(p.error["kind"] for p in train) == {"arithmetic": 45, "copy": 15}
    plain = tmp_path / "plain"
    main(["--out", str(plain), "--train", "60", "--dev", "8", "--test", "8", "--seed", "5"])
    for split in ("dev", "test"):
        assert (out / split / "gsm8k.json").read_bytes() == (plain / split / "gsm8k.json").read_bytes()
    with pytest.raises(InputError, match="unknown error kind 'slip'"):
        SyntheticConfig(out=str(tmp_path), train_error_kinds="arithmetic,slip")


def test_bad_settings_say_what_was_expected(tmp_path, capsys):
    with pytest.raises(InputError, match=r"train must be a whole number >= 0, got -1; error-share must be a "
                                         r"number between 0 and 1, got 1.5"):
        SyntheticConfig(out=str(tmp_path), train=-1, error_share=1.5)
    with pytest.raises(InputError, match="unknown error kind 'typo'; expected some of arithmetic, copy"):
        SyntheticConfig(out=str(tmp_path), error_kinds="copy,typo")
    with pytest.raises(InputError, match="every split size is 0"):
        SyntheticConfig(out=str(tmp_path), train=0, dev=0, test=0)
    with pytest.raises(InputError, match="unknown split 'valid'; expected one of train, dev, test"):
        generate_split("valid", 3, seed=0)
    assert main(["--out", str(tmp_path), "--error-share", "2"]) == 2
    assert capsys.readouterr().err == ("error: invalid settings: error-share must be a number between 0 and 1, "
                                       "got 2.0\n")
    with pytest.raises(InputError, match="no 'trace' field"):
        Problem.from_item({"id": "x", "problem": "What is 1 + 1?", "steps": ["1 + 1 = 2."]})


# -- the teacher ---------------------------------------------------------------------------------
def labelled(problems: list[Problem]) -> list[tuple[Problem, int, bool]]:
    return [(p, i, label) for p in problems for i, label in enumerate(p.step_labels()) if label is not None]


@pytest.mark.parametrize("arithmetic", ARITHMETIC)
def test_honest_critiques_have_every_section_and_the_right_verdict(train, arithmetic):
    for problem, index, label in labelled(train):
        text = critique(problem, index, rng=random.Random(0), arithmetic=arithmetic)
        positions = [text.find(header) for header in SECTION_HEADERS]
        assert -1 not in positions and positions == sorted(positions), text
        assert VERDICT_LINE.search(text), text
        assert verdict_of(text) is label, text
        # the text argues for its verdict: a fault is named exactly when the verdict is No
        assert any(marker in text for marker in FAULT_MARKERS) is (not label), text


def test_critiques_check_the_numbers_they_name(train):
    by_kind = {p.error["kind"]: p for p in train if p.error and p.label > 0}
    step = by_kind["arithmetic"].steps[by_kind["arithmetic"].label]
    true_result = int(CALCULATE[RECORD_OPS[step.op]](step.left, step.right))
    arithmetic = critique(by_kind["arithmetic"], by_kind["arithmetic"].label, rng=random.Random(0))
    assert (f"{step.left} {RECORD_OPS[step.op]} {step.right} = {true_result}; the Now Step writes {step.result}: "
            f"{true_result} vs {step.result}, not the same." in arithmetic)
    contradiction = by_kind["contradiction"]
    text = critique(contradiction, contradiction.label, rng=random.Random(0))
    source = contradiction.steps[contradiction.label].sources[contradiction.error["operand"]]
    earlier = int(source.split(":")[1])
    assert f"Step {earlier + 1} found {contradiction.steps[earlier].result}, so the Now Step contradicts it." in text
    operation = by_kind["operation"]
    step = operation.steps[operation.label]
    assert (f"It needs {OP_NOUNS[step.intended_op]}; the Now Step {OP_VERBS[step.op]}: not the same."
            in critique(operation, operation.label, rng=random.Random(0)))
    right = next(p for p in train if p.label == -1)
    last = right.steps[-1]
    text = critique(right, len(right.steps) - 1, rng=random.Random(0))
    assert (f"{last.left} {RECORD_OPS[last.op]} {last.right} = {last.result}; the Now Step writes {last.result}: "
            f"{last.result} vs {last.result}, the same.") in text
    assert text.endswith("Conclusion: The Now Step is correct.\nVerification: Is the step correct (Yes/No)? Yes")


def test_the_sources_wording_names_both_operands_from_the_question_before_the_operation(train):
    """operation="sources": the Now Step Analysis names what each operand is, in the question's words, before the
    operation the goal needs; on a wrong operation that is the needed one, not the step's. Nothing else changes."""
    problem = next(p for p in train if p.error and p.error["kind"] == "operation")
    step = problem.steps[problem.label]
    words = [source_words(problem, source) for source in step.sources]
    text = critique(problem, problem.label, rng=random.Random(0), operation="sources")
    assert section(text, "**Now Step Analysis**") == (
        f"**Now Step Analysis**: The Now Step finds {step.goal} from {words[0]} and {words[1]}, which needs "
        f"{OP_NOUNS[step.intended_op]}.")
    assert step.intended_op != step.op and verdict_of(text) is False
    goal = critique(problem, problem.label, rng=random.Random(0))
    assert [line for line in text.split("\n") if "Now Step Analysis" not in line] == \
        [line for line in goal.split("\n") if "Now Step Analysis" not in line]
    for problem, index, label in labelled(train):
        assert verdict_of(critique(problem, index, rng=random.Random(0), operation="sources")) is label
    assert OPERATION == ("goal", "sources")
    with pytest.raises(InputError, match="operation must be one of goal, sources, got 'sign'"):
        SyntheticTeacher(operation="sign")


def section(text: str, header: str) -> str:
    return next(line for line in text.split("\n") if line.startswith(header))


@pytest.mark.parametrize("arithmetic", ARITHMETIC)
@pytest.mark.parametrize("kind", [None, *ERROR_KINDS])
def test_every_check_derives_before_it_quotes_the_step(kind, arithmetic):
    """Data source: the needed values and where they come from, then the step's; calculation: the teacher's
    own result (worked out by columns with arithmetic="columns", where a quotient is multiplied back), then the
    step's. Over every labelled step of 150 problems of each kind."""
    problems = generate_split("train", 150, seed=11, error_share=0 if kind is None else 1,
                              error_kinds=ERROR_KINDS if kind is None else (kind,))
    checked = 0
    for problem, index, _ in labelled(problems):
        step = problem.steps[index]
        text = critique(problem, index, rng=random.Random(index), arithmetic=arithmetic)
        data = section(text, "**Data Source Analysis**")
        pairs = re.findall(r"it needs is [^;]*?, (\d+) from (?:the question|Step \d+); the Now Step uses (\d+): "
                           r"(\d+) vs (\d+), (the same|not the same)", data)
        assert len(pairs) == 2, data
        needed = [int(pair[0]) for pair in pairs]
        for (need, used, left, right, word), written in zip(pairs, (step.left, step.right), strict=True):
            assert (need, used) == (left, right) and int(used) == written, data  # the pair side by side
            assert (word == "the same") is (need == used), data
        # the needed values are the sources' true values, whatever the step wrote
        sources = [problem.quantities[s.split(":")[1]] if s.startswith("question:")
                   else problem.steps[int(s.split(":")[1])].result for s in step.sources]
        assert needed == sources, (data, sources)
        calculation = section(text, "**Calculation Analysis**")
        head = rf"\*\*Calculation Analysis\*\*: {step.left}"
        own = re.match(rf"{head} [-+×] {step.right}: .*; so \d+|{head} [-+×÷] {step.right} = \d+|"
                       rf"{head} [-÷] {step.right} (does not divide|is below zero)", calculation)
        if step.op == "/" and own is None:  # the step's quotient multiplied back: derived, then the step's dividend
            back = re.search(rf"the Now Step writes {step.result}, and .*(= |so )(\d+): (\d+) vs {step.left}, ",
                             calculation)
            assert back is not None and back[2] == back[3] == str(step.result * step.right), calculation
        else:
            assert own is not None, calculation
            assert calculation.index(f"the Now Step writes {step.result}") > own.end(), calculation
        before = text[:text.index("**Data Source Analysis**")]
        assert not re.search(r"\d", re.sub(r"Steps? \d+( to \d+)?", "", before)), text  # no numbers yet
        checked += 1
    assert checked > 150


def test_balanced_sft_data_has_the_asked_share_of_no_verdicts(tmp_path):
    from rprm_lite.training.seed import balance_verdicts

    out = tmp_path / "data"
    main(["--out", str(out), "--train", "200", "--dev", "0", "--test", "0", "--seed", "4",
          "--train-error-share", "0.8"])
    config = SeedConfig(solutions=str(out / "train.jsonl"), teacher="synthetic", out=str(tmp_path / "seed.jsonl"))
    build_seed_data(config, teacher=SyntheticTeacher(seed=0, wrong_share=0.1))
    counts = balance_verdicts(tmp_path / "seed.jsonl", tmp_path / "sft.jsonl", no_share=0.45, seed=0)
    records = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    share = sum(r["verdict"] == "No" for r in records) / len(records)
    assert len(records) == counts["yes"] + counts["no"] and 0.44 <= share <= 0.46
    problems = {p.id: p for p in read_problems(out / "train.jsonl")}
    no_kinds = Counter(problems[r["id"]].error["kind"] for r in records if r["verdict"] == "No")
    assert set(no_kinds) == set(ERROR_KINDS) and min(no_kinds.values()) >= 0.15 * sum(no_kinds.values())
    # steps after the first error have no label, so they are never critiqued
    assert all(problems[r["id"]].label in (-1, r["step"] - 1) or r["step"] - 1 < problems[r["id"]].label
               for r in records)


def test_mistaken_critiques_argue_for_their_wrong_verdict(train):
    for problem, index, label in labelled(train[:120]):
        text = critique(problem, index, rng=random.Random(index), wrong_share=1.0)
        assert verdict_of(text) is (not label), text
        assert any(marker in text for marker in FAULT_MARKERS) is label, text


def test_teacher_pairs_prefer_the_honest_critique_and_reject_the_copied_result(train, tmp_path):
    from rprm_lite.training.data_files import read_pairs
    from rprm_lite.training.synthetic_problems import SYMBOLS, apply

    problems = train[:80]
    records = list(contrast_records(problems, seed=0, prompt_style="r-prm-eval"))
    by_problem = Counter(r["id"] for r in records)
    for problem in problems:  # the error step and one right step (a solution without error: one step)
        right = sum(1 for label in problem.step_labels() if label)
        assert by_problem[problem.id] == (problem.label != -1) + (right > 0)
    slips = 0
    for record in records:
        problem = next(p for p in problems if p.id == record["id"])
        chosen, rejected = (sample["critique"] for sample in record["samples"])
        right = record["step"] - 1 != problem.label
        assert verdict_of(chosen) is right and verdict_of(rejected) is (not right)
        assert record["label"] == ("correct" if right else "wrong") and record["pairs"] == [[0, 1]]
        if not right and problem.error["kind"] == "arithmetic":  # the rejected one copies the step's result
            step = problem.steps[problem.label]
            expression = f"{step.left} {SYMBOLS[step.op]} {step.right}"
            assert f"{expression} = {apply(step.op, step.left, step.right)};" in chosen
            assert f"{expression} = {step.result};" in rejected
            slips += 1
    assert slips >= 5
    # the file reads as DPO data
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    assert len(read_pairs(path)) == len(records)
    assert list(contrast_records(problems, seed=0, prompt_style="r-prm-eval")) == records  # seeded


def test_wrong_verdicts_come_at_the_asked_share(train):
    tasks = [Task(step, 0) for problem in train for step in labelled_steps(problem.solution())]
    wrong = [task.step.correct for task, text in SyntheticTeacher(seed=0, wrong_share=0.1).critiques(tasks)
             if verdict_of(text) is not task.step.correct]
    # 1221 labelled steps at 10%: 123 wrong verdicts, 100 of them a false "No" on a right step
    assert (len(tasks), len(wrong), sum(wrong)) == (1221, 123, 100)
    assert verdict_of("The step looks fine.") is None
    assert not [t for t, text in SyntheticTeacher(seed=0, wrong_share=0.0).critiques(tasks)
                if verdict_of(text) is not t.step.correct]


def test_teacher_adapter_feeds_the_seed_filter_with_exact_counts(tmp_path):
    out = tmp_path / "data"
    main(["--out", str(out), "--train", "60", "--dev", "0", "--test", "0", "--seed", "2"])
    config = SeedConfig(solutions=str(out / "train.jsonl"), teacher="synthetic", out=str(tmp_path / "sft.jsonl"))
    report = build_seed_data(config, teacher=SyntheticTeacher(seed=0, wrong_share=0.1))
    assert (report.kept, dict(report.dropped)) == (163, {"wrong_verdict": 23})
    kept = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(record["critique"].endswith(f"(Yes/No)? {'Yes' if record['label'] == 'correct' else 'No'}")
               for record in kept)
    assert dropped_path(config.out).is_file()
    # the same seed gives the same critiques in any task order; another seed flips other steps
    steps = read_labelled_steps(out / "train.jsonl")
    tasks = [Task(step, 0) for step in steps]
    forward = dict(SyntheticTeacher(seed=0).critiques(tasks))
    assert dict(SyntheticTeacher(seed=0).critiques(tasks[::-1])) == forward
    wrong = {t.key for t, text in forward.items() if verdict_of(text) != t.step.correct}
    other = {t.key for t, text in SyntheticTeacher(seed=1).critiques(tasks) if verdict_of(text) != t.step.correct}
    assert wrong != other and len(wrong) == 23


def test_teacher_refuses_what_it_cannot_judge(train):
    problem = next(p for p in train if 0 <= p.label < len(p.steps) - 1)
    with pytest.raises(InputError, match=rf"step {problem.label + 2} comes after the first error"):
        critique(problem, problem.label + 1, rng=random.Random(0))
    with pytest.raises(InputError, match=r"step index 9 is out of range"):
        critique(problem, 9, rng=random.Random(0))
    with pytest.raises(InputError, match="wrong_share must be between 0 and 1"):
        SyntheticTeacher(wrong_share=1.5)
    edited = problem.solution()
    changed = type(edited)(edited.question, ("1 + 1 = 2.",) + edited.steps[1:], edited.id, edited.extra)
    with pytest.raises(InputError, match=r"step 1 should show '.*' as its trace records, got '1 \+ 1 = 2.'"):
        list(SyntheticTeacher().critiques([Task(labelled_steps(changed)[0], 0)]))
    with pytest.raises(InputError, match="its steps differ from the synthetic problem's record"):
        list(SyntheticTeacher(problems={problem.id: problem}).critiques([Task(labelled_steps(changed)[0], 0)]))


def test_critiques_are_short_in_the_real_qwen2_tokenizer(train):
    if not QWEN2_VOCAB.is_file():
        pytest.skip(f"needs the Qwen2 vocabulary at {QWEN2_VOCAB} (the read-only ../shared folder)")
    llama_cpp = pytest.importorskip("llama_cpp")
    vocab = llama_cpp.Llama(str(QWEN2_VOCAB), vocab_only=True, verbose=False)
    lengths = [len(vocab.tokenize(critique(p, i, rng=random.Random(i), wrong_share=0.1).encode("utf-8"),
                                  add_bos=False, special=False)) for p, i, _ in labelled(train)]
    # each compared pair written out side by side costs ~30 tokens over a bare "which is right" (pilot 3)
    assert statistics.mean(lengths) <= 195 and max(lengths) <= 245, (statistics.mean(lengths), max(lengths))
