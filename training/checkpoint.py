"""Loading and saving Hugging Face checkpoints, and the metadata saved next to each one.

Every checkpoint folder gets `rprm_training.json`: the command, its full config, the prompt style
and the sha256 of its template (so a converter can write them into the GGUF), and library versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rprm_lite import prompt as prompts
from rprm_lite.prompt import END_OF_TURN
from rprm_lite.training.errors import TrainingError
from rprm_lite.training.jobconfig import JobConfig

METADATA_FILE = "rprm_training.json"
LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


def is_hub_id(name: str) -> bool:
    return not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/", "~"))


def check_causal_lm(name: str) -> None:
    """Fail early, with a clear message, unless `name` holds a causal language model checkpoint."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = Path(name)
    if not is_hub_id(name):
        if not path.is_dir():
            raise TrainingError(f"{name}: expected a Hugging Face checkpoint folder (config.json, "
                                "*.safetensors, tokenizer.json), but no such folder exists")
        if not (path / "config.json").is_file():
            raise TrainingError(f"{name}: no config.json; expected a Hugging Face checkpoint folder "
                                "(save one with model.save_pretrained)")
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{name}: cannot read the model config ({exc})") from None
    architectures = list(getattr(config, "architectures", None) or [])
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (
            architectures and not any(a.endswith("ForCausalLM") for a in architectures)):
        raise TrainingError(f"{name}: expected a causal language model (e.g. Qwen2ForCausalLM), got model type "
                            f"{config.model_type!r} with architectures {architectures or 'unknown'}")


def load_tokenizer(name: str, *, gguf_file: str | None = None) -> Any:
    """The checkpoint's tokenizer (or, with `gguf_file`, one rebuilt from that GGUF in folder `name`)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **({"gguf_file": gguf_file} if gguf_file else {}))
    except (OSError, ValueError) as exc:
        needs = "a vocabulary transformers can read" if gguf_file else "tokenizer.json"
        raise TrainingError(f"{name}: cannot load its tokenizer ({exc}); the checkpoint needs {needs}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name: str, *, dtype: Any = None) -> Any:
    """The model in fp32 by default: with bf16 autocast the optimizer keeps fp32 master weights,
    which learning rates as small as DPO's 5e-7 need (bf16 weights would round such updates away)."""
    import torch
    from transformers import AutoModelForCausalLM

    check_causal_lm(name)
    try:
        return AutoModelForCausalLM.from_pretrained(name, dtype=dtype or torch.float32)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{name}: cannot load the model weights ({exc})") from None


def training_metadata(command: str, config: JobConfig, **extra: Any) -> dict[str, Any]:
    import importlib.metadata

    import rprm_lite

    versions = {"rprm_lite": rprm_lite.__version__}
    for library in LIBRARIES:
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            pass
    style = config.prompt_style
    return {"command": command, "config": config.to_dict(), "prompt_style": style,
            "template_sha256": prompts.template_hash(style), "versions": versions, **extra}


def write_metadata(folder: str | Path, metadata: dict[str, Any]) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")


def read_metadata(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / METADATA_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def set_generation_ends(model: Any, tokenizer: Any) -> None:
    """`generate` on the saved model stops at the end of the critique's turn."""
    end_ids = [tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.eos_token_id]
    model.generation_config.eos_token_id = list(dict.fromkeys(i for i in end_ids if i is not None))
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def export_model(model: Any, tokenizer: Any, out: str | Path, *, dtype: Any) -> None:
    """Save a plain checkpoint a converter can read: LoRA adapters merged, safetensors, tokenizer."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    forget_gguf_origin(model)
    model = model.to(dtype)
    set_generation_ends(model, tokenizer)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def forget_gguf_origin(model: Any) -> None:
    """A model read from a GGUF holds dequantized float weights, but transformers still marks it quantized
    (`quantization_config`, `hf_quantizer`), and save_pretrained refuses such a model: drop both marks."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
