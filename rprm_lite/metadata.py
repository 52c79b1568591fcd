"""GGUF metadata keys that rprm-lite writes (converter) and reads (runtime).

The runtime reads these when present and falls back to `ScoreConfig` defaults and the
tokenizer's own " Yes" / " No" tokens otherwise.
"""

from __future__ import annotations

PROMPT_STYLE = "rprm.prompt_style"  # str: "r-prm-eval" or "chatml"
TEMPLATE_SHA256 = "rprm.template_sha256"  # str: sha256 of the prompt template the model was trained on
YES_TOKEN_ID = "rprm.yes_token_id"  # uint32: the single token of " Yes"
NO_TOKEN_ID = "rprm.no_token_id"  # uint32: the single token of " No"
K = "rprm.k"  # uint32
TEMPERATURE = "rprm.temperature"  # float32
TOP_P = "rprm.top_p"  # float32
MAX_TOKENS = "rprm.max_tokens"  # uint32
THRESHOLD = "rprm.threshold"  # float32
CALCULATOR = "rprm.calculator"  # str: "on" when the model's critiques are written with the calculator (else off)
DESCRIPTION = "rprm.description"  # str: free text shown by `rprm-lite info` (e.g. "random weights: demo only")
# str, in a LoRA adapter: sha256 of the base GGUF it was converted against; another base is refused
BASE_SHA256 = "rprm.base_sha256"

# rprm.* key -> ScoreConfig field, for keys that set a default sampling or decision setting
CONFIG_FIELDS = {
    PROMPT_STYLE: "prompt_style",
    K: "k",
    TEMPERATURE: "temperature",
    TOP_P: "top_p",
    MAX_TOKENS: "max_tokens",
    THRESHOLD: "threshold",
    CALCULATOR: "calculator",
}

# the type each rprm.* value must have; a file with another type is a bad model file
KEY_TYPES: dict[str, type] = {
    PROMPT_STYLE: str, TEMPLATE_SHA256: str, DESCRIPTION: str, BASE_SHA256: str, CALCULATOR: str,
    YES_TOKEN_ID: int, NO_TOKEN_ID: int, K: int, MAX_TOKENS: int,
    TEMPERATURE: float, TOP_P: float, THRESHOLD: float,
}

YES_TEXT = " Yes"
NO_TEXT = " No"
