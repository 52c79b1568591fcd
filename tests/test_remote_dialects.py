"""The requests built for each server kind, and the parsing of answers recorded in the servers' documented
formats (vLLM, SGLang and llama-server cannot run here; see rprm_lite/remote/dialects.py for the sources).
No model and no network: literal requests and literal answers."""

import math

import pytest

from rprm_lite.errors import InputError
from rprm_lite.prompt import VERDICT_PHRASE
from rprm_lite.remote.dialects import (
    VLLM,
    CritiqueAsk,
    Dialect,
    LlamaCppPython,
    LlamaServer,
    SGLang,
    VerdictContext,
    detect,
    two_way,
)
from rprm_lite.remote.settings import RemoteConfig, parse_backend, remote_config
from rprm_lite.remote.transport import RemoteError

ASK = CritiqueAsk(prompt_ids=(1, 2, 3), prompt_text="Q?", seeds=(11, 12), temperature=0.95, top_p=0.9,
                  max_tokens=64, model="r-prm")
CONTEXTS = [VerdictContext((1, 2, 3, 40, 41), "Q? a"), VerdictContext((1, 2, 3, 50), "Q? b")]
YES, NO = 7414, 2308


def test_vllm_sends_n_token_ids_every_sampler_setting_and_the_stop_string_kept():
    (path, body), = VLLM().critique_requests(ASK)
    assert path == "/v1/completions"
    assert body == {"model": "r-prm", "prompt": [1, 2, 3], "n": 2, "seed": 11, "temperature": 0.95, "top_p": 0.9,
                    "max_tokens": 64, "presence_penalty": 0.0, "frequency_penalty": 0.0, "stream": False,
                    "stop": [VERDICT_PHRASE], "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0,
                    "include_stop_str_in_output": True, "return_token_ids": True}


def test_vllm_parses_choices_with_token_ids_and_generative_scores():
    answer = {"id": "cmpl-1", "object": "text_completion", "model": "r-prm", "choices": [
        {"index": 1, "text": " fine. " + VERDICT_PHRASE, "finish_reason": "stop", "stop_reason": VERDICT_PHRASE,
         "token_ids": [5, 6, 7]},
        {"index": 0, "text": " so", "finish_reason": "length", "stop_reason": None, "token_ids": [9]}]}
    first, second = VLLM().parse_critiques(answer, 2)
    assert (first.text, first.stopped_on_phrase, first.token_ids, first.tokens) == (" so", False, (9,), 1)
    assert second.stopped_on_phrase and second.token_ids == (5, 6, 7)
    (path, body), = VLLM().verdict_requests((1, 2, 3), CONTEXTS, model="r-prm", yes=YES, no=NO)
    assert (path, body) == ("/generative_scoring", {"model": "r-prm", "query": [1, 2, 3], "items": [[40, 41], [50]],
                                                    "label_token_ids": [YES, NO], "apply_softmax": True})
    recorded = {"id": "generative-scoring-1", "object": "list", "model": "r-prm", "data": [
        {"index": 1, "object": "score", "score": 0.125}, {"index": 0, "object": "score", "score": 0.875}],
        "usage": {"prompt_tokens": 9, "total_tokens": 9}}
    assert [v.p_yes for v in VLLM().parse_verdicts(recorded, 2, yes=YES, no=NO)] == [0.875, 0.125]
    with pytest.raises(RemoteError, match=r"expected a probability in data\[\].score, got 1.5"):
        VLLM().parse_verdicts({"data": [{"index": 0, "score": 1.5}]}, 1, yes=YES, no=NO)


def test_sglang_keeps_the_stop_string_and_reads_v1_score_pairs():
    (_, body), = SGLang().critique_requests(ASK)
    assert body["no_stop_trim"] is True and body["stop"] == [VERDICT_PHRASE] and body["top_k"] == -1
    choice = {"index": 0, "text": " ok " + VERDICT_PHRASE, "finish_reason": "stop", "matched_stop": VERDICT_PHRASE}
    assert SGLang().parse_critiques({"choices": [choice]}, 1)[0].stopped_on_phrase
    (path, body), = SGLang().verdict_requests((1, 2, 3), CONTEXTS, model="r-prm", yes=YES, no=NO)
    assert path == "/v1/score" and body["label_token_ids"] == [YES, NO] and body["apply_softmax"] is True
    assert body["query"] == [1, 2, 3] and body["items"] == [[40, 41], [50]]
    recorded = {"scores": [[0.7, 0.3], [0.2, 0.8]], "model": "r-prm", "object": "scoring",
                "usage": {"prompt_tokens": 11, "completion_tokens": 0, "total_tokens": 11}}
    assert [v.p_yes for v in SGLang().parse_verdicts(recorded, 2, yes=YES, no=NO)] == [0.7, 0.2]
    with pytest.raises(RemoteError, match="expected 2 entries in 'scores', got 1"):
        SGLang().parse_verdicts({"scores": [[0.7, 0.3]]}, 2, yes=YES, no=NO)


def test_llama_server_turns_off_its_default_samplers_and_sends_one_request_per_seed():
    requests = LlamaServer().critique_requests(ASK)
    assert [path for path, _ in requests] == ["/completion", "/completion"]
    assert [body["seed"] for _, body in requests] == [11, 12]
    body = requests[0][1]
    assert body == {"prompt": [1, 2, 3], "n_predict": 64, "seed": 11, "temperature": 0.95, "top_p": 0.9, "top_k": 0,
                    "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0, "presence_penalty": 0.0,
                    "frequency_penalty": 0.0, "dry_multiplier": 0.0, "xtc_probability": 0.0, "mirostat": 0,
                    "samplers": ["temperature", "top_p"], "cache_prompt": True, "stream": False,
                    "stop": [VERDICT_PHRASE], "return_tokens": True}


def test_llama_server_answers_word_stop_and_pre_sampling_probabilities_by_id():
    recorded = {"index": 0, "content": " 3 + 4 is 7. ", "tokens": [220, 18, 488], "id_slot": 0, "stop": True,
                "model": "r-prm", "tokens_predicted": 12, "tokens_evaluated": 600, "stop_type": "word",
                "stopping_word": VERDICT_PHRASE, "tokens_cached": 611, "truncated": False}
    sampled, = LlamaServer().parse_critiques(recorded, 1)
    assert sampled.stopped_on_phrase and sampled.tokens == 12 and sampled.text == " 3 + 4 is 7. "
    requests = LlamaServer(top_logprobs=20).verdict_requests((1, 2, 3), CONTEXTS, model="r-prm", yes=YES, no=NO)
    assert len(requests) == 2 and requests[0][1]["prompt"] == [1, 2, 3, 40, 41]
    body = requests[0][1]
    assert (body["n_predict"], body["n_probs"], body["post_sampling_probs"], body["temperature"]) == (1, 20, False, 0.0)
    answer = {"content": " Yes", "stop_type": "limit", "completion_probabilities": [
        {"id": YES, "token": " Yes", "bytes": [32, 89, 101, 115], "logprob": -0.2, "top_logprobs": [
            {"id": YES, "token": " Yes", "bytes": [32, 89, 101, 115], "logprob": -0.2},
            {"id": NO, "token": " No", "bytes": [32, 78, 111], "logprob": -1.8},
            {"id": 2753, "token": " yes", "bytes": [32, 121, 101, 115], "logprob": -4.0}]}]}
    verdict, = LlamaServer().parse_verdicts(answer, 1, yes=YES, no=NO)
    assert verdict.p_yes == pytest.approx(1 / (1 + math.exp(-1.6))) and not verdict.approximate
    assert verdict.shown == " Yes"
    post_sampling = {"completion_probabilities": [{"id": YES, "prob": 0.9, "top_probs": [{"id": YES, "prob": 0.9}]}]}
    with pytest.raises(RemoteError, match="post_sampling_probs"):
        LlamaServer().parse_verdicts(post_sampling, 1, yes=YES, no=NO)


def test_plain_openai_batches_verdict_prompts_and_reads_text_or_token_id_keys():
    critique, = Dialect().critique_requests(ASK)
    assert "stop" not in critique[1] and critique[1]["n"] == 2
    (path, body), = Dialect(top_logprobs=5).verdict_requests((1, 2, 3), CONTEXTS, model="m", yes=YES, no=NO)
    assert path == "/v1/completions" and body["prompt"] == [[1, 2, 3, 40, 41], [1, 2, 3, 50]]
    assert (body["max_tokens"], body["logprobs"], body["temperature"]) == (1, 5, 0.0)
    answer = {"choices": [
        {"index": 0, "text": " No", "logprobs": {"tokens": [" No"], "token_logprobs": [-0.1],
                                                 "top_logprobs": [{" No": -0.1, " Yes": -2.5}]}},
        {"index": 1, "text": " Yes", "logprobs": {"top_logprobs": [{f"token_id:{YES}": -0.3,
                                                                    f"token_id:{NO}": -1.4}]}}]}
    first, second = Dialect().parse_verdicts(answer, 2, yes=YES, no=NO)
    assert first.p_yes == pytest.approx(two_way(-2.5, -0.1)) and not first.approximate
    assert second.p_yes == pytest.approx(two_way(-0.3, -1.4)) and second.shown == " Yes"
    neither = {"choices": [{"index": 0, "text": "x", "logprobs": {"top_logprobs": [{"x": -0.1, "y": -3.0}]}}]}
    (only,) = Dialect().parse_verdicts(neither, 1, yes=YES, no=NO)
    assert only.p_yes is None and not only.approximate  # both below the listed ones: not read, never 0.5


def test_llama_cpp_python_sends_text_without_n_or_stop_and_counts_tokens_from_usage():
    requests = LlamaCppPython().critique_requests(ASK)
    assert len(requests) == 2 and requests[0][1]["prompt"] == "Q?" and requests[0][1]["n"] == 1
    assert "stop" not in requests[0][1] and requests[1][1]["seed"] == 12
    assert (requests[0][1]["top_k"], requests[0][1]["min_p"], requests[0][1]["repeat_penalty"]) == (0, 0.0, 1.0)
    answer = {"choices": [{"index": 0, "text": " a b", "finish_reason": "length", "logprobs": None}],
              "usage": {"prompt_tokens": 500, "completion_tokens": 4, "total_tokens": 504}}
    assert LlamaCppPython().parse_critiques(answer, 1)[0].tokens == 4
    verdicts = LlamaCppPython().verdict_requests((1, 2, 3), CONTEXTS, model="m", yes=YES, no=NO)
    assert [body["prompt"] for _, body in verdicts] == ["Q? a", "Q? b"]


@pytest.mark.parametrize("owned_by, kind", [("vllm", "vllm"), ("sglang", "sglang"), ("llamacpp", "llama-server"),
                                            ("me", "llama-cpp-python"), ("openai", "openai"), ("", "openai")])
def test_the_server_kind_is_read_from_v1_models(owned_by, kind):
    assert detect({"object": "list", "data": [{"id": "r-prm-7b", "object": "model", "owned_by": owned_by}]}) == (
        kind, "r-prm-7b")
    assert detect({"data": []}) == ("openai", None)


def test_backend_values():
    assert parse_backend("local") is None and parse_backend(None) is None
    assert parse_backend("http://a:8000,vllm+https://b:9000/") == (("http://a:8000", "https://b:9000"),
                                                                   ("auto", "vllm"))
    with pytest.raises(InputError, match="expected 'local' or http"):
        parse_backend("gpu1:8000")
    with pytest.raises(InputError, match="unknown server kind 'tgi'"):
        remote_config("tgi+http://a:1")
    with pytest.raises(InputError, match="--concurrency must be between 1 and 1024, got 0"):
        remote_config("http://a:1", concurrency=0)
    assert remote_config("http://a:1", concurrency=8) == RemoteConfig(urls=("http://a:1",), concurrency=8)
