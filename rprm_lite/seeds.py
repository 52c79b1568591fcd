"""Seeds derived from a run's seed: one sha256 of a key text, cut to the bits a sampler takes.

Every reproducible random choice (a critique stream of the runtime, a teacher's sample, a sampled step of
`data pairs`) gets its own seed this way, so results do not depend on the order work is done in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

LLAMA_SEED_MASK = 0xFFFFFFFE  # 32 bits but not 0xFFFFFFFF, which means "random" to llama.cpp
INT31_MASK = 0x7FFFFFFF  # torch.manual_seed and random.Random take any of these


def derive_seed(key: str, mask: int) -> int:
    """A seed from the text `key`: the first 4 bytes of its sha256 (little-endian), masked."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "little") & mask


def json_seed(*parts: Any) -> int:
    """A 31-bit seed from JSON-encodable parts (the run's seed first), e.g. (seed, solution id, step)."""
    return derive_seed(json.dumps(list(parts)), INT31_MASK)
