"""The remote backend against llama.cpp's own `llama-server`: a real token-id server.

`make llama-server` builds it from the llama.cpp source that the installed llama-cpp-python vendors (the
same code as the local engine, CPU, GGML_NATIVE as llama-cpp-python's default build); it serves the
test models here on one thread on loopback, and dies with the test process. The llama-server dialect
sends the local engine's token ids (no re-tokenization) and reads P(Yes) from `n_probs` pre-sampling
logprobs by token id, so greedy K=1 through it equals local scoring: the same critiques and verdicts,
P(Yes) within 1e-3. The tests skip, naming the make target, where the binary is not built.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from remote_servers import llama_server, llama_server_binary

from rprm_lite.config import ScoreConfig
from rprm_lite.remote import RemoteConfig, RemoteError, RemoteScorer
from rprm_lite.scoring import Scorer
from rprm_lite.solution import Solution, read_solutions
from shared_paths import TINY_RPRM

pytestmark = pytest.mark.skipif(not llama_server_binary().is_file(),
                                reason=f"needs llama.cpp's llama-server at {llama_server_binary()}: run "
                                       "`make llama-server` (builds it once from llama-cpp-python's source)")

QWEN2_VOCAB_SIZE = 151936
EXAMPLES = Path(__file__).parents[1] / "examples"
GREEDY = ScoreConfig(k=1, temperature=0, max_tokens=5, all_steps=True)
SOLUTIONS = [
    Solution.create("Tom has 3 apples and buys 4 more. How many apples does he have?",
                    ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7."], id="tom"),
    Solution.create("What is 9 - 2?", ["9 - 2 = 7."], id="nine"),
]


@pytest.fixture(scope="module")
def tiny_server(tiny_gguf):
    with llama_server(tiny_gguf) as url:
        yield url


def assert_same(far, near, solutions):
    for solution in solutions:
        a, b = far.score_solution(solution), near.score_solution(solution)
        assert [s.critiques for s in a.steps] == [s.critiques for s in b.steps]
        assert [s.verdict for s in a.steps] == [s.verdict for s in b.steps]
        assert [s.fallbacks for s in a.steps] == [s.fallbacks for s in b.steps]
        assert [s.generated_tokens for s in a.steps] == [s.generated_tokens for s in b.steps]
        for step_a, step_b in zip(a.steps, b.steps, strict=True):
            assert step_a.p_yes == pytest.approx(step_b.p_yes, abs=1e-3)
            assert step_a.approximate == 0 and step_a.unread == 0 and step_a.prompt_tokens == step_b.prompt_tokens
        assert a.first_error_step == b.first_error_step
    return a


def test_greedy_k1_through_llama_server_equals_the_local_engine(tiny_gguf, tiny_server):
    exact = RemoteConfig(urls=(tiny_server + "/v1",), top_logprobs=QWEN2_VOCAB_SIZE)  # random weights: ask all
    with RemoteScorer(tiny_gguf, GREEDY, remote=exact) as far, Scorer(tiny_gguf, GREEDY) as near:
        assert far.servers[0].dialect.name == "llama-server"  # detected from /v1/models (owned_by llamacpp)
        last = assert_same(far, near, SOLUTIONS[1:])  # a 152k-entry answer per verdict: one short solution
    config = last.config
    assert (config["server"], config["server_kind"], config["server_model"]) == (
        [tiny_server], ["llama-server"], str(tiny_gguf))
    assert config["p_yes_method"].startswith("llama-server /completion n_probs")


def test_verdicts_outside_the_top_logprobs_are_not_read(tiny_gguf, tiny_server):
    """The tiny model's random weights leave " Yes" and " No" out of its top 3 tokens: a real server's answer
    that cannot be read is a RemoteError by default, an "unread" step for the score command, never 0.5."""
    narrow = RemoteConfig(urls=(tiny_server,), top_logprobs=3)
    with RemoteScorer(tiny_gguf, GREEDY, remote=narrow) as far:
        with pytest.raises(RemoteError, match=r"solution nine, step\(s\) 1: .*neither ' Yes' nor ' No'"):
            far.score_solution(SOLUTIONS[1])
    with RemoteScorer(tiny_gguf, GREEDY, remote=narrow, mark_unread=True) as far:
        step = far.score_solution(SOLUTIONS[1]).steps[0]
    assert (step.verdict, step.score, step.p_yes, step.unread) == ("unread", None, (None,), 1)


def test_the_demo_model_through_llama_server_equals_the_local_engine(demo_server):
    """The bundled demo R-PRM writes real critiques: they stop on the verdict phrase (llama-server's stop
    string) or at its end token (which llama-server lists and the local engine never decodes), and P(Yes)
    comes from the top 20 as the local engine reads it from the logits."""
    model = TINY_RPRM
    config = ScoreConfig(k=1, temperature=0, max_tokens=160, all_steps=True)
    with RemoteScorer(model, config, remote=RemoteConfig(urls=(demo_server,))) as far, Scorer(model, config) as near:
        assert_same(far, near, read_solutions(str(EXAMPLES / "solutions.jsonl"))[:2])


@pytest.fixture(scope="module")
def demo_server():
    with llama_server(TINY_RPRM) as url:
        yield url


def test_sampled_critiques_through_the_cli_resume_with_the_base_url_written_either_way(demo_server, tmp_path):
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "rprm_lite.cli", "score", str(EXAMPLES / "solution.json"), "--vocab",
            str(TINY_RPRM), "--k", "2", "--max-tokens", "16", "--temperature", "0.9", "--all-steps",
            "--json", "--output", str(out), "--backend"]
    done = subprocess.run([*args, f"llama-server+{demo_server}/v1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert all(len(step["seeds"]) == 2 and step["unread"] == 0 and all(0 < p < 1 for p in step["p_yes"])
               for step in result["steps"])
    assert (result["config"]["server"], result["config"]["server_kind"]) == ([demo_server], ["llama-server"])
    again = subprocess.run([*args, demo_server], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing left to score" in again.stderr, again.stderr
