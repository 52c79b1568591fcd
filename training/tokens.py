"""Token ids of training examples, split exactly as the runtime splits a prompt.

A prompt is cut only at the template's own `<|...|>` markers; everything between two markers
(template and user text together) is one plain run whose special-token syntax is not parsed, so a
step containing "<|im_end|>" stays text. The critique is tokenized on its own, as the model writes
it after the prompt, and is followed by the end-of-turn marker. Ids and loss mask are built
together: the mask is 1 on the critique tokens and the end marker, 0 everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rprm_lite.prompt import END_OF_TURN, Prompt
from rprm_lite.training.errors import TrainingError


@dataclass(frozen=True)
class Run:
    """A stretch of text tokenized in one go: a single marker, or plain text; `supervised` marks loss."""

    text: str
    is_marker: bool
    supervised: bool


@dataclass(frozen=True)
class Example:
    ids: list[int]
    loss_mask: list[int]

    @property
    def prompt_length(self) -> int:
        return self.loss_mask.index(1) if 1 in self.loss_mask else len(self.ids)


class PromptTokenizer:
    """Wraps a Hugging Face fast tokenizer with the two tokenizing modes a prompt needs."""

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise TrainingError(f"expected a fast (tokenizer.json) Hugging Face tokenizer, got "
                                f"{type(tokenizer).__name__}; save the checkpoint with its tokenizer.json")
        self.tokenizer = tokenizer
        self._backend = tokenizer.backend_tokenizer
        # BOS (or nothing, for Qwen2) exactly as the tokenizer's own post-processor would add it
        self.prefix: list[int] = list(tokenizer("", add_special_tokens=True)["input_ids"])
        self.end_of_turn_id = self.marker_id(END_OF_TURN)

    def marker_id(self, marker: str) -> int:
        token_id = self._backend.token_to_id(marker)
        if token_id is None:
            raise TrainingError(f"the tokenizer has no {marker} token; the R-PRM prompt needs the ChatML "
                                "special tokens <|im_start|> and <|im_end|> (use a Qwen2-family tokenizer)")
        return token_id

    def plain(self, text: str) -> list[int]:
        """Tokens of user or model text: special-token syntax inside it is just text."""
        before = self._backend.encode_special_tokens
        self._backend.encode_special_tokens = True
        try:
            return self._backend.encode(text, add_special_tokens=False).ids
        finally:
            self._backend.encode_special_tokens = before

    def encode_runs(self, runs: list[Run]) -> Example:
        ids: list[int] = list(self.prefix)
        mask: list[int] = [0] * len(ids)
        for run in runs:
            run_ids = [self.marker_id(run.text)] if run.is_marker else self.plain(run.text)
            ids += run_ids
            mask += [int(run.supervised)] * len(run_ids)
        return Example(ids, mask)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        return self.encode_runs(prompt_runs(prompt)).ids

    def example(self, prompt: Prompt, critique: str) -> Example:
        """(ids, loss_mask) of a prompt followed by its critique and the end-of-turn marker."""
        return self.encode_runs(prompt_runs(prompt) + completion_runs(critique))

    def completion_ids(self, critique: str) -> list[int]:
        return self.encode_runs(completion_runs(critique)).ids[len(self.prefix):]


def prompt_runs(prompt: Prompt) -> list[Run]:
    """Cut a rendered prompt at the template's markers only (the runtime's rule, `Prompt.segments`)."""
    return [Run(text, is_marker=is_marker, supervised=False) for is_marker, text in prompt.segments()]


def completion_runs(critique: str) -> list[Run]:
    if not critique.strip():
        raise TrainingError("a critique is empty; expected the critique text the model should learn to write")
    return [Run(critique, is_marker=False, supervised=True), Run(END_OF_TURN, is_marker=True, supervised=True)]
