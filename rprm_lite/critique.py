"""K critiques of one step, decoded in lock-step from a shared prompt, each ending in P(Yes).

A critique's P(Yes) is read from the raw logits right after it writes the verdict phrase
"Is the step correct (Yes/No)?". A critique that ends (end of text or max tokens) without the
phrase gets the released fallback question appended, and P(Yes) is read after it instead.
With adaptive K (`sample_in_waves`) the K streams are decoded a wave at a time until the step is settled.
`sample_batch` does the same for N prompts that share a prefix (the candidate next steps of one solution): each
prompt's own tokens are decoded once, beside the others', and the N x K streams run in one lock-step batch; each
stream has the seed, budget, calculator sources and drafts it has when its prompt is scored alone.
With the calculator on (`config.calculator`), a critique whose text ends with `A op B =`, `A vs B,` or a quoted
pair ("N from the question; the Now Step uses W:") gets the exact continuation written into it by the runtime
(`rprm_lite/calculator.py`): those tokens are decoded in the same call as the token before them, beside the
other streams' tokens, and accepted by the stream's sampler as its own; `Critique.calculated` holds where they
are in the text. A number the critique says comes "from the question" (or "from Step k") that no source holds
is taken back (its tokens leave the text and the KV cache) and chosen again by the model, greedily, among the
numbers that source holds (`calculator.misquote`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rprm_lite import adaptive, calculator
from rprm_lite.config import ScoreConfig
from rprm_lite.drafts import AUTO, AUTO_STREAMS, DraftStats, Lookup, draft_length
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
    pending: int = -1  # the next token to take; `_start` samples the first before any decode
    p_yes: float | None = None
    fallback: bool = False
    calculated: list[tuple[int, int]] = field(default_factory=list)  # byte spans the calculator wrote
    ends: list[int] = field(default_factory=list)  # the text's length in bytes after each token
    # a number being chosen again: the token sequences of the choices still open, how many of their tokens are
    # written, and the byte where the choice starts
    choices: list[list[int]] | None = None
    chosen: int = 0
    choice_start: int = 0
    rewinds: int = 0
    start: int = 0  # the position of the critique's first token
    budget: int = 0  # the tokens the critique may write
    checks: calculator.Sources | None = None  # what the calculator checks against (None: the calculator is off)
    lookup: Lookup | None = None  # where its drafts come from (its prompt's n-grams)

    @property
    def critique_text(self) -> str:
        return self.text.decode("utf-8", errors="replace")

    def calculated_spans(self) -> tuple[tuple[int, int], ...]:
        """The calculator's spans as character offsets into `critique_text` (each starts after a whole
        character, "=" or ",", so the text before it decodes alone as it does in the whole)."""
        def chars(end: int) -> int:
            return len(self.text[:end].decode("utf-8", errors="replace"))
        return tuple((chars(start), chars(end)) for start, end in self.calculated)

    @property
    def verdict_p_yes(self) -> float:
        """P(Yes) of a finished critique: read after its verdict phrase, or after the fallback question."""
        assert self.p_yes is not None, "every finished critique has its P(Yes)"
        return self.p_yes

    @property
    def open_choices(self) -> list[list[int]]:
        """The token sequences still open while a number is chosen again."""
        assert self.choices is not None, "a choice is open"
        return self.choices


@dataclass(frozen=True)
class CritiqueResult:
    text: str
    p_yes: float
    fallback: bool
    tokens: int
    token_ids: tuple[int, ...] = ()  # the generated tokens (without the fallback question)
    calculated: tuple[tuple[int, int], ...] = ()  # character spans of `text` that the calculator wrote


@dataclass(frozen=True)
class BatchPrompt:
    """One prompt of `sample_batch`: its tokens, its critiques' token budget and the calculator's sources."""

    tokens: Sequence[int]
    max_tokens: int
    sources: calculator.Sources | None = None


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
                     make_sampler: Callable[..., Sampler] = Sampler,
                     sources: calculator.Sources | None = None, prompt: Sequence[int] = (),
                     stats: DraftStats | None = None) -> list[CritiqueResult]:
    """Sample K critiques for the prompt held in sequence 0 (its last logits at `last_row`). `sources`: the
    numbers of the step's question and earlier steps, for the calculator's source check. `prompt`: the
    prompt's tokens, where drafts are looked up (`config.draft`); `stats` counts what the drafts did."""
    streams: list[Critique] = []
    try:
        _start(engine, streams, prompt_len=prompt_len, last_row=last_row, step_index=step_index,
               config=config, make_sampler=make_sampler, ask=BatchPrompt(prompt, max_tokens, sources))
        return _finish(engine, streams, vocab, stats or DraftStats())
    finally:
        for stream in streams:
            stream.sampler.close()


def sample_in_waves(engine: Engine, *, prompt_len: int, last_row: int, step_index: int, config: ScoreConfig,
                    vocab: Vocabulary, max_tokens: int, read_p_yes: Callable[[list[CritiqueResult]], list[float]],
                    make_sampler: Callable[..., Sampler] = Sampler, sources: calculator.Sources | None = None,
                    prompt: Sequence[int] = (), stats: DraftStats | None = None
                    ) -> tuple[list[CritiqueResult], list[float], str]:
    """Adaptive K: critiques in waves of `config.wave`, decoded together, until `config.adaptive_rule`
    settles the step (rprm_lite/adaptive.py) or K are drawn. Critique j has the seed and the first
    token it has with a fixed K: every stream's first token is drawn now, from the prompt's logits.
    Returns the critiques drawn, their P(Yes) (`read_p_yes` of each wave) and the stop reason."""
    streams: list[Critique] = []
    try:
        _start(engine, streams, prompt_len=prompt_len, last_row=last_row, step_index=step_index,
               config=config, make_sampler=make_sampler, ask=BatchPrompt(prompt, max_tokens, sources))
        results: list[CritiqueResult] = []
        p_yes: list[float] = []
        stats = stats or DraftStats()
        for begin in range(0, config.k, config.wave):
            wave = _finish(engine, streams[begin:begin + config.wave], vocab, stats)
            results += wave
            p_yes += read_p_yes(wave)
            if adaptive.decide(p_yes, rule=config.adaptive_rule, threshold=config.threshold,
                               confidence=config.confidence) != adaptive.UNSETTLED:
                return results, p_yes, adaptive.SETTLED
        return results, p_yes, adaptive.REACHED_K
    finally:
        for stream in streams:
            stream.sampler.close()


def _checks(config: ScoreConfig, sources: calculator.Sources | None) -> calculator.Sources | None:
    """What the calculator checks against (None: the calculator is off)."""
    if config.calculator != "on":
        return None
    return sources or calculator.Sources()


def _lookup(engine: Engine, config: ScoreConfig, prompt: Sequence[int]) -> Lookup:
    """Where the step's drafts come from: its prompt, and each critique's own tokens."""
    return Lookup(prompt, draft_length(config.draft), ends=engine.end_tokens(),
                  max_streams=AUTO_STREAMS if config.draft == AUTO else None)


def sample_batch(engine: Engine, prompts: Sequence[BatchPrompt], *, prefix_len: int, step_index: int,
                 config: ScoreConfig, vocab: Vocabulary, make_sampler: Callable[..., Sampler] = Sampler,
                 stats: DraftStats | None = None) -> list[list[CritiqueResult]]:
    """K critiques of each of N prompts whose first `prefix_len` tokens are the ones sequence 0 holds (each prompt
    longer than that). Prompt c's own tokens are decoded into the sequence of its first stream over a copy of
    sequence 0, the N prompts' tokens in one call; its K streams are sequences 1 + c*K to (c + 1)*K. A stream's seed
    depends on the step and its number only, as `sample_critiques` seeds it, so every prompt's critiques are those
    it gets alone (P(Yes) up to the float sums a larger batch orders otherwise). The streams' sequences are left
    holding their critiques; the caller trims them."""
    streams: list[Critique] = []
    try:
        for number, ask in enumerate(prompts):
            _start(engine, streams, prompt_len=len(ask.tokens), last_row=None, step_index=step_index,
                   config=config, make_sampler=make_sampler, ask=ask, first_seq=1 + number * config.k)
        own = [streams[number * config.k:(number + 1) * config.k] for number in range(len(prompts))]
        entries: list[DecodeEntry] = []
        for ask, mine in zip(prompts, own, strict=True):
            engine.trim(mine[0].seq)
            engine.copy(PROMPT_SEQ, mine[0].seq)
            entries += [DecodeEntry(ask.tokens[pos], pos, mine[0].seq, logits=pos == len(ask.tokens) - 1)
                        for pos in range(prefix_len, len(ask.tokens))]
        ends = {entry.seq: own[number] for number, entry in enumerate(e for e in entries if e.logits)}
        for index, row in engine.decode(entries):
            for stream in ends[entries[index].seq]:  # a row is valid until the next chunk: the first tokens now
                stream.pending = stream.sampler.sample(engine, row)
        for mine in own:
            for stream in mine[1:]:
                engine.trim(stream.seq)
                engine.copy(mine[0].seq, stream.seq)
        results = _finish(engine, streams, vocab, stats or DraftStats())
        return [results[number * config.k:(number + 1) * config.k] for number in range(len(prompts))]
    finally:
        for stream in streams:
            stream.sampler.close()


def _start(engine: Engine, streams: list[Critique], *, prompt_len: int, last_row: int | None, step_index: int,
           config: ScoreConfig, make_sampler: Callable[..., Sampler], ask: BatchPrompt, first_seq: int = 1) -> None:
    """K streams of one prompt (sequences `first_seq` on), appended to `streams` as they are made, so the caller
    closes every sampler made even when one fails. With `last_row` (the prompt held in sequence 0), each stream
    copies the prompt and samples its first token from that row."""
    checks, lookup = _checks(config, ask.sources), _lookup(engine, config, ask.tokens)
    made = []
    for i in range(config.k):
        made.append(Critique(seq=first_seq + i, pos=prompt_len, start=prompt_len, budget=ask.max_tokens,
                             checks=checks, lookup=lookup,
                             sampler=make_sampler(temperature=config.temperature, top_p=config.top_p,
                                                  seed=stream_seed(config.seed, step_index, i))))
        streams.append(made[-1])
    if last_row is None:
        return
    for stream in made:
        engine.trim(stream.seq)
        engine.copy(PROMPT_SEQ, stream.seq)
        stream.pending = stream.sampler.sample(engine, last_row)


def _finish(engine: Engine, streams: list[Critique], vocab: Vocabulary, stats: DraftStats) -> list[CritiqueResult]:
    _generate(engine, streams, vocab, stats)
    _ask_fallback(engine, [s for s in streams if s.p_yes is None], vocab)
    return [CritiqueResult(s.critique_text, s.verdict_p_yes, s.fallback, s.tokens, tuple(s.token_ids),
                           s.calculated_spans()) for s in streams]


def _generate(engine: Engine, streams: list[Critique], vocab: Vocabulary, stats: DraftStats) -> None:
    """Each call decodes, per active stream, its pending token, the tokens the calculator writes after it (logits
    only at the last of them) and the stream's draft (logits at every drafted position). The rows are read in
    order, as the loop without drafts reads them: a drafted token is kept while the stream's sampler, at the row
    before it, picks it, and the sampler's own token ends the draft; the rejected positions leave the KV cache.
    So a stream's sampler draws as often, and in the same order, as it does without drafts. Each stream has its own
    budget, calculator sources and drafts (`sample_batch` runs streams of several prompts together)."""
    active = list(streams)
    while active:
        writing = len(active)
        rows: dict[int, Critique] = {}  # entry index with logits -> its stream
        drafted: dict[int, list[int] | None] = {}  # stream seq -> its drafted tokens not yet verified (None: done)
        rejected: list[Critique] = []
        entries: list[DecodeEntry] = []
        for stream in list(active):
            if engine.is_end(stream.pending):
                active.remove(stream)
                continue
            _take(engine, stream, stream.pending)
            tokens = [stream.pending]
            if stream.checks is not None:
                tokens = _checked(engine, stream, stream.budget, stream.checks)
            draft = _draft(engine, stream, stream.lookup, stream.budget, stream.checks, writing)
            for offset, token in enumerate(tokens + draft):
                read = offset >= len(tokens) - 1
                entries.append(DecodeEntry(token, stream.pos + offset, stream.seq, logits=read))
                if read:
                    rows[len(entries) - 1] = stream
            stream.pos += len(tokens) - 1
            drafted[stream.seq] = draft
            stats.drafted += len(draft)
            stats.tokens += len(tokens)
            stats.advances += 1
        if not rows:
            return
        for index, row in engine.decode(entries):
            stream = rows[index]
            unverified = drafted[stream.seq]
            if unverified is None:
                continue  # a rejected or ended stream's later draft rows
            going = _read(engine, stream, row, vocab, stream.budget)
            if not going:
                active.remove(stream)
            if not going or not unverified or stream.pending != unverified[0]:
                drafted[stream.seq] = None
                rejected += [stream] if unverified else []
                continue
            _take(engine, stream, unverified.pop(0))
            stats.accepted += 1
            stats.tokens += 1
        for stream in rejected:
            engine.trim(stream.seq, stream.pos)  # after the decode: a later chunk may hold its drafted tokens


def _read(engine: Engine, stream: Critique, row: int, vocab: Vocabulary, max_tokens: int) -> bool:
    """Read the row of the stream's latest token: P(Yes) after the verdict phrase, or the next token (the
    stream's pending one). False when the critique ends here (phrase or max tokens)."""
    stream.pos += 1
    if stream.text.endswith(PHRASE):
        stream.p_yes = engine.p_yes(row, vocab.yes, vocab.no)
        _append_verdict(engine, stream, row)
        return False
    if stream.tokens >= max_tokens:
        return False
    if stream.choices is not None:
        stream.pending = _choose(engine, stream, row)
    else:
        stream.pending = stream.sampler.sample(engine, row)
    return True


def _draft(engine: Engine, stream: Critique, drafts: Lookup | None, max_tokens: int,
           sources: calculator.Sources | None, writing: int) -> list[int]:
    """The stream's draft after its latest token, within its token budget; none while the calculator has a
    choice open, and cut before a token after which the calculator would write or take back text: such a token
    must be the pending one, as it is without drafts."""
    if stream.choices is not None or drafts is None:
        return []
    draft = drafts.draft(stream.token_ids, max_tokens - stream.tokens, streams=writing)
    if sources is None or not draft:
        return draft
    text = bytes(stream.text)
    for kept, token in enumerate(draft):
        text += engine.piece(token)
        if _calculator_acts(text, stream.rewinds, sources):
            return draft[:kept]
    return draft


def _take(engine: Engine, stream: Critique, token: int) -> None:
    stream.text += engine.piece(token)
    stream.token_ids.append(token)
    stream.tokens += 1
    stream.ends.append(len(stream.text))


MAX_REWINDS = 4  # numbers taken back per critique
# how the text before a claim's last character ends, for a cheap first test: a source ("from the question"), a
# number ("the Now Step uses 5"), an operation ("the Now Step adds")
CLAIM_ENDS = (b"question", *(verb.encode() for verb in calculator.VERBS))


def _checked(engine: Engine, stream: Critique, max_tokens: int, sources: calculator.Sources) -> list[int]:
    """The tokens to decode for a stream whose pending token was just taken: the pending token and what the
    calculator writes after it (often nothing); or, for a number taken back, the token before it, decoded again
    (its logits start the choice)."""
    if stream.choices is not None:
        return [stream.pending, *_chosen(engine, stream, max_tokens)]
    if stream.rewinds < MAX_REWINDS:
        entry = _rewind(engine, stream, sources)
        if entry:
            return entry
    return [stream.pending, *_calculate(engine, stream, max_tokens)]


def _rewind(engine: Engine, stream: Critique, sources: calculator.Sources) -> list[int]:
    """When the text ends with a number quoted from a source that holds no such number: take the number back
    (text, tokens and KV cells) and open a choice among the source's numbers; returns the token before the
    number, to decode again at its position, or nothing."""
    text = stream.text
    found, tail = _misquote(text, sources)
    if found is None:
        return []
    begin = len(text) - len(tail[-found.length:].encode("utf-8"))
    if begin not in stream.ends[:-1]:
        return []  # the number does not start at a token: it is left as written
    keep = stream.ends.index(begin) + 1  # tokens before the number
    position = stream.start + keep - 1  # the last of them, decoded again for its logits
    del stream.text[begin:], stream.token_ids[keep:], stream.ends[keep:]
    stream.tokens = len(stream.token_ids)
    stream.calculated = [span for span in stream.calculated if span[1] <= begin]
    stream.choices = [engine.tokenize(choice, special=False) for choice in found.choices]
    stream.chosen, stream.choice_start = 0, begin
    stream.rewinds += 1
    engine.trim(stream.seq, position)
    stream.pos = position
    return [stream.token_ids[-1]]


def _choose(engine: Engine, stream: Critique, row: int) -> int:
    """The open choice's next token: the most likely one that some choice goes on with."""
    logits = engine.logits(row)
    allowed = sorted({choice[stream.chosen] for choice in stream.open_choices if len(choice) > stream.chosen})
    token = max(allowed, key=lambda t: logits[t])
    stream.sampler.accept(token)
    return token


def _chosen(engine: Engine, stream: Critique, max_tokens: int) -> list[int]:
    """After a chosen token was taken: once one choice is left, the rest of it is written (within the budget)."""
    token = stream.token_ids[-1]
    stream.choices = [c for c in stream.open_choices if len(c) > stream.chosen and c[stream.chosen] == token]
    stream.chosen += 1
    if len(stream.choices) > 1:
        return []
    rest = stream.choices[0][stream.chosen:] if stream.choices else []
    stream.choices = None
    rest = rest if stream.tokens + len(rest) <= max_tokens else []
    for token in rest:
        _take(engine, stream, token)
        stream.sampler.accept(token)
    stream.calculated.append((stream.choice_start, len(stream.text)))
    return rest


CALCULATOR_ENDS = (b"=", b"= ", b",", b":")  # the only endings `calculator.continuation` answers
CALCULATOR_TAIL = 4 * (calculator.MAX_TAIL + 2)  # bytes: more than MAX_TAIL characters of UTF-8, when it has them


def _calculate(engine: Engine, stream: Critique, max_tokens: int) -> list[int]:
    """The calculator's tokens after the stream's text (taken into it, and accepted by its sampler), or none;
    never past the critique's token budget."""
    written = _continuation(stream.text)
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


def _tail(text: bytes | bytearray) -> str:
    return bytes(text[-CALCULATOR_TAIL:]).decode("utf-8", errors="ignore")


def _misquote(text: bytes | bytearray, sources: calculator.Sources) -> tuple[calculator.Misquote | None, str]:
    """A number at the text's end that its source does not hold (or None), and the tail it was read from."""
    if len(text) < 2 or not (text[:-1].endswith(CLAIM_ENDS) or text[-2:-1].isdigit()):
        return None, ""
    tail = _tail(text)
    return calculator.misquote(tail, sources), tail


def _continuation(text: bytes | bytearray) -> str | None:
    """What the calculator writes after the text, or None."""
    return calculator.continuation(_tail(text)) if text.endswith(CALCULATOR_ENDS) else None


def _calculator_acts(text: bytes, rewinds: int, sources: calculator.Sources) -> bool:
    """Whether the calculator may write or take back text after `text` (its tests without the token-boundary and
    budget checks, so a draft is cut wherever it might)."""
    return ((rewinds < MAX_REWINDS and _misquote(text, sources)[0] is not None)
            or _continuation(text) is not None)


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
