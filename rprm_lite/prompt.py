"""The R-PRM prompt: one renderer for scoring, training and benchmarks.

Templates are versioned data files in `rprm_lite/prompts/`. A rendered prompt is a sequence of
pieces, each marked as template text (whose `<|...|>` markers are special tokens) or user text
(question and steps, which are never parsed for special tokens).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from rprm_lite.errors import InputError
from rprm_lite.prompts import PROMPT_STYLES
from rprm_lite.solution import Solution

EVAL_TEMPLATE_FILE = "r-prm-eval.v1.txt"  # GenPRM-evaluate-new3-qwen.txt from the R-PRM release, byte for byte
USER_TEMPLATE_FILE = "r-prm-user.v1.txt"  # the training prompt's user turn
CHATML_WRAPPER_FILE = "chatml.v1.txt"  # Qwen chat template with real newlines; {user} is the user turn
SLOT = "{}"
FIRST_STEP_PREVIOUS = "Since the Now Step is the first step, there are no Previous Steps."
VERDICT_PHRASE = "Is the step correct (Yes/No)?"
FALLBACK_TEXT = "\nBased on your analysis. Is the answer correct (Yes/No)?"
END_OF_TURN = "<|im_end|>"
SPECIAL_MARKER = re.compile(r"<\|[^|<>\s]+\|>")  # a ChatML marker such as <|im_start|>


@dataclass(frozen=True)
class Piece:
    text: str
    is_template: bool


@dataclass(frozen=True)
class Prompt:
    pieces: tuple[Piece, ...]

    @property
    def text(self) -> str:
        return "".join(piece.text for piece in self.pieces)

    def segments(self) -> list[tuple[bool, str]]:
        """(is_marker, text) runs, cut only at the template's own markers.

        Everything between two markers (template and user text together) is one plain run, so
        tokenizing run by run matches tokenizing the whole string, and a marker inside user text
        stays text. The runtime engine and the training tokenizer both split prompts this way.
        """
        segments: list[tuple[bool, str]] = []
        plain = ""
        for piece in self.pieces:
            if not piece.is_template:
                plain += piece.text
                continue
            last = 0
            for match in SPECIAL_MARKER.finditer(piece.text):
                plain += piece.text[last:match.start()]
                if plain:
                    segments.append((False, plain))
                    plain = ""
                segments.append((True, match.group()))
                last = match.end()
            plain += piece.text[last:]
        if plain:
            segments.append((False, plain))
        return segments


def load_template_file(name: str) -> str:
    return resources.files("rprm_lite.prompts").joinpath(name).read_text(encoding="utf-8")


@cache
def template(style: str) -> tuple[str, ...]:
    """The template of a style as its fixed texts around the three slots (question, previous, now)."""
    if style == "r-prm-eval":
        text = load_template_file(EVAL_TEMPLATE_FILE)
    elif style == "chatml":
        wrapper = load_template_file(CHATML_WRAPPER_FILE)
        text = wrapper.replace("{user}", load_template_file(USER_TEMPLATE_FILE))
    else:
        raise InputError(f"unknown prompt style {style!r}; choose one of {', '.join(PROMPT_STYLES)}")
    parts = tuple(text.split(SLOT))
    if len(parts) != 4:
        raise AssertionError(f"template {style} must have 3 slots, found {len(parts) - 1}")
    return parts


def template_hash(style: str) -> str:
    """sha256 of a style's template text: recorded next to checkpoints and in outputs."""
    return hashlib.sha256(SLOT.join(template(style)).encode("utf-8")).hexdigest()


def format_previous(steps: tuple[str, ...] | list[str], now_index: int) -> str:
    if now_index == 0:
        return FIRST_STEP_PREVIOUS
    return "\n".join(format_step(i, steps[i]) for i in range(now_index))


def format_step(index: int, text: str) -> str:
    """`Step i: text`, 1-based as in the released code."""
    return f"Step {index + 1}: {text}"


def render(solution: Solution, step_index: int, style: str = "r-prm-eval") -> Prompt:
    """The prompt that asks for a critique of step `step_index` (0-based) of `solution`."""
    if not 0 <= step_index < len(solution.steps):
        raise InputError(f"step {step_index + 1} does not exist; the solution has {len(solution.steps)} steps")
    head, after_question, after_previous, tail = template(style)
    return Prompt((
        Piece(head, True),
        Piece(solution.question, False),
        Piece(after_question, True),
        Piece(format_previous(solution.steps, step_index), False),
        Piece(after_previous, True),
        Piece(format_step(step_index, solution.steps[step_index]), False),
        Piece(tail, True),
    ))


def head_part(style: str) -> Prompt:
    """The template's text before the first user text (the question): the same in every prompt of a style."""
    return Prompt((Piece(template(style)[0], True),))


def question_part(solution: Solution, style: str) -> Prompt:
    """The prompt up to the question's end and the template text after it: the same in the first prompt of
    every solution of one question."""
    return Prompt(render(solution, 0, style).pieces[:3])


def render_text(solution: Solution, step_index: int, style: str = "r-prm-eval") -> str:
    return render(solution, step_index, style).text


def step_prompt(solution: Solution, step: int, style: str, *, option: str = "--step") -> str:
    """The exact prompt text of the 1-based `step` (named `option` in the error message), as `rprm-lite prompt`
    prints it and `serve`'s /v1/prompt answers it."""
    if not 1 <= step <= len(solution.steps):
        raise InputError(f"{option} must be between 1 and {len(solution.steps)}, got {step}")
    return render_text(solution, step - 1, style)
