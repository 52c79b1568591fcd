"""Prompt-lookup drafts: the tokens a critique will likely write next, guessed without the model.

An R-PRM critique quotes: the question's quantities, the steps' expressions and results, its own section headers.
So its next tokens are often the ones that follow its last few tokens in the step's prompt or earlier in the
critique. `Lookup.draft` walks those n-grams: while the critique's last n tokens (n from `MAX_NGRAM` down to
`MIN_NGRAM`, the longest found) are always followed by the same token, in the prompt and in the critique so far,
that token is drafted. Measured on the demo judge, n-grams that occur with different followers and shorter ones
were more often wrong than right, and a wrong drafted token costs about half a decoded one on a CPU
(docs/benchmarks/speed.md).
A draft is only a guess: `critique.py` decodes it with the critique's pending token and keeps the drafted tokens
its sampler picks itself, so the critique's tokens are those it would write without drafts (`--draft off`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_NGRAM = 3  # the n-grams looked up: measured on the demo judge's critiques (bench draft_speed, docs)
MIN_NGRAM = 3
AUTO_LENGTH = 3  # --draft auto: tokens drafted per stream and call...
AUTO_STREAMS = 2  # ...while at most this many critiques are being written: a batch of more pays nearly in full
MAX_LENGTH = 32  # --draft N: at most this many
OFF, AUTO = "off", "auto"
_AMBIGUOUS = -1  # an n-gram followed by different tokens in the prompt


def draft_length(setting: str) -> int:
    """Drafted tokens per stream and call for a `--draft` value: off 0, auto `AUTO_LENGTH`, N itself."""
    if setting == OFF:
        return 0
    if setting == AUTO:
        return AUTO_LENGTH
    return int(setting)


def draft_problem(setting: object) -> str | None:
    """What is wrong with a `--draft` value, or None."""
    if setting in (OFF, AUTO) or (isinstance(setting, str) and setting.isdigit() and
                                  1 <= int(setting) <= MAX_LENGTH):
        return None
    return f"draft must be auto, off or a number of tokens from 1 to {MAX_LENGTH}, got {setting!r}"


class Lookup:
    """The drafts of one step's critiques, from an index of the prompt's n-grams built once per step."""

    def __init__(self, prompt: Sequence[int], length: int, *, ends: Iterable[int] = (),
                 max_streams: int | None = None) -> None:
        """`length`: tokens per draft (0: none); `ends`: tokens never drafted (a critique's end is its sampler's
        to pick); `max_streams`: no drafts while more critiques than this are written together."""
        self.length = length
        self.max_streams = max_streams
        self.following: dict[tuple[int, ...], int] = {}  # n-gram -> the token after it (or _AMBIGUOUS)
        stops = frozenset(ends)
        for end in range(1, len(prompt) if length else 0):  # not at the prompt's end: nothing follows it there
            token = _AMBIGUOUS if prompt[end] in stops else prompt[end]
            for n in range(MIN_NGRAM, min(MAX_NGRAM, end) + 1):
                gram = tuple(prompt[end - n:end])
                self.following[gram] = token if self.following.get(gram, token) == token else _AMBIGUOUS

    def draft(self, own: Sequence[int], limit: int, *, streams: int = 1) -> list[int]:
        """Up to `min(length, limit)` tokens after the critique's tokens `own`: each the one token that follows the
        longest n-gram ending there wherever it occurs, in the prompt and in `own`; the draft stops where that
        n-gram has different followers, or occurs nowhere."""
        if not self.length or limit <= 0 or (self.max_streams is not None and streams > self.max_streams):
            return []
        own = list(own)
        context = own[-MAX_NGRAM:]
        drafted: list[int] = []
        while len(drafted) < min(self.length, limit) and (token := self._next(own, context)) != _AMBIGUOUS:
            drafted.append(token)
            context = [*context[1 - MAX_NGRAM:], token]
        return drafted

    def _next(self, own: list[int], context: list[int]) -> int:
        for n in range(min(MAX_NGRAM, len(context)), MIN_NGRAM - 1, -1):
            gram = context[-n:]
            found = {token for token in (self.following.get(tuple(gram)), _follower(own, gram)) if token is not None}
            if found:
                return found.pop() if len(found) == 1 else _AMBIGUOUS
        return _AMBIGUOUS


def _follower(tokens: list[int], gram: list[int]) -> int | None:
    """The token after every occurrence of `gram` in `tokens` (an occurrence at the end has none), None where it
    does not occur, `_AMBIGUOUS` where its followers differ."""
    found, end, last = None, len(gram) - 1, gram[-1]
    while True:
        try:
            end = tokens.index(last, end, len(tokens) - 1)  # the C loop finds candidates; few are checked
        except ValueError:
            return found
        if tokens[end + 1 - len(gram):end + 1] == gram:
            if found is not None and found != tokens[end + 1]:
                return _AMBIGUOUS
            found = tokens[end + 1]
        end += 1


@dataclass
class DraftStats:
    """What the drafts did over a scorer's life: tokens drafted and accepted, critique tokens, decode calls."""

    drafted: int = 0
    accepted: int = 0
    tokens: int = 0  # critique tokens taken (sampled, drafted and accepted, or written by the runtime)
    advances: int = 0  # a stream's entries in one decode call (without drafts, one per token)

    def note(self) -> str:
        rate = f" ({100 * self.accepted / self.drafted:.0f}%)" if self.drafted else ""
        per_call = self.tokens / self.advances if self.advances else 0.0
        return (f"drafts: {self.accepted} of {self.drafted} drafted tokens accepted{rate}; {per_call:.2f} critique "
                f"tokens per stream and decode call")
