"""The policy's prompt: how `rprm-lite solve` asks a chat model for a step-by-step solution.

The policy (the bundled demo policy adapter, or any GGUF chat model) gets one user message, rendered with the
model's own chat template (the GGUF's `tokenizer.chat_template`), and writes one step per line, the last
ending "The answer is N.", then its end-of-turn token. The recipe trains the demo policy on exactly this text
(`policy_prompt` + `policy_completion`), so the runtime and the training data cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jinja2.sandbox import ImmutableSandboxedEnvironment

POLICY_INSTRUCTION = ('Solve the problem step by step. Write one step per line, and end the last step with '
                      '"The answer is N."')
STEP_SEPARATOR = "\n"
_ANSWER = re.compile(r"The answer is\s*\$?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)


def policy_messages(question: str) -> list[dict[str, str]]:
    """The chat the policy is given for `question`."""
    return [{"role": "user", "content": f"{POLICY_INSTRUCTION}\n\n{question.strip()}"}]


def render_chat(template: str, messages: Sequence[dict[str, str]], *, bos_token: str = "",
                eos_token: str = "") -> str:
    """`messages` rendered with a GGUF chat template (Jinja, sandboxed), ready for the assistant's turn."""
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise ValueError(f"the chat template refused the messages: {message}")

    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(template).render(messages=list(messages), add_generation_prompt=True,
                                                    bos_token=bos_token, eos_token=eos_token)


def policy_prompt(template: str, question: str, *, bos_token: str = "", eos_token: str = "") -> str:
    """The text the policy continues for `question`."""
    return render_chat(template, policy_messages(question), bos_token=bos_token, eos_token=eos_token)


def policy_completion(steps: Sequence[str]) -> str:
    """What the policy is trained to write for a solution's steps (before its end-of-turn token)."""
    return STEP_SEPARATOR.join(step.strip() for step in steps)


def final_answer(step: str) -> str | None:
    """The number after "The answer is" in a step (as written, without thousands separators), else None."""
    found = _ANSWER.findall(step)
    return found[-1].replace(",", "") if found else None
