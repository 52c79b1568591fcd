"""Hugging Face checkpoint -> GGUF for rprm-lite, installed as `rprm_lite.convert` (the `convert` extra).

Public API (torch and transformers are imported only inside `verify`):
- `converter.convert(ConvertConfig(source, output, outtype=..., quant=..., verify=...))`: the whole job (a full
  checkpoint through `checkpoint`, a peft LoRA folder through `adapter`; both from `convert_config`);
- `random_model.build_random_checkpoint(...)` / `build_random_gguf(...)`: random-weight test models;
- `verify.verify_conversion(folder, gguf_path, kind=...)`: logits of transformers vs llama.cpp;
- `cli.app`: the `rprm-lite convert` command.
"""
