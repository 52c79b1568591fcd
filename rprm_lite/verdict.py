"""The released R-PRM evaluation's verdict: P(Yes) read in a second pass over the cleaned critique text.

The released code (NJUNLP/R-PRM: `src/utils/inference.py` samples and cleans, then
`src/evaluate/GenPRM/evaluate-PRM-CoT.py` scores) does not read P(Yes) while sampling. It cleans each
critique (`clean_critique`), cuts it after the first "Is the step correct (Yes/No)?" or appends the
fallback question (`verdict_text`), appends that to the formatted prompt as text, tokenizes the whole
string afresh and reads P(Yes) from the " Yes"/" No" logits at its last position.

`released_p_yes` does the same on the local engine. The prompt is already in the KV cache (sequence 0),
so only the tokens from the first one where prompt + critique tokenizes differently from the prompt
alone are decoded (the critique, plus a prompt token or two when the seam merges). Unlike the released
script, special tokens in the critique (as in the question and steps) are never parsed.
"""

from __future__ import annotations

from collections.abc import Sequence

from rprm_lite.critique import PROMPT_SEQ, CritiqueResult, Vocabulary
from rprm_lite.engine import DecodeEntry, Engine, common_prefix
from rprm_lite.errors import ContextOverflowError
from rprm_lite.prompt import FALLBACK_TEXT, VERDICT_PHRASE, Piece, Prompt


def clean_critique(text: str) -> str:
    """The released cleaning: `split_text(text.strip().strip("\\\\").strip("\\\\n").strip())`.

    `split_text` splits on real newlines and on the two characters backslash-n, strips every piece
    and joins them with newlines. Note that `.strip("\\\\n")` strips a character *set*: backslashes and
    letters n at either end ("Explanation" loses its final n), exactly as the released code does.
    """
    text = text.strip().strip("\\").strip("\\n").strip()
    return "\n".join(piece.strip() for line in text.split("\n") for piece in line.split("\\n"))


def verdict_text(cleaned: str) -> str:
    """The cleaned critique cut after its first verdict phrase, else followed by the fallback question."""
    if VERDICT_PHRASE in cleaned:
        return cleaned.split(VERDICT_PHRASE)[0] + VERDICT_PHRASE
    return cleaned + FALLBACK_TEXT


def sampled_text(engine: Engine, critique: CritiqueResult) -> str:
    """What the model wrote, as text: its generated tokens without the fallback or the shown verdict."""
    return b"".join(engine.piece(token) for token in critique.token_ids).decode("utf-8", errors="replace")


def released_tokens(engine: Engine, prompt: Prompt, text: str) -> list[int]:
    """Tokens of prompt + `text` tokenized as one string; `text` is never parsed for special tokens."""
    return engine.tokenize_prompt(Prompt((*prompt.pieces, Piece(text, False))))


def released_p_yes(engine: Engine, prompt: Prompt, prompt_tokens: Sequence[int],
                   critiques: Sequence[CritiqueResult], vocab: Vocabulary) -> list[float]:
    """P(Yes) of each critique read the released way. Sequence 0 holds `prompt_tokens`; the critique
    sequences 1..K are dropped and reused, one per critique."""
    runs = []
    for seq, critique in enumerate(critiques, start=PROMPT_SEQ + 1):
        tokens = released_tokens(engine, prompt, verdict_text(clean_critique(sampled_text(engine, critique))))
        keep = min(common_prefix(prompt_tokens, tokens), len(tokens) - 1)
        runs.append((seq, keep, tokens))
        engine.trim(seq)  # the sampled critique's cells are not needed any more
    p_yes = []
    for group in _groups(runs, room=engine.n_ctx - len(prompt_tokens)):
        entries = []
        for seq, keep, tokens in group:
            engine.copy(PROMPT_SEQ, seq)
            engine.trim(seq, keep)
            entries += [DecodeEntry(token, pos, seq, logits=pos == len(tokens) - 1)
                        for pos, token in enumerate(tokens) if pos >= keep]
        p_yes += [engine.p_yes(row, vocab.yes, vocab.no) for _, row in engine.decode(entries)]
        for seq, _, _ in group:
            engine.trim(seq)
    return p_yes


def _groups(runs: list[tuple[int, int, list[int]]], *, room: int) -> list[list[tuple[int, int, list[int]]]]:
    """Runs batched together while their new tokens fit the free cells (usually all K in one)."""
    groups: list[list[tuple[int, int, list[int]]]] = []
    used = room
    for run in runs:
        need = len(run[2]) - run[1]
        if need > room:
            raise ContextOverflowError(f"the released verdict pass needs {need} new tokens for one critique, but "
                                       f"the context has {room} free after the prompt; raise --n-ctx or lower "
                                       "--max-tokens")
        if used + need > room:
            groups.append([])
            used = 0
        groups[-1].append(run)
        used += need
    return groups
