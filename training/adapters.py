"""Several peft LoRA adapters trained one after another, as one adapter with their ranks concatenated.

SFT trains a LoRA on the base and is merged; DPO trains a second LoRA on that merged model. Their sum is
W + s1 B1 A1 + s2 B2 A2 = W + [s1 B1 | s2 B2] [A1 ; A2]: one LoRA of rank r1 + r2 with scale 1 (alpha = rank),
exactly, so llama.cpp applies the result of both stages to the base as one adapter file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rprm_lite.training.errors import TrainingError

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"


def concatenate_adapters(folders: Sequence[Path], out: Path, *, base: Path) -> Path:
    """Write the concatenation of the peft folders `folders` (same modules, in training order) to `out`, as an
    adapter of the checkpoint `base`."""
    import torch
    from safetensors.torch import load_file, save_file

    configs = [json.loads((Path(folder) / CONFIG).read_text(encoding="utf-8")) for folder in folders]
    weights = [load_file(str(Path(folder) / WEIGHTS)) for folder in folders]
    if any(set(w) != set(weights[0]) for w in weights):
        raise TrainingError(f"the adapters in {', '.join(map(str, folders))} adapt different modules; "
                            "only adapters of the same modules can be concatenated")
    rank = sum(config["r"] for config in configs)
    combined = {}
    for name in weights[0]:
        if ".lora_A." in name:
            combined[name] = torch.cat([w[name].float() for w in weights], dim=0)
        elif ".lora_B." in name:
            combined[name] = torch.cat([w[name].float() * (c["lora_alpha"] / c["r"])
                                        for w, c in zip(weights, configs, strict=True)], dim=1)
        else:
            raise TrainingError(f"{folders[0]}: tensor {name} is neither lora_A nor lora_B; cannot concatenate")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in combined.items()}, str(out / WEIGHTS))
    config = {**configs[0], "r": rank, "lora_alpha": rank, "base_model_name_or_path": str(base),
              "rank_pattern": {}, "alpha_pattern": {}, "lora_dropout": 0.0}
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out
