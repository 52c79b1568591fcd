"""K critiques of one step, decoded in lock-step from a shared prompt, each ending in P(Yes).

A critique's P(Yes) is read from the raw logits right after it writes the verdict phrase
"Is the step correct (Yes/No)?". A critique that ends (end of text or max tokens) without the
phrase gets the released fallback question appended, and P(Yes) is read after it instead.
With adaptive K (`sample_in_waves`) the K streams are decoded a wave at a time until the step is settled.
With the calculator on (`config.calculator`), a critique whose text ends with `A op B =` or `A vs B,` gets the
exact continuation written into it by the runtime (`rprm_lite/calculator.py`): those tokens are decoded in the
same call as the token before them, beside the other streams' tokens, and accepted by the stream's sampler as
its own; `Critique.calculated` holds where they are in the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rprm_lite import adaptive, calculator
from rprm_lite.config import ScoreConfig
from rprm_lite.engine import DecodeEntry, Engine, Sampler, stream_seed
from rprm_lite.prompt import FALLBACK_TEXT, VERDICT_PHRASE

PROMPT_SEQ = 0
PHRASE = VERDICT_PHRASE.encode("utf-8")


@dataclass
class Critique:
    seq: int
    pos: int
    sampler: Sampler
    text: bytearray = field(default_factory=bytearray)
    token_ids: list[int] = field(default_factory=list)
    tokens: int = 0
    pending: int | None = None
    p_yes: float | None = None
    fallback: bool = False
    calculated: list[tuple[int, int]] = field(default_factory=list)  # byte spans the calculator wrote

    @property
    def critique_text(self) -> str:
        return self.text.decode("utf-8", errors="replace")

    def calculated_spans(self) -> tuple[tuple[int, int], ...]:
        """The calculator's spans as character offsets into `critique_text` (each starts after a whole
        character, "=" or ",", so the text before it decodes alone as it does in the whole)."""
        def chars(end: int) -> int:
            return len(self.text[:end].decode("utf-8", errors="replace"))
        return tuple((chars(start), chars(end)) for start, end in self.calculated)


@dataclass(frozen=True)
class CritiqueResult:
    text: str
    p_yes: float
    fallback: bool
    tokens: int
    token_ids: tuple[int, ...] = ()  # the generated tokens (without the fallback question)
    calculated: tuple[tuple[int, int], ...] = ()  # character spans of `text` that the calculator wrote


@dataclass(frozen=True)
class Vocabulary:
    yes: int
    no: int
    fallback: tuple[int, ...]

    @property
    def reserve(self) -> int:
        """Positions a critique keeps free after its text: the fallback question and the verdict token."""
        return len(self.fallback) + 1


def sample_critiques(engine: Engine, *, prompt_len: int, last_row: int, step_index: int,
                     config: ScoreConfig, vocab: Vocabulary, max_tokens: int,
                     make_sampler: Callable[..., Sampler] = Sampler) -> list[CritiqueResult]:
    """Sample K critiques for the prompt held in sequence 0 (its last logits at `last_row`)."""
    streams: list[Critique] = []
    try:
        _start(engine, streams, prompt_len=prompt_len, last_row=last_row, step_index=step_index,
               config=config, make_sampler=make_sampler)
        return _finish(engine, streams, vocab, max_tokens, config.calculator == "on")
    finally:
        for stream in streams:
            stream.sampler.close()


def sample_in_waves(engine: Engine, *, prompt_len: int, last_row: int, step_index: int, config: ScoreConfig,
                    vocab: Vocabulary, max_tokens: int, read_p_yes: Callable[[list[CritiqueResult]], list[float]],
                    make_sampler: Callable[..., Sampler] = Sampler
                    ) -> tuple[list[CritiqueResult], list[float], str]:
    """Adaptive K: critiques in waves of `config.wave`, decoded together, until `config.adaptive_rule`
    settles the step (rprm_lite/adaptive.py) or K are drawn. Critique j has the seed and the first
    token it has with a fixed K: every stream's first token is drawn now, from the prompt's logits.
    Returns the critiques drawn, their P(Yes) (`read_p_yes` of each wave) and the stop reason."""
    streams: list[Critique] = []
    try:
        _start(engine, streams, prompt_len=prompt_len, last_row=last_row, step_index=step_index,
               config=config, make_sampler=make_sampler)
        results: list[CritiqueResult] = []
        p_yes: list[float] = []
        for begin in range(0, config.k, config.wave):
            wave = _finish(engine, streams[begin:begin + config.wave], vocab, max_tokens, config.calculator == "on")
            results += wave
            p_yes += read_p_yes(wave)
            if adaptive.decide(p_yes, rule=config.adaptive_rule, threshold=config.threshold,
                               confidence=config.confidence) != adaptive.UNSETTLED:
                return results, p_yes, adaptive.SETTLED
        return results, p_yes, adaptive.REACHED_K
    finally:
        for stream in streams:
            stream.sampler.close()


def _start(engine: Engine, streams: list[Critique], *, prompt_len: int, last_row: int, step_index: int,
           config: ScoreConfig, make_sampler: Callable[..., Sampler]) -> None:
    """K streams over a copy of the prompt, each with its first token sampled (appended to `streams` as
    they are made, so the caller closes every sampler made even when one fails)."""
    for i in range(config.k):
        streams.append(Critique(seq=i + 1, pos=prompt_len,
                                sampler=make_sampler(temperature=config.temperature, top_p=config.top_p,
                                                     seed=stream_seed(config.seed, step_index, i))))
    for stream in streams:
        engine.trim(stream.seq)
        engine.copy(PROMPT_SEQ, stream.seq)
        stream.pending = stream.sampler.sample(engine, last_row)


def _finish(engine: Engine, streams: list[Critique], vocab: Vocabulary, max_tokens: int,
            calculate: bool) -> list[CritiqueResult]:
    _generate(engine, streams, vocab, max_tokens, calculate)
    _ask_fallback(engine, [s for s in streams if s.p_yes is None], vocab)
    return [CritiqueResult(s.critique_text, s.p_yes, s.fallback, s.tokens, tuple(s.token_ids),
                           s.calculated_spans()) for s in streams]


def _generate(engine: Engine, streams: list[Critique], vocab: Vocabulary, max_tokens: int, calculate: bool) -> None:
    """Each call decodes every active stream's pending token, and after it the calculator's tokens for the
    streams it writes into: several tokens of one sequence, logits only at the last."""
    active = list(streams)
    while active:
        batch: dict[int, Critique] = {}  # entry index with logits -> its stream
        entries: list[DecodeEntry] = []
        for stream in list(active):
            if engine.is_end(stream.pending):
                active.remove(stream)
                continue
            tokens = [stream.pending]
            _take(engine, stream, stream.pending)
            if calculate:
                tokens += _calculate(engine, stream, max_tokens)
            entries += [DecodeEntry(token, stream.pos + offset, stream.seq, logits=offset == len(tokens) - 1)
                        for offset, token in enumerate(tokens)]
            stream.pos += len(tokens) - 1
            batch[len(entries) - 1] = stream
        if not batch:
            return
        for index, row in engine.decode(entries):
            stream = batch[index]
            stream.pos += 1
            if stream.text.endswith(PHRASE):
                stream.p_yes = engine.p_yes(row, vocab.yes, vocab.no)
                _append_verdict(engine, stream, row)
                active.remove(stream)
            elif stream.tokens >= max_tokens:
                active.remove(stream)
            else:
                stream.pending = stream.sampler.sample(engine, row)


def _take(engine: Engine, stream: Critique, token: int) -> None:
    stream.text += engine.piece(token)
    stream.token_ids.append(token)
    stream.tokens += 1


CALCULATOR_ENDS = (b"=", b"= ", b",")  # the only endings `calculator.continuation` answers
CALCULATOR_TAIL = 4 * (calculator.MAX_TAIL + 2)  # bytes: more than MAX_TAIL characters of UTF-8, when it has them


def _calculate(engine: Engine, stream: Critique, max_tokens: int) -> list[int]:
    """The calculator's tokens after the stream's text (taken into it, and accepted by its sampler), or none;
    never past the critique's token budget."""
    if not stream.text.endswith(CALCULATOR_ENDS):
        return []
    tail = bytes(stream.text[-CALCULATOR_TAIL:]).decode("utf-8", errors="ignore")
    written = calculator.continuation(tail)
    if written is None:
        return []
    tokens = engine.tokenize(written, special=False)
    if not tokens or stream.tokens + len(tokens) > max_tokens:
        return []
    start = len(stream.text)
    for token in tokens:
        _take(engine, stream, token)
        stream.sampler.accept(token)
    stream.calculated.append((start, len(stream.text)))
    return tokens


def _append_verdict(engine: Engine, stream: Critique, row: int) -> None:
    """Show the verdict the critique would write; it is not decoded, the score is already read."""
    token = stream.sampler.sample(engine, row)
    if not engine.is_end(token):
        stream.text += engine.piece(token)


def _ask_fallback(engine: Engine, streams: list[Critique], vocab: Vocabulary) -> None:
    if not streams:
        return
    entries = []
    for stream in streams:
        stream.fallback = True
        for offset, token in enumerate(vocab.fallback):
            last = offset == len(vocab.fallback) - 1
            entries.append(DecodeEntry(token, stream.pos + offset, stream.seq, logits=last))
        stream.pos += len(vocab.fallback)
        stream.text += FALLBACK_TEXT.encode("utf-8")
    for stream, (_, row) in zip(streams, engine.decode(entries), strict=True):
        stream.p_yes = engine.p_yes(row, vocab.yes, vocab.no)
        _append_verdict(engine, stream, row)
