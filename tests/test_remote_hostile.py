"""The remote backend against hostile or careless OpenAI-compatible servers (a scripted stdlib server on
loopback): answers it cannot read, answers that are wrong but look fine, redirects, a server that drips
one byte at a time, resuming with another server, and the base URL written with `/v1`. Every case is
bounded in time: a client that does not give up fails its test instead of hanging it."""

import json
import subprocess
import sys
import time

import pytest
from remote_servers import ScriptedServer, drip, endless, models, ok

from rprm_lite.config import ScoreConfig
from rprm_lite.prompt import VERDICT_PHRASE
from rprm_lite.remote import RemoteConfig, RemoteError, RemoteScorer
from rprm_lite.remote.settings import parse_backend
from rprm_lite.solution import Solution

CONFIG = ScoreConfig(k=2, temperature=0.95, max_tokens=8, seed=1, all_steps=True)
SOLUTION = Solution.create("What is 3 + 4?", ["3 + 4 = 7.", "The answer is 7."], id="add")
CRITIQUE = " The step adds 3 and 4, which is 7. Is the step correct (Yes/No)?"
YES, NO = 7414, 2308  # the tiny model's " Yes" and " No"


def fast(url, **changes):
    return RemoteConfig(urls=(url,), **{"tries": 2, "backoff": 0.01, **changes})


def openai(tops, *, text=" Yes"):
    """A plain OpenAI server: critiques without the phrase, and `tops` as the verdict's top logprobs."""
    def reply(path, body):
        if path == "/v1/models":
            return ok(models("someone"))
        if body["max_tokens"] == 1:
            return ok({"choices": [{"index": i, "text": text, "logprobs": {"top_logprobs": [tops]}}
                                   for i in range(len(body["prompt"]))]})
        return ok({"choices": [{"index": i, "text": " It is 7.", "finish_reason": "length"} for i in range(body["n"])]})
    return reply


def raw_verdicts(raw):
    """A plain OpenAI server whose verdict answer is `raw` bytes (or a streamed body)."""
    def reply(path, body):
        if path == "/v1/models" or body["max_tokens"] != 1:
            return openai({" Yes": -0.1, " No": -2.0})(path, body)
        return 200, raw
    return reply


def llama_server(tops):
    """llama-server's /completion: critiques stop on the phrase; `tops` as the verdict's top logprobs by id."""
    def reply(path, body):
        if path == "/v1/models":
            return ok(models("llamacpp"))
        if body["n_predict"] == 1:
            return ok({"content": " Yes", "completion_probabilities": [{"top_logprobs": tops}]})
        return ok({"content": CRITIQUE, "stop_type": "word", "tokens_predicted": 12})
    return reply


def vllm(path, body):
    if path == "/v1/models":
        return ok(models("vllm"))
    if path == "/v1/completions":
        return ok({"choices": [{"index": i, "text": CRITIQUE, "stop_reason": VERDICT_PHRASE}
                               for i in range(body["n"])]})
    return ok({"data": [{"index": i, "score": 0.75} for i in range(len(body["items"]))]})


def score_on(tiny_gguf, reply, mark_unread=False, **changes):
    with ScriptedServer(reply) as server, RemoteScorer(tiny_gguf, CONFIG, remote=fast(server.url, **changes),
                                                       mark_unread=mark_unread) as scorer:
        return scorer.score_solution(SOLUTION)


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"id": "add", "question": "What is 3 + 4?", "steps": ["3 + 4 = 7."]}))
    return path


# -- answers the client cannot read: a clean RemoteError, never a traceback ------------------------------
def two_choices(logprobs: bytes) -> bytes:
    """A verdict answer of two choices (K=2) whose top logprobs are the raw JSON text `logprobs`."""
    choice = b'{"text": " Yes", "logprobs": {"top_logprobs": [' + logprobs + b"]}}"
    return b'{"choices": [' + choice + b", " + choice + b"]}"


DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_INT = two_choices(b'{" Yes": -' + b"9" * 5000 + b', " No": -1}')
BIG_INT = two_choices(b'{" Yes": -' + b"9" * 400 + b', " No": -1}')
HUGE_FLOAT = two_choices(b'{" Yes": -1e400, " No": -1}')
NAN = two_choices(b'{" Yes": NaN, " No": -1}')
BAD_UTF8 = two_choices(b'{" Yes": -1, "\xff\xfe": -2}')
SURROGATE = b'{"choices": [{"text": "\\ud800", "finish_reason": "length"}, {"text": "a", "finish_reason": "length"}]}'


@pytest.mark.parametrize("raw", [DEEP, HUGE_INT, BIG_INT, HUGE_FLOAT, NAN, BAD_UTF8],
                         ids=["deep", "huge-int", "big-int", "huge-float", "nan", "bad-utf8"])
def test_an_answer_that_cannot_be_read_is_a_clean_error(tiny_gguf, raw):
    with pytest.raises(RemoteError, match=r"/v1/completions: "):
        score_on(tiny_gguf, raw_verdicts(raw))


def test_a_lone_surrogate_in_a_critique_is_a_clean_error(tiny_gguf):
    def reply(path, body):
        return ok(models("someone")) if path == "/v1/models" else (200, SURROGATE)

    with pytest.raises(RemoteError, match="lone surrogate"):
        score_on(tiny_gguf, reply)


def test_an_endless_answer_is_cut_at_the_byte_cap_quickly(tiny_gguf):
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"more than \d+ MiB"):
        score_on(tiny_gguf, lambda path, body: ok(models("vllm")) if path == "/v1/models" else (200, endless()))
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:port",
                                 "http://127.0.0.1:80:80", "http://user@127.0.0.1:8000", "http://127.0.0.1:8000?x=1",
                                 "http://127.0.0.1:8000#v1", "http://:8000", "ftp://127.0.0.1", "http://127.0.0.1:0"])
def test_a_malformed_backend_url_is_one_error_line(tiny_gguf, source, url):
    done = run_cli("score", source, "--backend", url, "--vocab", tiny_gguf)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --backend") and done.stderr.count("\n") == 1, done.stderr


# -- answers that are wrong but look fine ----------------------------------------------------------------
@pytest.mark.parametrize("tops", [{" Yes": 2.0, " No": -1.0}, {" Yes": -0.5, " No": -1.0, " The": 0.5},
                                  {" Yes": True, " No": -1.0}, {" Yes": "-0.5", " No": -1.0}],
                         ids=["positive-yes", "positive-other", "bool", "string"])
def test_logprobs_that_are_not_log_probabilities_are_refused(tiny_gguf, tops):
    with pytest.raises(RemoteError, match="logprob"):
        score_on(tiny_gguf, openai(tops))


def test_positive_logprobs_by_token_id_are_refused(tiny_gguf):
    tops = [{"id": YES, "logprob": 0.7}, {"id": NO, "logprob": -1.0}]
    with pytest.raises(RemoteError, match="logprob"):
        score_on(tiny_gguf, llama_server(tops))


@pytest.mark.parametrize("reply", [openai({" The": -0.1, " It": -2.5}),
                                   llama_server([{"id": 1, "logprob": -0.1}, {"id": 2, "logprob": -2.5}])],
                         ids=["openai", "llama-server"])
def test_a_verdict_without_yes_or_no_is_not_read_never_a_half(tiny_gguf, reply):
    with pytest.raises(RemoteError, match=r"solution add, step\(s\) 1, 2: .*neither ' Yes' nor ' No'"):
        score_on(tiny_gguf, reply)  # the library's default: no made-up number reaches a benchmark or rerank
    result = score_on(tiny_gguf, reply, mark_unread=True)
    for step in result.steps:
        assert (step.verdict, step.score, step.p_yes, step.unread) == ("unread", None, (None, None), 2)
    assert result.solution_score is None and result.first_error_step is None


def test_an_unread_step_gives_a_non_zero_exit_and_stays_out_of_the_results_file(tiny_gguf, source, tmp_path):
    out = tmp_path / "out.jsonl"
    with ScriptedServer(openai({" The": -0.1, " It": -2.5})) as server:
        done = run_cli("score", source, "--backend", server.url, "--vocab", tiny_gguf, "--k", "1", "--json",
                       "--max-tokens", "8", "--output", out)
    assert done.returncode == 5 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: 1 step(s) of 1 solution(s) could not be read") and "' Yes'" in done.stderr
    step = json.loads(done.stdout)["steps"][0]
    assert (step["verdict"], step["score"], step["p_yes"], step["unread"]) == ("unread", None, [None], 1)
    assert not out.exists() or out.read_text() == ""  # a rerun with a fixed server scores it again


def test_one_missing_verdict_token_is_still_read_as_a_bound(tiny_gguf):
    step = score_on(tiny_gguf, openai({" Yes": -0.5, " Maybe": -3.0})).steps[0]
    assert step.verdict == "correct" and step.approximate == 2 and step.unread == 0


def test_a_large_error_page_is_retried_like_any_other_failure(tiny_gguf):
    """A proxy's 502 page over the error cap (64 KiB, declared in Content-Length) is a failure to retry, not an
    answer to refuse."""
    failed = []

    def flaky(path, body):
        if path != "/v1/models" and not failed:
            failed.append(path)
            return 502, b"<html>" + b"x" * 200_000 + b"</html>"
        return vllm(path, body)

    step = score_on(tiny_gguf, flaky).steps[0]
    assert failed and step.score == 0.75


# -- redirects: never followed, the key never leaves the origin ------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_the_key_stays_home(tiny_gguf, monkeypatch, status):
    monkeypatch.setenv("RPRM_TEST_KEY", "sk-secret")
    with ScriptedServer(vllm) as elsewhere:
        def moved(path, body):
            if path == "/v1/models":
                return ok(models("vllm"))
            return status, b"{}", {"Location": elsewhere.url + path}

        with pytest.raises(RemoteError, match=rf"HTTP {status} .*redirect.*not followed"):
            score_on(tiny_gguf, moved, api_key_env="RPRM_TEST_KEY")
        assert elsewhere.requests == []


def test_a_redirect_of_the_model_list_is_not_followed(tiny_gguf):
    with ScriptedServer(vllm) as elsewhere:
        with pytest.raises(RemoteError, match=r"/v1/models: HTTP 302 .*not followed"):
            score_on(tiny_gguf, lambda path, body: (302, b"", {"Location": elsewhere.url + "/v1/models"}))
        assert elsewhere.requests == []


# -- a server that drips: a total deadline per request, not a per-read timeout ---------------------------
HEADERS = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"


@pytest.mark.parametrize("raw", [HEADERS + b'{"choices": [' + b" " * 400, b"HTTP/1.0 200 OK\r\n" + b"X: y\r\n" * 200],
                         ids=["body", "headers"])
def test_a_dripping_server_fails_in_bounded_time(tiny_gguf, raw):
    def reply(path, body):
        return ok(models("vllm")) if path == "/v1/models" else (200, drip(raw, 0.05))

    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"no answer within 1 s \(gave up after 2 tries\)"):
        score_on(tiny_gguf, reply, timeout=1.0)
    assert time.monotonic() - started < 6  # two tries of one second, and the start


# -- resume: results of another server kind, URL or model are refused -------------------------------------
def resume_with(tiny_gguf, source, out, backend, *more):
    return run_cli("score", source, "--backend", backend, "--vocab", tiny_gguf, "--k", "2", "--max-tokens", "8",
                   "--output", out, *more)


def test_resume_refuses_results_of_another_server_url_kind_or_model(tiny_gguf, source, tmp_path):
    out = tmp_path / "out.jsonl"
    with ScriptedServer(vllm) as first, ScriptedServer(vllm) as second:
        assert resume_with(tiny_gguf, source, out, first.url).returncode == 0
        assert resume_with(tiny_gguf, source, out, first.url + "/v1").returncode == 0  # the same server resumes
        for key, backend, more in [("server", second.url, ()), ("server_kind", "openai+" + first.url, ()),
                                   ("server_model", first.url, ("--server-model", "another-model"))]:
            again = resume_with(tiny_gguf, source, out, backend, *more)
            assert again.returncode == 2 and "holds results made with other settings" in again.stderr, again.stderr
            assert f"{key}: " in again.stderr
    assert len(out.read_text().splitlines()) == 1


# -- the base URL as OpenAI-style clients write it -------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_the_base_url_may_end_in_v1(tiny_gguf, suffix):
    with ScriptedServer(vllm) as server:
        with RemoteScorer(tiny_gguf, CONFIG, remote=fast(server.url + suffix)) as scorer:
            assert scorer.score_solution(SOLUTION).steps[0].p_yes == (0.75, 0.75)
            assert scorer.run_settings()["server"] == [server.url]
        assert {path for path, _ in server.requests} == {"/v1/models", "/v1/completions", "/generative_scoring"}


def test_parse_backend_keeps_a_path_prefix_but_not_v1():
    assert parse_backend("vllm+http://h:1/proxy/v1/") == (("http://h:1/proxy",), ("vllm",))
    assert parse_backend("http://[::1]:8000/v1") == (("http://[::1]:8000",), ("auto",))
