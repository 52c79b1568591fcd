"""The requests each server kind takes, and how its answers are read: no I/O here, so every request and
every parse is tested against answers written from the servers' documented formats.

Two calls per step: critiques (K samples of one prompt) and verdicts (P(Yes) at the end of each
critique's verdict context). Every sampling setting is sent explicitly, because servers' defaults
differ from the recipe (llama-server defaults to top-k 40, min-p 0.05 and a repeat penalty; llama-cpp-
python to top-k 40 and min-p 0.05): temperature, top-p, no top-k, no min-p, no penalties.

P(Yes) comes from the most exact call each server offers:
- vLLM `/generative_scoring` and SGLang `/v1/score` with `label_token_ids` [" Yes", " No"] and
  `apply_softmax`: the two-way softmax over the raw next-token logits, computed on the server;
- llama-server `/completion` with `n_probs` and `post_sampling_probs: false`: top raw log-probabilities
  by token id; plain OpenAI `/v1/completions` (and llama-cpp-python's server, whose `logprobs` are the
  log-softmax of the raw logits) with `max_tokens: 1` and the top logprobs by token text.
From top logprobs, P(Yes) = 1 / (1 + exp(lp(No) - lp(Yes))): exact, since the log-softmax shifts both
logits by the same constant. When one of the two tokens is not among the top ones it is marked
approximate, with the smallest listed logprob standing in for the missing one (an upper bound on it).
When neither is there, nothing bounds P(Yes): the verdict is not read (p_yes None), never a made-up 0.5.

An answer is checked before it is believed: every logprob is a finite number <= 0 (anything else is not
a log-probability, and the whole answer is refused), every probability is in [0, 1].

Sources for the formats: vLLM docs "Generative Scoring" (docs.vllm.ai/en/latest/serving/online_serving/
generative_scoring) and its completions extras (`include_stop_str_in_output`, `return_token_ids`,
`top_k: -1`); SGLang `ScoringRequest`/`ScoringResponse` in sglang/srt/entrypoints/openai/protocol.py and
its sampling params (`no_stop_trim`); llama.cpp tools/server/README.md (`/completion`: `n_probs`,
`post_sampling_probs`, `samplers`, `return_tokens`, `stop_type`, `completion_probabilities`);
llama-cpp-python llama_cpp/server/types.py and llama.py (`prompt` must be text, no `n`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rprm_lite.prompt import VERDICT_PHRASE
from rprm_lite.remote.transport import RemoteError

Request = tuple[str, dict[str, Any]]  # (path, JSON body)
YES_TEXT, NO_TEXT = " Yes", " No"


@dataclass(frozen=True)
class CritiqueAsk:
    """One step's critique request: the prompt (token ids and text), K seeds and the sampling settings."""

    prompt_ids: tuple[int, ...]
    prompt_text: str
    seeds: tuple[int, ...]  # one per critique
    temperature: float
    top_p: float
    max_tokens: int
    model: str


@dataclass(frozen=True)
class Sampled:
    """A critique as the server wrote it. `stopped_on_phrase`: the server stopped at the stop string
    (which it may have trimmed from `text`); `token_ids` when the server returns them."""

    text: str
    stopped_on_phrase: bool = False
    tokens: int | None = None
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class VerdictContext:
    """What P(Yes) is read after: the prompt plus one critique's verdict text, as ids and as text."""

    ids: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class Verdict:
    p_yes: float | None  # None: neither " Yes" nor " No" among the server's top logprobs (not read)
    approximate: bool = False
    shown: str = ""  # the verdict token the server would write, when the call returns one


class Dialect:
    """The plain OpenAI completions API: token-id prompts, `n`, `seed`, top logprobs by token text."""

    name = "openai"
    token_ids = True  # prompts are sent as token ids (False: as text, which the server tokenizes)
    sends_n = True  # K critiques in one request with `n`
    p_yes_method = "completions top-logprobs (max_tokens=1)"
    stop: tuple[str, ...] = ()  # plain OpenAI trims the stop string and says only "stop", as for an end token

    def __init__(self, top_logprobs: int = 20) -> None:
        self.top_logprobs = top_logprobs

    # -- critiques ---------------------------------------------------------------------------
    def critique_requests(self, ask: CritiqueAsk) -> list[Request]:
        if self.sends_n:
            return [("/v1/completions", self.critique_body(ask, ask.seeds[0], len(ask.seeds)))]
        return [("/v1/completions", self.critique_body(ask, seed, 1)) for seed in ask.seeds]

    def sent_seeds(self, ask: CritiqueAsk) -> tuple[int, ...]:
        """The seeds the requests carry: one for a request with `n` (the server derives the K samples), else K."""
        return ask.seeds[:1] if self.sends_n else ask.seeds

    def critique_body(self, ask: CritiqueAsk, seed: int, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {
                "model": ask.model, "prompt": list(ask.prompt_ids) if self.token_ids else ask.prompt_text,
                "n": n, "seed": seed, "temperature": ask.temperature, "top_p": ask.top_p,
                "max_tokens": ask.max_tokens, "presence_penalty": 0.0, "frequency_penalty": 0.0, "stream": False}
        if self.stop:
            body["stop"] = list(self.stop)
        return body | self.sampling_extras()

    def sampling_extras(self) -> dict[str, Any]:
        return {}

    def parse_critiques(self, answer: dict[str, Any], expected: int) -> list[Sampled]:
        choices = sorted(_list(answer, "choices", expected), key=lambda c: c.get("index", 0))
        return [self.parse_choice(choice) for choice in choices]

    def parse_choice(self, choice: dict[str, Any]) -> Sampled:
        return Sampled(text=_text(choice))

    # -- verdicts ----------------------------------------------------------------------------
    def verdict_requests(self, prompt_ids: Sequence[int], contexts: Sequence[VerdictContext], *, model: str,
                         yes: int, no: int) -> list[Request]:
        prompts = [list(c.ids) if self.token_ids else c.text for c in contexts]
        batch = prompts if self.token_ids else None
        if batch is not None:
            return [("/v1/completions", self.verdict_body(batch, model))]
        return [("/v1/completions", self.verdict_body(prompt, model)) for prompt in prompts]

    def verdict_body(self, prompt: Any, model: str) -> dict[str, Any]:
        return {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                "logprobs": self.top_logprobs, "stream": False} | self.sampling_extras()

    def parse_verdicts(self, answer: dict[str, Any], expected: int, *, yes: int, no: int) -> list[Verdict]:
        choices = sorted(_list(answer, "choices", expected), key=lambda c: c.get("index", 0))
        verdicts = []
        for choice in choices:
            logprobs = choice.get("logprobs")
            tops = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
            if not isinstance(tops, list) or not tops or not isinstance(tops[0], dict):
                raise RemoteError(f"the answer has no top_logprobs for the verdict token: {_keys(choice)}")
            verdicts.append(_from_top(_text_keyed(tops[0], yes, no), yes, no, shown=_text(choice)))
        return verdicts


class VLLM(Dialect):
    name = "vllm"
    p_yes_method = "vllm /generative_scoring (softmax over raw ' Yes'/' No' logits)"
    stop = (VERDICT_PHRASE,)

    def sampling_extras(self) -> dict[str, Any]:
        return {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}

    def critique_body(self, ask: CritiqueAsk, seed: int, n: int) -> dict[str, Any]:
        return super().critique_body(ask, seed, n) | {"include_stop_str_in_output": True, "return_token_ids": True}

    def parse_choice(self, choice: dict[str, Any]) -> Sampled:
        ids = choice.get("token_ids")
        ids = tuple(ids) if isinstance(ids, list) and all(isinstance(t, int) for t in ids) else None
        return Sampled(text=_text(choice), stopped_on_phrase=choice.get("stop_reason") == VERDICT_PHRASE,
                       tokens=len(ids) if ids is not None else None, token_ids=ids)

    def verdict_requests(self, prompt_ids: Sequence[int], contexts: Sequence[VerdictContext], *, model: str,
                         yes: int, no: int) -> list[Request]:
        return [("/generative_scoring", {"model": model, "query": list(prompt_ids),
                                         "items": [list(c.ids[len(prompt_ids):]) for c in contexts],
                                         "label_token_ids": [yes, no], "apply_softmax": True})]

    def parse_verdicts(self, answer: dict[str, Any], expected: int, *, yes: int, no: int) -> list[Verdict]:
        rows = sorted(_list(answer, "data", expected), key=lambda r: r.get("index", 0))
        return [Verdict(_probability(row.get("score"), "data[].score")) for row in rows]


class SGLang(Dialect):
    name = "sglang"
    p_yes_method = "sglang /v1/score (softmax over raw ' Yes'/' No' logits)"
    stop = (VERDICT_PHRASE,)

    def sampling_extras(self) -> dict[str, Any]:
        return {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}

    def critique_body(self, ask: CritiqueAsk, seed: int, n: int) -> dict[str, Any]:
        return super().critique_body(ask, seed, n) | {"no_stop_trim": True}

    def parse_choice(self, choice: dict[str, Any]) -> Sampled:
        return Sampled(text=_text(choice), stopped_on_phrase=choice.get("matched_stop") == VERDICT_PHRASE)

    def verdict_requests(self, prompt_ids: Sequence[int], contexts: Sequence[VerdictContext], *, model: str,
                         yes: int, no: int) -> list[Request]:
        return [("/v1/score", {"model": model, "query": list(prompt_ids),
                               "items": [list(c.ids[len(prompt_ids):]) for c in contexts],
                               "label_token_ids": [yes, no], "apply_softmax": True})]

    def parse_verdicts(self, answer: dict[str, Any], expected: int, *, yes: int, no: int) -> list[Verdict]:
        rows = _list(answer, "scores", expected)
        verdicts: list[Verdict] = []
        for row in rows:
            if not isinstance(row, list) or len(row) != 2:
                raise RemoteError(f"expected scores as [P(Yes), P(No)] pairs, got {row!r}")
            verdicts.append(Verdict(_probability(row[0], "scores[][0]")))
        return verdicts


class LlamaServer(Dialect):
    """llama.cpp's own llama-server, on its native `/completion` endpoint (no `n`: one request per seed)."""

    name = "llama-server"
    sends_n = False
    p_yes_method = "llama-server /completion n_probs (pre-sampling top logprobs)"
    stop = (VERDICT_PHRASE,)

    def critique_requests(self, ask: CritiqueAsk) -> list[Request]:
        return [("/completion", self.native_body(list(ask.prompt_ids), n_predict=ask.max_tokens, seed=seed,
                                                 temperature=ask.temperature, top_p=ask.top_p)
                 | {"stop": list(self.stop), "return_tokens": True}) for seed in ask.seeds]

    def native_body(self, prompt: list[int], *, n_predict: int, seed: int, temperature: float,
                    top_p: float) -> dict[str, Any]:
        # every sampler that is on by default is turned off; the chain is temperature then top-p, as locally
        return {"prompt": prompt, "n_predict": n_predict, "seed": seed, "temperature": temperature,
                "top_p": top_p, "top_k": 0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0,
                "presence_penalty": 0.0, "frequency_penalty": 0.0, "dry_multiplier": 0.0,
                "xtc_probability": 0.0, "mirostat": 0, "samplers": ["temperature", "top_p"],
                "cache_prompt": True, "stream": False}

    def parse_critiques(self, answer: dict[str, Any], expected: int) -> list[Sampled]:
        answers = answer.get("results", [answer]) if isinstance(answer.get("results"), list) else [answer]
        return [self.parse_native(one) for one in answers]

    def parse_native(self, answer: dict[str, Any]) -> Sampled:
        content = answer.get("content")
        if not isinstance(content, str):
            raise RemoteError(f"expected a 'content' string in the /completion answer, got {_keys(answer)}")
        ids = answer.get("tokens")
        ids = tuple(ids) if isinstance(ids, list) and ids and all(isinstance(t, int) for t in ids) else None
        predicted = answer.get("tokens_predicted")
        return Sampled(text=content, stopped_on_phrase=answer.get("stop_type") == "word",
                       tokens=predicted if isinstance(predicted, int) else None, token_ids=ids)

    def verdict_requests(self, prompt_ids: Sequence[int], contexts: Sequence[VerdictContext], *, model: str,
                         yes: int, no: int) -> list[Request]:
        return [("/completion", self.native_body(list(c.ids), n_predict=1, seed=0, temperature=0.0, top_p=1.0)
                 | {"n_probs": self.top_logprobs, "post_sampling_probs": False}) for c in contexts]

    def parse_verdicts(self, answer: dict[str, Any], expected: int, *, yes: int, no: int) -> list[Verdict]:
        probabilities = answer.get("completion_probabilities")
        if not isinstance(probabilities, list) or not probabilities or not isinstance(probabilities[0], dict):
            raise RemoteError(f"expected completion_probabilities in the /completion answer, got {_keys(answer)}")
        tops = probabilities[0].get("top_logprobs")
        if not isinstance(tops, list):
            raise RemoteError("expected completion_probabilities[0].top_logprobs (is post_sampling_probs on?)")
        if not all(isinstance(entry, dict) and _is_int(entry.get("id")) for entry in tops):
            raise RemoteError("expected {id, logprob} objects in completion_probabilities[0].top_logprobs")
        by_id = {entry["id"]: _logprob(entry.get("logprob"), f"the logprob of token {entry['id']}") for entry in tops}
        content = answer.get("content")
        shown = content if isinstance(content, str) else ""
        return [_from_top(by_id, yes, no, shown=shown)]


class LlamaCppPython(Dialect):
    """llama-cpp-python's `python -m llama_cpp.server`: text prompts only (it tokenizes them with special
    tokens parsed), no `n`, and its "stop" finish reason does not tell a stop string from an end token, so
    no stop string is sent: the phrase is found in the text (R-PRM ends its critique one word after it)."""

    name = "llama-cpp-python"
    token_ids = False
    sends_n = False
    p_yes_method = "llama-cpp-python completions top-logprobs (raw logits, max_tokens=1)"

    def sampling_extras(self) -> dict[str, Any]:
        return {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "mirostat_mode": 0}

    def parse_critiques(self, answer: dict[str, Any], expected: int) -> list[Sampled]:
        sampled = super().parse_critiques(answer, expected)
        usage = answer.get("usage")
        count = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if len(sampled) == 1 and isinstance(count, int):
            return [Sampled(text=sampled[0].text, tokens=count)]
        return sampled


DIALECTS: dict[str, type[Dialect]] = {cls.name: cls for cls in (Dialect, VLLM, SGLang, LlamaServer, LlamaCppPython)}
OWNERS = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llama-server", "me": "llama-cpp-python"}


def detect(models_answer: dict[str, Any]) -> tuple[str, str | None]:
    """(server kind, first model name) from a `/v1/models` answer, by its `owned_by` field."""
    data = models_answer.get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return "openai", None
    first = data[0]
    model = first.get("id") if isinstance(first.get("id"), str) else None
    return OWNERS.get(str(first.get("owned_by", "")).lower(), "openai"), model


def two_way(lp_yes: float, lp_no: float) -> float:
    margin = lp_no - lp_yes
    if margin > 0:
        odds = math.exp(-margin)
        return odds / (1.0 + odds)
    return 1.0 / (1.0 + math.exp(margin))


def _from_top(logprobs: dict[int, float], yes: int, no: int, *, shown: str) -> Verdict:
    """P(Yes) from checked top logprobs by token id; not read (None) when neither token is among them."""
    if not logprobs:
        raise RemoteError("the answer lists no top logprobs for the verdict token")
    if yes not in logprobs and no not in logprobs:
        return Verdict(None, shown=shown)
    floor = min(logprobs.values())  # a token missing from the top ones has at most this logprob
    return Verdict(two_way(logprobs.get(yes, floor), logprobs.get(no, floor)),
                   approximate=yes not in logprobs or no not in logprobs, shown=shown)


def _text_keyed(tops: dict[str, Any], yes: int, no: int) -> dict[int, float]:
    """Top logprobs keyed by token text (or vLLM's "token_id:N") as {token id: logprob}; other tokens get
    negative ids so that they still count for the floor."""
    ids = {YES_TEXT: yes, NO_TEXT: no, f"token_id:{yes}": yes, f"token_id:{no}": no}
    return {ids.get(key, -1 - index): _logprob(value, f"the logprob of {key!r}")
            for index, (key, value) in enumerate(tops.items())}


def _logprob(value: Any, where: str) -> float:
    """A log-probability from an answer: a finite number <= 0, else the answer is refused."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = None
    if number is None or not math.isfinite(number) or number > 0.0:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise RemoteError(f"expected {where} to be a log-probability (a finite number <= 0), got {shown}; "
                          "this server's logprobs cannot be believed")
    return number


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list(answer: dict[str, Any], key: str, expected: int) -> list[Any]:
    value = answer.get(key)
    if not isinstance(value, list):
        raise RemoteError(f"expected a '{key}' list in the answer, got {_keys(answer)}")
    if len(value) != expected:
        raise RemoteError(f"expected {expected} entries in '{key}', got {len(value)}")
    if key != "scores" and not all(isinstance(item, dict) for item in value):
        raise RemoteError(f"expected objects in '{key}'")
    return value


def _text(choice: dict[str, Any]) -> str:
    text = choice.get("text")
    if not isinstance(text, str):
        raise RemoteError(f"expected a 'text' string in each choice, got {_keys(choice)}")
    return text


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise RemoteError(f"expected a probability in {where}, got {value!r}")
    return float(value)


def _keys(value: Any) -> str:
    return f"keys {sorted(value)}" if isinstance(value, dict) else type(value).__name__
