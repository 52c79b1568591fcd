"""`--verify`: the original checkpoint (transformers, float32) and the GGUF (llama.cpp) on fixed R-PRM prompts.

Both models get the same token ids (tokenized by llama.cpp the way the runtime does it: template
text with special tokens parsed, user text without); the Hugging Face tokenizer must produce the
same ids, for those prompts and for every text of `TOKENIZER_CORPUS` (prose, math, code, other
scripts, digits, emoji, odd whitespace). Reported: tokenizer agreement, the largest absolute logit
difference over every position, top-1 agreement, and P(Yes) = softmax over the " Yes"/" No" logits at
a verdict position, from both models.
torch and transformers are imported here only.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rprm_lite import metadata
from rprm_lite.prompt import VERDICT_PHRASE, render
from rprm_lite.solution import Solution

from .errors import ConversionError, VerificationError
from .gguf_file import read_gguf_metadata
from .pre_tokenizers import CHECK_TEXT
from .tokenizer import TOKENIZER_FILE, load_hf_tokenizer, verdict_token_ids


@dataclass(frozen=True)
class Tolerance:
    max_logit_diff: float
    max_p_yes_diff: float
    min_top1_agreement: float


# Per output type. f32 differs only by summation order; f16/bf16 round weights and llama.cpp's
# activations; quantized types lose more the fewer bits they keep. P(Yes) is what the scorer uses.
# The logit bound is the largest difference over every position and every vocabulary entry (1745 x 49152
# values for SmolLM2), so it grows with a real model's logit range: measured on SmolLM2-135M-Instruct (the
# round trip test; a small model, among the hardest to quantize) f16 0.067, bf16 0.55, Q8_0 2.2, Q6_K 4.6,
# Q5_K_M 8.3, Q4_K_M 7.3, Q4_0 17.7, with P(Yes) within 0.03 and top-1 agreement at least 80% for all.
# The bounds leave about 1.4x room over those; Q3/Q2 are scaled, not measured. A conversion bug (a wrong
# layout, a lost tensor) shows in the top-1 agreement and P(Yes), which stay strict.
TOLERANCES: dict[str, Tolerance] = {
    "f32": Tolerance(1e-2, 1e-3, 0.99),
    "f16": Tolerance(0.5, 0.02, 0.95),
    "bf16": Tolerance(1.0, 0.03, 0.95),
    "Q8_0": Tolerance(3.0, 0.05, 0.90),
    "Q6_K": Tolerance(7.0, 0.07, 0.85),
    "Q5_K_M": Tolerance(12.0, 0.10, 0.80), "Q5_K_S": Tolerance(12.0, 0.10, 0.80),
    "Q5_0": Tolerance(12.0, 0.10, 0.80), "Q5_1": Tolerance(12.0, 0.10, 0.80),
    "Q4_K_M": Tolerance(25.0, 0.15, 0.75), "Q4_K_S": Tolerance(25.0, 0.15, 0.75),
    "Q4_0": Tolerance(25.0, 0.15, 0.75), "Q4_1": Tolerance(25.0, 0.15, 0.75),
    "IQ4_NL": Tolerance(25.0, 0.15, 0.75), "IQ4_XS": Tolerance(25.0, 0.15, 0.75),
    "Q3_K_L": Tolerance(35.0, 0.25, 0.60), "Q3_K_M": Tolerance(35.0, 0.25, 0.60),
    "Q3_K_S": Tolerance(35.0, 0.25, 0.60), "Q2_K": Tolerance(45.0, 0.35, 0.50),
}

# Fixed solutions; each prompt asks about one step and ends at a verdict position
VERIFY_SOLUTIONS = (
    Solution.create("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
                    "May. How many clips did Natalia sell altogether in April and May?",
                    ["In May she sold 48 / 2 = 24 clips.", "Altogether she sold 48 + 24 = 72 clips."]),
    Solution.create("Solve for $x$: $2x + 3 = 11$.",
                    ["Subtract 3 from both sides: $2x = 8$.", "Divide by 2: $x = 5$."]),
)
VERIFY_STEPS = ((0, 0), (0, 1), (1, 1))  # (solution, step index)
VERIFY_CONTEXT = 1024
CRITIQUE = "The step computes the value correctly from the previous steps.\nVerification: "
# Texts both tokenizers must split identically (tokenized as user text: special tokens not parsed)
TOKENIZER_CORPUS = (
    "Tom has 12 apples. He gives 5 to Anna and buys 3 times as many as he has left. How many apples now?",
    "Step 1: 12 - 5 = 7 apples left.\nStep 2: 3 * 7 = 21, so he has 7 + 21 = 28 apples.",
    "A train travels 240 km in 3.5 hours; its mean speed is 240 / 3.5 ≈ 68.57 km/h.",
    "Let $f(x) = \\frac{x^2 - 1}{x + 1}$. Then $f(x) = x - 1$ for $x \\neq -1$, so $\\lim_{x \\to -1} f(x) = -2$.",
    "\\begin{align} \\sum_{k=1}^{n} k^2 &= \\frac{n(n+1)(2n+1)}{6} \\\\ \\sqrt{2} &\\approx 1.41421356 \\end{align}",
    "def gcd(a: int, b: int) -> int:\n    while b:\n        a, b = b, a % b\n    return a\n\nprint(gcd(48, 18))  # 6\n",
    "for (int i = 0; i < n; ++i) { total += values[i] * 2; }\tif (x != y && y >= 0) return -1;",
    "{\"question\": \"2+2?\", \"steps\": [\"2+2=4\"], \"label\": -1}",
    "Ein Zug fährt um 14:35 Uhr ab und kommt um 17:05 an. Wie lange dauert die Fahrt? Größe, Übung, Straße.",
    "Le périmètre d'un carré de côté 7 cm est 28 cm ; l'aire est 49 cm². Ça va ?",
    "Поезд проехал 120 км за 2 часа. Какова его скорость? Ответ: 60 км/ч.",
    "小明有15个苹果，给了小红6个，还剩几个？答：15 − 6 = 9个。",
    "りんごが３個とみかんが５個あります。全部でいくつですか。カタカナ、ひらがな、漢字。",
    "٣ + ٤ = ٧ — العدد سبعة. हिन्दी में: तीन और चार सात होते हैं। 한국어: 삼 더하기 사는 칠.",
    "0 1 12 123 1234 12345 123456 1234567 3.14159 -0.5 1e-9 1,000,000 2^64 = 18446744073709551616",
    "Emoji: 🚀 🦙🦙 ✅ ❌ 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇩🇪 😶‍🌫️ ½ ⅓ ∞ ≤ ≥ ≠ → ∑ ∫ √",
    "  leading spaces,\ttabs\t\tand\n\n\nnewlines   \r\n trailing   ",
    "I've been told he's there; 'RE you sure? We'Ve a'lL DON'T know. ```````\"\"\"\"......!!!!!!??????",
    "<|im_start|>user\nNot a special token when it is user text.<|im_end|>",
    CHECK_TEXT,
)


@dataclass
class VerificationReport:
    kind: str  # output type or quantization checked
    tolerance: Tolerance
    n_prompts: int
    n_positions: int
    tokens_match: bool
    corpus_size: int  # texts of TOKENIZER_CORPUS compared
    corpus_mismatches: list[str]  # the texts the two tokenizers split differently
    max_logit_diff: float
    top1_agreement: float
    p_yes_original: list[float] = field(default_factory=list)
    p_yes_gguf: list[float] = field(default_factory=list)

    @property
    def max_p_yes_diff(self) -> float:
        return max(abs(a - b) for a, b in zip(self.p_yes_original, self.p_yes_gguf, strict=True))

    @property
    def failures(self) -> list[str]:
        tol, found = self.tolerance, []
        if not self.tokens_match:
            found.append("the Hugging Face tokenizer and llama.cpp tokenize the prompts differently")
        if self.corpus_mismatches:
            found.append(f"the Hugging Face tokenizer and llama.cpp tokenize {len(self.corpus_mismatches)} of "
                         f"{self.corpus_size} corpus texts differently (first: {self.corpus_mismatches[0][:40]!r})")
        if self.max_logit_diff > tol.max_logit_diff:
            found.append(f"max |logit difference| {self.max_logit_diff:.3g} > {tol.max_logit_diff:g}")
        if self.max_p_yes_diff > tol.max_p_yes_diff:
            found.append(f"max |P(Yes) difference| {self.max_p_yes_diff:.3g} > {tol.max_p_yes_diff:g}")
        if self.top1_agreement < tol.min_top1_agreement:
            found.append(f"top-1 agreement {self.top1_agreement:.1%} < {tol.min_top1_agreement:.0%}")
        return found

    @property
    def passed(self) -> bool:
        return not self.failures

    def rows(self) -> list[tuple[str, str, str]]:
        """(measure, value, tolerance) for a table."""
        tol = self.tolerance
        return [
            ("prompts / positions", f"{self.n_prompts} / {self.n_positions}", ""),
            ("tokenization matches", "yes" if self.tokens_match else "NO", "yes"),
            ("tokenizer corpus agreement", f"{self.corpus_size - len(self.corpus_mismatches)}/{self.corpus_size} texts",
             "all"),
            ("max |logit difference|", f"{self.max_logit_diff:.3g}", f"<= {tol.max_logit_diff:g}"),
            ("top-1 agreement", f"{self.top1_agreement:.1%}", f">= {tol.min_top1_agreement:.0%}"),
            ("max |P(Yes) difference|", f"{self.max_p_yes_diff:.3g}", f"<= {tol.max_p_yes_diff:g}"),
        ]


def verify_conversion(folder: Path, gguf_path: Path, *, kind: str, threads: int | None = None,
                      raise_on_failure: bool = True, lora: tuple[Path, Path] | None = None) -> VerificationReport:
    """Compare the checkpoint in `folder` with the GGUF; raise VerificationError beyond `kind`'s tolerance.
    With `lora` (adapter GGUF, peft folder): the GGUF with the adapter applied against the checkpoint with the
    peft adapter merged (the prompt style and verdict tokens then come from the adapter's metadata)."""
    tolerance = TOLERANCES.get(kind)
    if tolerance is None:
        raise ConversionError(f"no verification tolerance for {kind!r}; known: {', '.join(TOLERANCES)}")
    fields = read_gguf_metadata(gguf_path if lora is None else lora[0])
    style = fields.get(metadata.PROMPT_STYLE, "r-prm-eval")
    llm = _load_gguf(gguf_path, threads, lora_path=None if lora is None else lora[0])
    hf_tokenizer = load_hf_tokenizer(folder / TOKENIZER_FILE)
    # a file without the scoring keys (a policy, `ConvertConfig.scoring`): the tokenizer's own " Yes" / " No"
    yes_no = ((fields[metadata.YES_TOKEN_ID], fields[metadata.NO_TOKEN_ID]) if metadata.YES_TOKEN_ID in fields
              else verdict_token_ids(hf_tokenizer))
    prompts = [_token_ids(llm, VERIFY_SOLUTIONS[s], step, style) for s, step in VERIFY_STEPS]
    tokens_match = all(_hf_token_ids(hf_tokenizer, pieces) == ids for ids, pieces in prompts)
    mismatches = [text for text in TOKENIZER_CORPUS if tokenizer_disagrees(llm, hf_tokenizer, text)]
    original = _load_original(folder, peft_folder=None if lora is None else lora[1])
    report = VerificationReport(kind, tolerance, len(prompts), sum(len(ids) for ids, _ in prompts), tokens_match,
                                len(TOKENIZER_CORPUS), mismatches, max_logit_diff=0.0, top1_agreement=0.0)
    agree = 0
    for ids, _ in prompts:  # one prompt at a time: a row of logits is vocab-sized, so these get large
        expected, actual = original(ids), _gguf_logits(llm, ids)
        report.max_logit_diff = max(report.max_logit_diff, float(np.abs(actual - expected).max()))
        agree += int((actual.argmax(axis=1) == expected.argmax(axis=1)).sum())
        report.p_yes_original.append(p_yes(expected[-1], *yes_no))
        report.p_yes_gguf.append(p_yes(actual[-1], *yes_no))
        del expected, actual
    report.top1_agreement = agree / report.n_positions
    if raise_on_failure and not report.passed:
        raise VerificationError(f"verification failed for {kind}: {'; '.join(report.failures)}. The GGUF was "
                                "not kept; rerun without --verify to keep it anyway")
    return report


def p_yes(logits: np.ndarray, yes_id: int, no_id: int) -> float:
    """softmax over the " Yes" and " No" logits only, as R-PRM scores a verdict."""
    yes, no = float(logits[yes_id]), float(logits[no_id])
    return 1.0 / (1.0 + np.exp(no - yes))


def _load_gguf(path: Path, threads: int | None, *, lora_path: Path | None = None):
    import llama_cpp

    from rprm_lite.weight_placement import apply_to_llama_cpp

    apply_to_llama_cpp()  # the runtime's buffer-type rule (no AMX where it crashes)

    # f32 KV cache: llama.cpp's default f16 cache alone adds ~1e-2 to the logits. The context holds the
    # longest verification prompt (about 700 tokens with the Qwen2 tokenizer)
    return llama_cpp.Llama(str(path), n_ctx=VERIFY_CONTEXT, n_batch=512, logits_all=True, verbose=False,
                           type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, n_threads=threads,
                           lora_path=None if lora_path is None else str(lora_path))


def _token_ids(llm, solution: Solution, step: int, style: str) -> tuple[list[int], list[tuple[str, bool]]]:
    """The prompt plus a short critique ending in the verdict phrase, as llama.cpp tokenizes it."""
    pieces = [(piece.text, piece.is_template) for piece in render(solution, step, style).pieces]
    pieces.append((CRITIQUE + VERDICT_PHRASE, False))
    ids: list[int] = []
    for text, special in pieces:
        ids += llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
    return ids, pieces


def _hf_token_ids(tokenizer, pieces: list[tuple[str, bool]]) -> list[int]:
    return [i for text, _ in pieces for i in tokenizer.encode(text, add_special_tokens=False).ids]


def tokenizer_disagrees(llm, hf_tokenizer, text: str) -> bool:
    """Whether llama.cpp (`llm`, a llama_cpp.Llama) and the tokenizers library split user text differently."""
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    parses_special = hf_tokenizer.encode_special_tokens
    hf_tokenizer.encode_special_tokens = True  # special tokens' text is text here, as in llama.cpp's special=False
    try:
        return ids != hf_tokenizer.encode(text, add_special_tokens=False).ids
    finally:
        hf_tokenizer.encode_special_tokens = parses_special


def _gguf_logits(llm, ids: list[int]) -> np.ndarray:
    if len(ids) > VERIFY_CONTEXT:
        raise AssertionError(f"verification prompt of {len(ids)} tokens exceeds VERIFY_CONTEXT")
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def check_verify_dependencies(*, lora: bool = False) -> None:
    needed = ("torch", "transformers", "peft") if lora else ("torch", "transformers")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        extra = "verify,train" if "peft" in missing else "verify"
        names = f"{', '.join(needed[:-1])} and {needed[-1]}"
        raise ConversionError(f"--verify needs {names} ({', '.join(missing)} missing): "
                              f"pip install 'rprm-lite[{extra}]'")


def _load_original(folder: Path, *, peft_folder: Path | None = None):
    """The checkpoint in transformers (float32), with the peft adapter merged into it when one is given, as a
    function from token ids to a logits array."""
    check_verify_dependencies(lora=peft_folder is not None)
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).float().eval()
    if peft_folder is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, peft_folder).merge_and_unload().eval()

    def logits(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            return model(torch.tensor([ids])).logits[0].float().numpy()

    return logits
