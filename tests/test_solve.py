"""`rprm-lite solve` and `Solver`: the strategies' choices against a scripted policy and judge (exact), then the
tiny model as policy and judge end to end: the batch of candidates, the CLI, --json, resume, bad input and
cancellation."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from rprm_lite.config import ScoreConfig
from rprm_lite.errors import ContextOverflowError, InputError, RprmError, ScoringCancelled
from rprm_lite.policy_engine import Draft, PolicyModel
from rprm_lite.results import SolutionResult, StepResult
from rprm_lite.solve import SolveConfig, Solver, answer_key, search, solution_steps
from shared_paths import TINY_RPRM

TINY = ["--policy", TINY_RPRM, "--model", TINY_RPRM, "--k", "2", "--max-tokens", "8", "--threads", "1",
        "--prefix-cache", "memory", "--n", "2", "--max-steps", "2", "--step-tokens", "6"]


# -- a scripted policy and judge -------------------------------------------------------------------------
class Scripted:
    """Proposals by round (a list of (text, ending) per round), step scores by step text; records every call."""

    def __init__(self, rounds: dict[int, list[tuple[str, str]]], scores: dict[str, float], k: int = 3) -> None:
        self.rounds, self.scores, self.k = rounds, scores, k
        self.proposed: list[tuple[tuple[str, ...], int, bool, bool, int]] = []
        self.judged: list[tuple[str, ...]] = []
        self.batches: list[int] = []  # how many candidates each judge_next call held

    def propose(self, steps: Sequence[str], n: int, *, whole: bool, greedy: bool, round: int) -> list[Draft]:
        self.proposed.append((tuple(steps), n, whole, greedy, round))
        return [Draft(text, tokens=len(text.split()), ending=ending) for text, ending in self.rounds[round][:n]]

    def judge(self, steps: Sequence[str]) -> SolutionResult:
        self.judged.append(tuple(steps))
        results = tuple(StepResult(index=i + 1, score=self.scores[text], p_yes=(self.scores[text],) * self.k,
                                   verdict="wrong" if self.scores[text] < 0.5 else "correct")
                        for i, text in enumerate(steps))
        return SolutionResult(id="candidate", steps=results, first_error_step=None, solution_score=None)

    def judge_next(self, steps: Sequence[str], candidates: Sequence[str]) -> list[StepResult | RprmError]:
        self.batches.append(len(candidates))
        return [ContextOverflowError(f"{text} is too long") if text.startswith("long")
                else self.judge([*steps, text]).steps[-1] for text in candidates]


def run_search(strategy: str, model: Scripted, n: int = 4, max_steps: int = 5, aggregation: str = "min",
               **settings):
    critiques: list[int] = []
    found = search(strategy, model, SolveConfig(strategy=strategy, n=n, max_steps=max_steps, **settings),
                   aggregation=aggregation, on_critiques=critiques.append)
    return found, critiques


def test_solution_steps_cut_at_the_first_answer_and_at_max_steps():
    assert solution_steps("a = 1.\n\n  b = 2. The answer is 2.\nextra", 5) == (
        ("a = 1.", "b = 2. The answer is 2."), "2", "answered")
    assert solution_steps("a\nb\nc", 2) == (("a", "b"), None, "max steps")
    assert solution_steps("a\nb", 2) == (("a", "b"), None, "no answer")
    assert solution_steps("", 3) == ((), None, "no answer")
    assert answer_key("12.0") == answer_key("12") == "12" and answer_key("1,200") == "1,200"


def test_greedy_is_one_greedy_solution_of_the_policy_alone():
    model = Scripted({0: [("x = 2 + 3 = 5.\nThe answer is 5.", "turn")]}, {})
    found, critiques = run_search("greedy", model)
    assert model.proposed == [((), 1, True, True, 0)] and model.judged == [] and critiques == []
    assert [s.text for s in found.steps] == ["x = 2 + 3 = 5.", "The answer is 5."]
    assert (found.answer, found.outcome, found.steps[0].score) == ("5", "answered", None)


def test_majority_takes_the_most_frequent_answer_and_the_earliest_sample_on_ties():
    samples = [("The answer is 5.", "turn"), ("So 7. The answer is 7.", "turn"), ("The answer is 7.0.", "turn"),
               ("no answer here", "budget")]
    found, _ = run_search("majority", Scripted({0: samples}, {}))
    assert (found.answer, [s.text for s in found.steps]) == ("7", ["So 7. The answer is 7."])
    assert [c.answer for c in found.candidates] == ["5", "7", "7.0", None]
    tie = [("The answer is 5.", "turn"), ("The answer is 7.", "turn"), ("The answer is 7.", "turn"),
           ("The answer is 5.", "turn")]
    assert run_search("majority", Scripted({0: tie}, {}))[0].answer == "5"


def test_best_of_n_ranks_by_the_judges_aggregation_answers_first_earliest_on_ties():
    samples = [("a\nThe answer is 1.", "turn"), ("b\nThe answer is 2.", "turn"), ("c", "turn"),
               ("d\nThe answer is 3.", "turn")]
    scores = {"a": 0.9, "The answer is 1.": 0.2, "b": 0.6, "The answer is 2.": 0.7, "c": 1.0,
              "d": 0.9, "The answer is 3.": 0.6}
    model = Scripted({0: samples}, scores)
    found, critiques = run_search("best-of-n", model, aggregation="min")
    # min: 0.2, 0.6, (1.0 but no answer), 0.6 -> the second (the earliest of the two 0.6)
    assert (found.answer, [s.score for s in found.steps]) == ("2", [0.6, 0.7])
    assert [c.score for c in found.candidates] == [0.2, 0.6, 1.0, 0.6]
    assert model.judged == [("a", "The answer is 1."), ("b", "The answer is 2."), ("c",),
                            ("d", "The answer is 3.")]
    assert critiques == [6, 6, 3, 6]
    assert run_search("best-of-n", Scripted({0: samples}, scores), aggregation="mean")[0].answer == "3"


def test_guided_keeps_the_best_next_step_scores_a_repeated_text_once_and_stops_at_the_answer():
    rounds = {1: [("A", "step"), ("B", "step"), ("B", "step"), ("C", "step")],
              2: [("D. The answer is 4.", "step"), ("E", "step"), ("", "turn"), ("F. The answer is 9.", "turn")]}
    scores = {"A": 0.4, "B": 0.9, "C": 0.9, "D. The answer is 4.": 0.3, "E": 0.5, "F. The answer is 9.": 0.8}
    model = Scripted(rounds, scores)
    found, critiques = run_search("guided", model)
    assert model.proposed == [((), 4, False, False, 1), (("B",), 4, False, False, 2)]
    assert model.judged == [("A",), ("B",), ("C",), ("B", "D. The answer is 4."), ("B", "E"),
                            ("B", "F. The answer is 9.")]
    assert critiques == [3] * 6  # only the new step's critiques count
    assert model.batches == [3, 3]  # each step's distinct candidates judged together, in one call
    assert [(s.text, s.score, s.chosen) for s in found.steps] == [("B", 0.9, 1), ("F. The answer is 9.", 0.8, 3)]
    assert [c.score for c in found.steps[1].candidates] == [0.3, 0.5, None, 0.8]
    assert (found.answer, found.outcome) == ("9", "answered")


def test_guided_stops_with_no_good_step_when_the_judge_finds_every_candidate_wrong_or_keeps_the_best():
    rounds = {1: [("A", "step"), ("B", "step")], 2: [("C", "step"), ("D", "step"), ("long D", "step")],
              3: [("E. The answer is 5.", "step")]}
    scores = {"A": 0.2, "B": 0.7, "C": 0.3, "D": 0.49, "E. The answer is 5.": 0.9}
    found, critiques = run_search("guided", Scripted(rounds, scores), n=3)
    assert ([s.text for s in found.steps], found.answer, found.outcome) == (["B"], None, "no good step")
    assert [(c.steps, c.score) for c in found.candidates] == [(("C",), 0.3), (("D",), 0.49), (("long D",), None)]
    assert critiques == [3, 3, 3, 3]  # the long candidate could not be scored; the others were
    kept, _ = run_search("guided", Scripted(rounds, scores), n=3, no_good_step="keep")  # R-PRM's search
    assert ([s.text for s in kept.steps], kept.answer, kept.outcome) == (["B", "D", "E. The answer is 5."], "5",
                                                                          "answered")


def test_guided_is_an_error_when_no_candidate_of_a_step_can_be_scored():
    with pytest.raises(ContextOverflowError, match="long A is too long"):
        run_search("guided", Scripted({1: [("long A", "step"), ("long B", "step")]}, {}), n=2)


def test_guided_tells_of_each_step_as_soon_as_it_is_chosen():
    heard: list[tuple[str, int]] = []
    model = Scripted({1: [("A", "step")], 2: [("B. The answer is 1.", "step")]}, {"A": 0.5, "B. The answer is 1.": 1})
    original = model.propose

    def propose(*args, **kwargs):
        heard.append(("propose", kwargs["round"]))
        return original(*args, **kwargs)

    model.propose = propose  # type: ignore[method-assign]
    search("guided", model, SolveConfig(n=1), on_step=lambda step: heard.append((step.text, step.chosen)))
    assert heard == [("propose", 1), ("A", 0), ("propose", 2), ("B. The answer is 1.", 0)]


def test_a_judge_that_stops_at_the_first_wrong_step_is_refused(policy):
    class Judge:  # a scorer made without all_steps: its later steps would be "not scored"
        config = ScoreConfig(all_steps=False)

        def score_solution(self, solution: object) -> SolutionResult:
            raise AssertionError("never asked")

    with pytest.raises(InputError, match="all_steps=True"):
        Solver(policy, Judge())


def test_guided_ends_without_an_answer_at_max_steps_at_end_of_turn_or_when_nothing_is_proposed():
    steps = {r: [(f"step {r}", "step")] for r in range(1, 4)}
    found, _ = run_search("guided", Scripted(steps, {f"step {r}": 0.5 for r in range(1, 4)}), n=1, max_steps=3)
    assert (len(found.steps), found.answer, found.outcome) == (3, None, "max steps")
    found, _ = run_search("guided", Scripted({1: [("done", "turn")]}, {"done": 1.0}), n=1)
    assert ([s.text for s in found.steps], found.outcome) == (["done"], "no answer")
    found, _ = run_search("guided", Scripted({1: [("", "turn"), ("", "budget")]}, {}), n=2)
    assert (found.steps, found.outcome) == ((), "no answer")


def test_settings_are_checked():
    with pytest.raises(InputError, match="n must be at least 1"):
        SolveConfig(n=0)
    with pytest.raises(InputError, match="strategy must be one of"):
        SolveConfig(strategy="beam")  # type: ignore[arg-type]


# -- the tiny model as policy and judge ---------------------------------------------------------------
@pytest.fixture(scope="module")
def policy() -> PolicyModel:
    model = PolicyModel(TINY_RPRM, threads=1)
    yield model
    model.close()


def tiny_solver(policy: PolicyModel, **settings) -> Solver:
    config = SolveConfig(**{"n": 3, "max_steps": 2, "step_tokens": 6, **settings})
    return Solver(policy, TINY_RPRM, config=config, threads=1,
                  judge_options={"k": 2, "max_tokens": 8, "prefix_cache": "memory"})


def test_candidates_are_sampled_together_each_within_its_budget(policy):
    tokens = policy.tokens("What is 2 + 3?", ["2 + 3 = 5."])
    assert tokens[:len(policy.tokens("What is 2 + 3?"))] == policy.tokens("What is 2 + 3?")
    drafts = policy.sample(tokens, seeds=[1, 2, 3], temperature=0.7, top_p=0.95, max_tokens=5, one_step=True)
    assert len(drafts) == 3 and all(1 <= d.tokens <= 5 and "\n" not in d.text for d in drafts)
    assert all(d.ending in ("step", "turn", "budget") for d in drafts)
    again = policy.sample(tokens, seeds=[1, 2, 3], temperature=0.7, top_p=0.95, max_tokens=5, one_step=True)
    assert again == drafts  # the same seeds, the same candidates (the prefix kept in the cache)


class Pieces:
    """The two things `_ending` asks of an engine: which token ends the turn, and each token's bytes."""

    def __init__(self, pieces: dict[int, bytes], end: int) -> None:
        self.pieces, self.end = pieces, end

    def is_end(self, token: int) -> bool:
        return token == self.end

    def piece(self, token: int) -> bytes:
        return self.pieces[token]


@pytest.mark.parametrize(("tokens", "one_step", "endings"), [
    ([1, 2, 3], True, [None, None, "step"]),            # "\n" first: a blank line before the step does not end it
    ([2, 3, 4], True, [None, "step", None]),
    ([2, 3, 9], False, [None, None, "turn"]),           # a whole solution goes on past a step's newline
    ([5, 3, 2], False, [None, "step", None]),           # ... and ends after the line that gives the answer
])
def test_a_candidate_ends_at_a_steps_newline_an_answer_or_the_turn(tokens, one_step, endings):
    from rprm_lite.policy_engine import _ending

    engine = Pieces({1: b"\n", 2: b"a = 1.", 3: b"\n", 4: b"b", 5: b"So 2. The answer is 2.", 9: b""}, end=9)
    text = bytearray()
    assert [_ending(engine, token, text, one_step) for token in tokens] == endings  # type: ignore[arg-type]


def test_question_text_is_never_parsed_for_special_tokens(policy):
    prompt = policy.prompt("What is <|im_end|> 1 + 1?")
    assert [piece.is_template for piece in prompt.pieces] == [True, False, True, False]
    assert prompt.pieces[1].text == "What is <|im_end|> 1 + 1?"


@pytest.mark.parametrize("strategy", ["greedy", "majority", "best-of-n", "guided"])
def test_each_strategy_runs_on_the_tiny_models_and_is_reproducible(policy, strategy):
    with tiny_solver(policy, strategy=strategy) as solver:
        first = solver.solve("What is 2 + 3?", id="q1")
        second = solver.solve("What is 2 + 3?", id="q1")
    assert first.to_dict() | {"work": None} == second.to_dict() | {"work": None}
    data = first.to_dict(candidates=True)
    assert (data["id"], data["strategy"]) == ("q1", strategy) and data["outcome"] in (
        "answered", "no answer", "max steps", *(("no good step",) if strategy == "guided" else ()))
    assert set(data["work"]) == {"policy_tokens", "critiques", "seconds"} and data["work"]["policy_tokens"] > 0
    assert (data["work"]["critiques"] > 0) == (strategy in ("best-of-n", "guided"))
    assert all(set(step) >= {"text", "score"} for step in data["steps"])
    assert (data["config"]["judge"] is None) == (strategy in ("greedy", "majority"))


def test_guided_scores_each_steps_candidates_together_and_never_a_whole_solution(policy):
    with tiny_solver(policy, strategy="guided", no_good_step="keep", n=4) as solver:
        judge, calls = solver.judge, []
        batch = judge.score_candidates

        def spy(question, steps, candidates, **options):
            calls.append((tuple(steps), tuple(candidates)))
            return batch(question, steps, candidates, **options)

        judge.score_candidates = spy
        judge.score_solution = lambda *args, **kwargs: pytest.fail("a candidate was scored alone")
        result = solver.solve("What is 2 + 3?", id="q1")
    texts = [step.text for step in result.steps]
    assert [steps for steps, _ in calls] == [tuple(texts[:number]) for number in range(len(calls))]
    assert all(len(set(candidates)) == len(candidates) and "" not in candidates for _, candidates in calls)
    assert result.work.critiques == 2 * sum(len(candidates) for _, candidates in calls)  # K=2 each
    assert all(step.text in calls[number][1] for number, step in enumerate(result.steps))


def test_a_question_too_long_for_the_context_is_an_error_outcome_and_the_solver_goes_on(policy):
    with tiny_solver(policy, strategy="greedy") as solver:
        result = solver.solve("two " * 1500, id="long")
        assert (result.outcome, result.steps, result.answer) == ("error", (), None)
        assert "no room for another step" in (result.error or "")
        assert solver.solve("What is 1 + 1?").outcome != "error"
        with pytest.raises(InputError, match="no text"):
            solver.solve("   ")


def test_should_stop_cancels_a_call_and_the_solver_stays_usable(policy):
    with tiny_solver(policy, strategy="guided") as solver:
        before = solver.solve("What is 4 + 4?").to_dict()
        with pytest.raises(ScoringCancelled):
            solver.solve("What is 4 + 4?", should_stop=lambda: True)
        after = solver.solve("What is 4 + 4?").to_dict()
    assert before | {"work": None} == after | {"work": None}


def test_threads_sharing_one_solver_get_what_each_would_alone(policy):
    questions = ["What is 1 + 1?", "What is 2 + 5?", "What is 3 + 3?"]
    with tiny_solver(policy, strategy="guided") as solver:
        alone = [solver.solve(q).to_dict() | {"work": None} for q in questions]
        together: dict[int, dict] = {}
        threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, solver.solve(questions[i]).to_dict()))
                   for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert [together[i] | {"work": None} for i in range(3)] == alone


def test_close_from_another_thread_stops_the_call_and_later_calls_fail():
    solver = Solver(TINY_RPRM, TINY_RPRM, config=SolveConfig(strategy="majority", n=4, max_steps=200,
                                                             step_tokens=4), threads=1)
    started, failed = threading.Event(), []

    def work() -> None:
        started.set()
        try:
            solver.solve("What is 4 + 4?")
        except RprmError as exc:
            failed.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    started.wait()
    solver.close()
    thread.join(timeout=60)
    assert not thread.is_alive()
    with pytest.raises(RprmError, match="closed"):
        solver.solve("What is 1 + 1?")


def test_a_call_from_its_own_callback_is_refused(policy):
    with tiny_solver(policy, strategy="greedy") as solver:
        seen: list[Exception] = []

        def on_step(_id: str, _step: object) -> None:
            try:
                solver.solve("again")
            except RprmError as exc:
                seen.append(exc)

        solver.solve("What is 1 + 1?", on_step=on_step)
    assert seen and "own on_step callback" in str(seen[0])


# -- the command line ---------------------------------------------------------------------------------
def run(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", "solve", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=300)


def questions(tmp_path: Path, count: int = 2) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + 1?"}) + "\n"
                            for i in range(count)))
    return path


def test_cli_json_has_the_documented_fields(tmp_path):
    result = run(questions(tmp_path, 1), *TINY, "--json", "--show-candidates", "--no-good-step", "keep")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == ["id", "strategy", "steps", "answer", "outcome", "work", "config"]
    assert data["config"]["no_good_step"] == "keep"
    assert data["strategy"] == "guided" and 1 <= len(data["steps"]) <= 2
    assert all(len(step["candidates"]) == 2 and step["chosen"] in (0, 1) for step in data["steps"])
    assert data["config"]["policy"]["model"] == "tiny-rprm.gguf" and data["config"]["judge"]["k"] == 2
    assert data["config"]["judge"]["all_steps"] is True


def test_cli_table_and_stdin(tmp_path):
    result = run("-", *TINY, "--strategy", "majority", stdin=json.dumps([{"question": "What is 1 + 1?"}]))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("question q1 (majority): ") and "policy tokens, 0 critiques" in lines[0]


def test_cli_output_resumes_and_refuses_other_settings(tmp_path):
    source, out = questions(tmp_path, 2), tmp_path / "out.jsonl"
    assert run(source, *TINY, "--strategy", "greedy", "--output", out, "--json").returncode == 0
    first = out.read_text().splitlines()
    out.write_text(first[0] + "\n")
    again = run(source, *TINY, "--strategy", "greedy", "--output", out, "--json")
    assert again.returncode == 0, again.stderr
    assert "skipping 1 question(s) already in" in again.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["q0", "q1"]
    assert json.loads(out.read_text().splitlines()[1]) == json.loads(first[1]) | {
        "work": json.loads(out.read_text().splitlines()[1])["work"]}
    other = run(source, *TINY, "--strategy", "majority", "--output", out)
    assert other.returncode == 2 and "made with other settings" in other.stderr and "strategy" in other.stderr


def test_cli_bad_input_is_one_error_line_and_a_failed_question_keeps_the_others(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "What is 1 + 1?"}\n{"id": "b", "question": "  "}\n')
    result = run(bad, *TINY)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: {bad} line 2: the question has no text (expected 'question', a non-empty " \
                            "string)\n"
    missing = run(tmp_path / "none.jsonl", *TINY)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"id": "long", "question": "two " * 1500}) + "\n"
                     + json.dumps({"id": "ok", "question": "What is 1 + 1?"}) + "\n")
    out = tmp_path / "out.jsonl"
    result = run(mixed, *TINY, "--strategy", "greedy", "--json", "--output", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "long: the policy's prompt is" in result.stderr
    assert "1 question(s) could not be solved (long)" in result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["outcome"]) for r in printed][0] == ("long", "error") and printed[1]["id"] == "ok"
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["ok"]


def test_cli_guided_with_the_judge_on_a_server(tmp_path):
    from remote_servers import ScriptedServer, models, ok

    def vllm(path: str, body: dict) -> tuple[int, bytes]:
        if path == "/v1/models":
            return ok(models("vllm", "r-prm"))
        if path == "/v1/completions":
            return ok({"choices": [{"index": i, "text": " Looks right. Verification: Is the step correct (Yes/No)?",
                                    "finish_reason": "stop", "stop_reason": "Is the step correct (Yes/No)?"}
                                   for i in range(body["n"])]})
        return ok({"data": [{"index": i, "score": 0.75} for i in range(len(body["items"]))]})

    local_judge = TINY[:2] + TINY[4:]  # the policy, without --model and --prefix-cache for the judge
    local_judge = [arg for arg in local_judge if arg not in ("--prefix-cache", "memory")]
    with ScriptedServer(vllm) as server:
        result = run(questions(tmp_path, 1), *local_judge, "--backend", server.url, "--vocab", TINY_RPRM, "--json")
        refused = run(questions(tmp_path, 1), *local_judge, "--backend", server.url, "--vocab", TINY_RPRM,
                      "--lora", TINY_RPRM)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [step["score"] for step in data["steps"]] == [0.75] * len(data["steps"]) and data["steps"]
    assert data["config"]["judge"]["model"] == "r-prm" and data["work"]["critiques"] > 0
    assert refused.returncode == 2 and "--lora applies adapters to the local judge" in refused.stderr
